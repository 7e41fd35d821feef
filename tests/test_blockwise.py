# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Blockwise inference: equality with MONAI's in-memory SlidingWindowInferer, output format, inputs, models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
import zarr
from monai.inferers import SlidingWindowInferer

from neurolink_monai.inference import NoiseFloor
from neurolink_monai.inference.blockwise import (
    BlockGrid,
    BlockwiseOptions,
    ClusterOptions,
    SlidingWindowGrid,
    load_model_spec,
    model_spec_from_module,
    open_volume,
    postprocess_block,
    predict_block,
    read_record,
    resolve_settings,
    run_blockwise,
    run_blockwise_with,
)
from neurolink_monai.io import write_tiff_stack
from neurolink_monai.transforms import DEFAULT_PERCENTILES, intensity_window, scale_intensity

from helpers import run_blockwise_here, tiny_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def volume(shape, seed: int = 0) -> np.ndarray:
    """uint16 noise with a few bright tubes along x, like a sparse neurite stack."""
    rng = np.random.default_rng(seed)
    vol = rng.poisson(200, size=shape).astype(np.float64)
    zz, yy = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    for k in range(3):
        zc, yc = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        vol += 3000 * np.exp(-((zz - zc) ** 2 + (yy - yc) ** 2) / 4.0)[..., None]
    return np.clip(vol, 0, 65535).astype(np.uint16)


def to_zarr(path, vol, chunks, zarr_format: int = 3):
    z = zarr.create_array(str(path), shape=vol.shape, chunks=chunks, dtype=vol.dtype, zarr_format=zarr_format)
    z[:] = vol
    return path


def reference(
    vol,
    net,
    roi,
    overlap=0.25,
    mode="constant",
    lower=DEFAULT_PERCENTILES[0],
    upper=DEFAULT_PERCENTILES[1],
    cval=0.0,
) -> torch.Tensor:
    """MONAI's in-memory sliding window over the whole preprocessed volume: (C, D, H, W)."""
    x = scale_intensity(torch.from_numpy(vol), intensity_window(vol, lower, upper))[None, None]
    with torch.inference_mode():
        return SlidingWindowInferer(roi, sw_batch_size=4, overlap=overlap, mode=mode, cval=cval)(x, net)[0]


def check_against_reference(out_path, ref: torch.Tensor, tol: float = 1e-3) -> dict[str, float]:
    """Max abs difference of the stored heads vs the reference, post-processed like the bundle."""
    g = zarr.open_group(str(out_path), mode="r")
    diffs = {"prob": float(np.abs(g["prob/0"][:].astype(np.float32) - torch.sigmoid(ref[0]).numpy()).max())}
    if "direction" in g:
        norm = ref[1:4].norm(dim=0)
        unit = (ref[1:4] / norm).numpy()
        defined = (norm > 1e-2).numpy()  # where the direction is well defined; elsewhere 1e-6 noise may flip it
        assert defined.mean() > 0.99
        diffs["direction"] = float(np.abs(g["direction/0"][:].astype(np.float32) - unit)[:, defined].max())
    if "distance" in g:
        diffs["distance"] = float(np.abs(g["distance/0"][:].astype(np.float32) - ref[4].numpy()).max())
    assert max(diffs.values()) <= tol, diffs
    return diffs


def test_no_seams_small_dsconv(tmp_path):
    """Snake-conv NeuroLinkNet (InstanceNorm: not translation-local), blocks not aligned to windows, gaussian mode."""
    vol = volume((16, 40, 48))
    net = tiny_net(dsconv=True)
    roi = (8, 20, 24)
    src = to_zarr(tmp_path / "in.zarr", vol, (7, 20, 30))
    ref = reference(vol, net, roi, mode="gaussian")
    grid = SlidingWindowGrid.create(vol.shape, roi, 0.25, "gaussian")
    blocks = BlockGrid.create(vol.shape, (8, 20, 24))
    res = run_blockwise_here(
        src,
        tmp_path / "out.zarr",
        model=net,
        roi_size=roi,
        overlap=0.25,
        mode="gaussian",
        chunks=(8, 20, 24),
        save_direction=True,
        save_distance=True,
        maps_dtype="float32",
    )
    assert res.status == "complete" and res.blocks_computed == blocks.num_blocks == 8
    assert res.window_evaluations == grid.evaluations(blocks) > grid.num_windows
    check_against_reference(tmp_path / "out.zarr", ref)
    # the float32 blend of an interior block before any casting
    a, b = (4, 10, 12), (12, 30, 36)
    raw = predict_block(open_volume(src), grid, a, b, net, intensity_window(vol), sw_batch_size=3)
    assert float((raw - ref[:, 4:12, 10:30, 12:36]).abs().max()) <= 1e-5


@pytest.mark.slow
def test_no_seams_128x256x256_local_cluster(tmp_path):
    """The acceptance test of issue 9: 128x256x256, max abs difference <= 1e-3, on a LocalCluster (~5 min, 2 cores)."""
    vol = volume((128, 256, 256), seed=1)
    net = tiny_net(dsconv=True, features=(4, 8, 16))
    roi = (32, 64, 64)
    src = to_zarr(tmp_path / "in.zarr", vol, (64, 128, 128))
    res = run_blockwise_here(
        src,
        tmp_path / "out.zarr",
        model=net,
        roi_size=roi,
        overlap=0.25,
        chunks=(64, 256, 256),
        scheduler=None,
        workers=2,
        threads_per_worker=1,
        save_direction=True,
        save_distance=True,
        maps_dtype="float32",
    )
    assert res.blocks_computed == 2
    diffs = check_against_reference(tmp_path / "out.zarr", reference(vol, net, roi))
    print(f"max abs difference vs SlidingWindowInferer on 128x256x256: {diffs}")


def test_context_margin_gives_the_bundle_inferer_output(tmp_path):
    """The blockwise grid pads a short axis as the bundle's NeuroLinkInferer does (margin_pads): with a network of
    divisor 8, 29 slices and a 32-slice window become one window padded 1 + 2 in both (before 0.5.0 the bundle padded
    1 + 1 and ran two 24-slice windows, the blockwise path ran two without padding)."""
    from neurolink_monai.inference import NeuroLinkInferer

    vol = volume((29, 24, 24), seed=4)
    net = tiny_net(features=(4, 8, 16, 32))
    x = scale_intensity(torch.from_numpy(vol), intensity_window(vol))[None, None]
    inferer = NeuroLinkInferer((32, 24, 24), overlap=0.25, skip_background=False, context_margin=8)
    with torch.inference_mode():
        bundle = inferer(x, net)
    assert inferer.last_windows == 1
    src = to_zarr(tmp_path / "in.zarr", vol, (29, 24, 24))
    run_blockwise_here(
        src, tmp_path / "out.zarr", model=net, roi_size=(32, 24, 24), overlap=0.25, mode="gaussian",
        chunks=(29, 24, 24), context_margin=8,
    )  # fmt: skip
    check_against_reference(tmp_path / "out.zarr", bundle[0])


def test_skips_the_background_windows_the_bundle_inferer_skips(tmp_path):
    """With skip_background, the blockwise path skips the windows the bundle's NeuroLinkInferer skips (the same noise
    floor of the whole volume, measured slab by slab) and gives the same output, blocks not aligned to windows;
    voxels only skipped windows cover get the background output."""
    from neurolink_monai.inference import NeuroLinkInferer, background_output

    vol = volume((16, 48, 64), seed=5)
    vol[:, :, 40:] = 150  # a flat dark region: its windows are background
    net = tiny_net(dsconv=True)
    roi = (8, 16, 16)
    x = scale_intensity(torch.from_numpy(vol), intensity_window(vol))[None, None]
    inferer = NeuroLinkInferer(roi, overlap=0.25, mode="gaussian", skip_background=True)
    with torch.inference_mode():
        bundle = inferer(x, net)[0]
    assert 0 < inferer.last_skipped < inferer.last_windows
    src = to_zarr(tmp_path / "in.zarr", vol, (8, 24, 32))
    res = run_blockwise_here(
        src, tmp_path / "out.zarr", model=net, roi_size=roi, overlap=0.25, mode="gaussian", chunks=(7, 20, 30),
        skip_background=True, save_distance=True, maps_dtype="float32",
    )  # fmt: skip
    check_against_reference(tmp_path / "out.zarr", bundle)
    grid = SlidingWindowGrid.create(vol.shape, roi, 0.25, "gaussian")
    assert res.window_evaluations < grid.evaluations(BlockGrid.create(vol.shape, (7, 20, 30)))
    assert res.record["noise_floor"]["z"] == 3.0
    # a block that only background windows cover: no network run, the background output
    stats: dict = {}
    floor = NoiseFloor(**res.record["noise_floor"])
    out = predict_block(
        open_volume(src), grid, (0, 0, 52), (16, 48, 64), net, intensity_window(vol), channels=[0, 4], floor=floor,
        stats=stats,
    )  # fmt: skip
    assert stats["windows"] == 0 and stats["skipped"] > 0
    torch.testing.assert_close(out, background_output(5)[[0, 4]].reshape(2, 1, 1, 1).expand_as(out))


def test_volume_smaller_than_window_and_zarr_v2(tmp_path):
    """The window shrinks to a volume smaller than it (neurolink_monai.inference.fit_roi_size, as in the bundle). With
    a context margin, along the axes where the volume is smaller than the window (z 6 -> 8, x 40 -> 48) it is padded
    like MONAI with the scaled median of the volume. Given a grid directly, the reader pads like MONAI (constant and
    replicate)."""
    vol = volume((6, 30, 40), seed=2)
    net = tiny_net()
    src = to_zarr(tmp_path / "in.zarr", vol, (3, 16, 16), zarr_format=2)
    roi = (8, 16, 48)  # z and x larger than the volume
    background = float(scale_intensity(np.float32(np.median(vol)), intensity_window(vol)))
    assert 0.0 < background < 0.5
    ref = reference(vol, net, roi, overlap=0.5, cval=background)
    run_blockwise_here(
        src, tmp_path / "out.zarr", model=net, roi_size=roi, overlap=0.5, chunks=(4, 12, 40), zarr_format=2,
        context_margin=8,
    )  # fmt: skip
    check_against_reference(tmp_path / "out.zarr", ref)
    # no margin (the default): the window fitted to the volume, no padding
    run_blockwise_here(
        src, tmp_path / "fit.zarr", model=net, roi_size=roi, overlap=0.5, chunks=(4, 12, 40), zarr_format=2
    )
    check_against_reference(tmp_path / "fit.zarr", reference(vol, net, (6, 16, 40), overlap=0.5))
    # padding_mode replicate: compare the float32 blend directly
    source = open_volume(src)
    grid = SlidingWindowGrid.create(vol.shape, roi, 0.5, padding_mode="replicate")
    x = scale_intensity(torch.from_numpy(vol), intensity_window(vol))[None, None]
    with torch.inference_mode():
        ref_rep = SlidingWindowInferer(roi, 1, 0.5, padding_mode="replicate")(x, net)[0]
    out = predict_block(source, grid, (0, 12, 0), (6, 30, 40), net, intensity_window(vol))
    assert float((out - ref_rep[:, :, 12:]).abs().max()) <= 1e-5


def test_output_layout_ome_metadata_and_record(tmp_path):
    vol = volume((10, 24, 24), seed=3)
    src = tmp_path / "img.zarr"
    g = zarr.open_group(str(src), mode="w", zarr_format=3)
    arr = g.create_array("0", shape=(1, 1, *vol.shape), chunks=(1, 1, 5, 24, 24), dtype="uint16")
    arr[:] = vol[None, None]
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"
    ]
    scale = [1.0, 1.0, 0.9988, 0.3296, 0.3296]
    g.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [
            {
                "axes": axes,
                "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
            }
        ],
    }
    net = tiny_net()
    out = tmp_path / "seg.zarr"
    res = run_blockwise_here(
        src, out, model=net, roi_size=(8, 16, 16), chunks=(5, 12, 24), threshold=0.45, prob_dtype="uint8"
    )
    root = zarr.open_group(str(out), mode="r")
    assert sorted(root.keys()) == ["mask", "prob"]  # no progress array left, no maps unless asked
    for name, dtype in (("prob", "uint8"), ("mask", "uint8")):
        ms = root[name].attrs["ome"]["multiscales"][0]
        assert root[name].attrs["ome"]["version"] == "0.5"
        assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
        assert ms["datasets"][0]["path"] == "0"
        assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == pytest.approx([0.9988, 0.3296, 0.3296])
        assert root[name]["0"].dtype == np.dtype(dtype) and root[name]["0"].shape == vol.shape
        assert root[name]["0"].chunks == (5, 12, 24)
    ref = reference(vol, net, (8, 16, 16))  # constant blending: the default without a bundle config
    prob = torch.sigmoid(ref[0]).numpy()
    assert np.abs(root["prob/0"][:] / 255.0 - prob).max() <= 0.5 / 255 + 1e-6
    margin = np.abs(prob - 0.45) > 1e-3
    np.testing.assert_array_equal(root["mask/0"][:][margin], (prob >= 0.45)[margin])
    rec = read_record(out)
    assert rec["status"] == "complete" and rec["input"]["array_path"] == "0"
    assert rec["input"]["spacing"] == pytest.approx([0.9988, 0.3296, 0.3296])
    assert rec["settings"]["roi_size"] == [8, 16, 16] and rec["settings"]["threshold"] == 0.45
    assert rec["intensity_window"] == list(res.intensity_window)
    # the same call again: nothing to do
    again = run_blockwise_here(
        src, out, model=net, roi_size=(8, 16, 16), chunks=(5, 12, 24), threshold=0.45, prob_dtype="uint8"
    )
    assert again.status == "already complete" and again.blocks_computed == 0


def test_zarr_v2_output_is_ngff_04(tmp_path):
    vol = volume((8, 16, 16), seed=4)
    src = to_zarr(tmp_path / "in.zarr", vol, (8, 16, 16))
    out = tmp_path / "out.zarr"
    run_blockwise_here(
        src,
        out,
        model=tiny_net(),
        roi_size=(8, 16, 16),
        spacing=(2.0, 0.5, 0.5),
        zarr_format=2,
        save_distance=True,
    )
    attrs = json.loads((out / "prob" / ".zattrs").read_text())
    assert attrs["multiscales"][0]["version"] == "0.4"
    assert attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [2.0, 0.5, 0.5]
    assert (out / "distance" / "0" / ".zarray").is_file() and not (out / "direction").exists()
    assert read_record(out)["input"]["spacing"] == [2.0, 0.5, 0.5]


def test_tiff_inputs_memmap_and_compressed(tmp_path):
    vol = volume((10, 20, 28), seed=5)
    write_tiff_stack(tmp_path / "a.tif", vol, spacing=(1.5, 0.25, 0.25))
    tifffile.imwrite(tmp_path / "b.tif", vol, compression="zlib")
    a, b = open_volume(tmp_path / "a.tif"), open_volume(tmp_path / "b.tif")
    assert a.kind == "tiff-memmap" and a.spacing == pytest.approx((1.5, 0.25, 0.25)) and a.spacing_source == "imagej"
    assert b.kind == "tiff-zarr" and b.spacing_source == "none"
    np.testing.assert_array_equal(a[2:7, 3:9, 1:20], vol[2:7, 3:9, 1:20])
    np.testing.assert_array_equal(b[2:7, 3:9, 1:20], vol[2:7, 3:9, 1:20])
    net = tiny_net()
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.zarr"
        run_blockwise_here(tmp_path / f"{name}.tif", out, model=net, roi_size=(8, 16, 16), chunks=(5, 10, 14))
        outs.append(zarr.open_array(str(out / "prob" / "0"), mode="r")[:])
    np.testing.assert_array_equal(outs[0], outs[1])
    scale = zarr.open_group(str(tmp_path / "a.zarr"), mode="r")["prob"].attrs["ome"]["multiscales"][0]["datasets"][0]
    assert scale["coordinateTransformations"][0]["scale"] == pytest.approx([1.5, 0.25, 0.25])


def test_ome_level_path_takes_spacing_from_group(tmp_path):
    vol = volume((6, 12, 12), seed=6)
    g = zarr.open_group(str(tmp_path / "img.zarr"), mode="w", zarr_format=2)
    g.create_array("0", shape=vol.shape, chunks=vol.shape, dtype="uint16")[:] = vol
    g.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [500.0, 100.0, 100.0]}]}
            ],
        }
    ]
    for path in (tmp_path / "img.zarr", tmp_path / "img.zarr" / "0"):
        src = open_volume(path)
        assert src.shape == vol.shape and src.spacing == pytest.approx((0.5, 0.1, 0.1))


def _bundle(tmp_path, net, inferer=True):
    """A bundle folder laid out like bundle/: configs/inference.json (same keys) and models/model.pt."""
    bdir = tmp_path / "bundle"
    (bdir / "configs").mkdir(parents=True)
    (bdir / "models").mkdir()
    cfg = {
        "network_def": {
            "_target_": "neurolink_monai.networks.NeuroLinkNet",
            "features": [4, 8],
            "kernel_size": 3,
            "dsconv": False,
        }
    }
    if inferer:
        cfg.update(
            {
                "roi_size": [8, 16, 16],
                "overlap": 0.5,
                "sw_batch_size": 2,
                "threshold": 0.3,
                "intensity_percentiles": [0.5, 99.0],
            }
        )
        cfg["inferer"] = {
            "_target_": "SlidingWindowInferer",
            "roi_size": "@roi_size",
            "sw_batch_size": "@sw_batch_size",
            "overlap": "@overlap",
            "mode": "gaussian",
        }
        cfg["preprocessing"] = {
            "_target_": "Compose",
            "transforms": [
                {
                    "_target_": "ScaleIntensityRangePercentilesd",
                    "keys": "image",
                    "lower": "@intensity_percentiles#0",
                    "upper": "@intensity_percentiles#1",
                    "b_min": 0.0,
                    "b_max": 1.0,
                    "clip": True,
                }
            ],
        }
    (bdir / "configs" / "inference.json").write_text(json.dumps(cfg))
    torch.save(net.state_dict(), bdir / "models" / "model.pt")
    return bdir


def test_default_model_is_the_bundles_with_its_settings(tmp_path):
    vol = volume((12, 24, 24), seed=7)
    net = tiny_net(seed=3)
    bdir = _bundle(tmp_path, net)
    src = to_zarr(tmp_path / "in.zarr", vol, (6, 12, 12))
    out = tmp_path / "out.zarr"
    res = run_blockwise(src, out, bundle_dir=bdir, chunks=(6, 12, 24), scheduler="synchronous", progress=False)
    rec = read_record(out)
    assert rec["settings"]["roi_size"] == [8, 16, 16] and rec["settings"]["mode"] == "gaussian"
    assert rec["settings"]["overlap"] == [0.5] * 3 and rec["settings"]["percentiles"] == [0.5, 99.0]
    assert rec["settings"]["threshold"] == 0.3 and rec["settings"]["sw_batch_size"] == 2
    assert res.intensity_window == tuple(np.percentile(vol, [0.5, 99.0]))
    check_against_reference(out, reference(vol, net, (8, 16, 16), 0.5, "gaussian", 0.5, 99.0))


def test_model_files_torchscript_and_checkpoint_dict(tmp_path):
    net = tiny_net(seed=4)
    bdir = _bundle(tmp_path, net, inferer=False)
    x = torch.rand(1, 1, 8, 16, 16)
    expected = net(x)
    torch.jit.save(torch.jit.script(net), tmp_path / "net.ts")
    torch.save({"model": net.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    for spec in (
        load_model_spec(tmp_path / "net.ts"),
        load_model_spec(tmp_path / "ckpt.pt", bdir / "configs" / "inference.json"),
        load_model_spec(bundle_dir=bdir),
    ):
        assert spec.seg_channels == 1 and spec.out_channels == 5
        torch.testing.assert_close(spec.load("cpu")(x), expected)
    assert (
        load_model_spec(tmp_path / "ckpt.pt", bdir / "configs" / "inference.json").digest
        != load_model_spec(tmp_path / "net.ts").digest
    )
    torch.save(tiny_net(features=(4, 8, 16), seed=None).state_dict(), tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="do not match 'network_def'"):
        load_model_spec(tmp_path / "bad.pt", bdir / "configs" / "inference.json")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt.*text file.*not a PyTorch checkpoint"):
        load_model_spec(tmp_path / "junk.pt", bdir / "configs" / "inference.json")
    with pytest.raises(FileNotFoundError, match="does not exist yet.*--model"):
        load_model_spec(bundle_dir=tmp_path / "nowhere")


def test_postprocessing_matches_the_bundle():
    bundle_utils = pytest.importorskip("neurolink_monai.bundle_utils")
    torch.manual_seed(0)
    for seg_channels in (1, 2):
        pred = torch.randn(seg_channels + 4, 6, 7, 8)
        pred[seg_channels + 3] = pred[seg_channels + 3].abs()
        pred[seg_channels : seg_channels + 3, 0, 0, :2] = 0.0  # undefined direction
        heads = bundle_utils.NeuroLinkOutputsd("pred", seg_channels, 0.4, "prob", "direction", "distance")(
            {"pred": pred}
        )
        ours = postprocess_block(pred, seg_channels, 0.4, prob_dtype="float16", maps_dtype="float32")
        np.testing.assert_allclose(ours["prob"], heads["prob"][0].numpy(), atol=5e-4)
        np.testing.assert_array_equal(ours["mask"], heads["pred"][0].numpy().astype(np.uint8))
        np.testing.assert_allclose(ours["direction"], heads["direction"].numpy(), atol=1e-6)
        np.testing.assert_allclose(ours["distance"], heads["distance"][0].numpy(), atol=1e-6)


def test_halo_is_the_window_overlap_in_voxels(tmp_path):
    vol = volume((12, 40, 40), seed=8)
    net = tiny_net()
    src = to_zarr(tmp_path / "in.zarr", vol, (6, 20, 20))
    res = run_blockwise_here(
        src, tmp_path / "h.zarr", model=net, roi_size=(8, 16, 16), halo=(3, 5, 6), chunks=(6, 20, 20)
    )
    settings = read_record(tmp_path / "h.zarr")["settings"]
    assert settings["scan_interval"] == [5, 11, 10]
    ref = reference(vol, net, (8, 16, 16), overlap=tuple(settings["overlap"]))
    check_against_reference(tmp_path / "h.zarr", ref)
    assert res.num_windows == SlidingWindowGrid.create(vol.shape, (8, 16, 16), settings["overlap"]).num_windows
    with pytest.raises(ValueError, match="either overlap .* or halo"):
        run_blockwise_here(src, tmp_path / "x.zarr", model=net, roi_size=(8, 16, 16), halo=2, overlap=0.25)
    with pytest.raises(ValueError, match="halo must satisfy"):
        run_blockwise_here(src, tmp_path / "x.zarr", model=net, roi_size=(8, 16, 16), halo=(8, 2, 2))


def test_model_is_deserialised_once_per_process():
    spec = model_spec_from_module(tiny_net(seed=9))
    first = spec.load("cpu")
    assert spec.load("cpu") is first
    assert model_spec_from_module(tiny_net(seed=9)).digest == spec.digest != model_spec_from_module(tiny_net()).digest


def test_run_blockwise_with_option_dataclasses_is_run_blockwise(tmp_path):
    src = to_zarr(tmp_path / "in.zarr", volume((8, 24, 24), seed=5), (8, 12, 12))
    net = tiny_net()
    by_keyword = run_blockwise_here(src, tmp_path / "a.zarr", model=net, roi_size=(8, 16, 16), chunks=(8, 12, 12))
    options = BlockwiseOptions(model=net, bundle_dir=tmp_path / "no-bundle", roi_size=(8, 16, 16), chunks=(8, 12, 12))
    settings = resolve_settings(src, options)
    assert settings.blocks.num_blocks == by_keyword.blocks_total == 4 and settings.grid.roi_size == (8, 16, 16)
    assert settings.identity() == {k: by_keyword.record[k] for k in ("format_version", "input", "model", "settings")}
    cluster = ClusterOptions(scheduler="synchronous")
    by_dataclass = run_blockwise_with(src, tmp_path / "b.zarr", options, cluster, progress=False)
    assert by_dataclass.status == "complete" and by_dataclass.intensity_window == by_keyword.intensity_window
    for name in ("prob", "mask"):
        a = zarr.open_array(str(tmp_path / "a.zarr" / name / "0"), mode="r")[:]
        np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "b.zarr" / name / "0"), mode="r")[:], a)
