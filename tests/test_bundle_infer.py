# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The bundle's inference workflow: outputs named after the input stem, single-task networks, folders and lists,
NIfTI axis order, and the input checks that fail before anything is written."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from neurolink_monai.bundle_utils import (
    InferenceInputError,
    NeuroLinkOutputsd,
    OutputWriteError,
    SaveNeuroLinkOutputsd,
    image_preprocessing_from_config,
    inference_heads,
    input_stem,
    list_inference_inputs,
    load_datalist,
)
from neurolink_monai.data import TREE_COLOURS, mip_preview
from neurolink_monai.io import read_swc, read_tiff_stack, write_tiff_stack

from helpers import bundle_net, exception_messages, run_inference


def test_inference_writes_all_outputs_named_after_the_stem(trained, tiny_dataset, tmp_path):
    src = Path(load_datalist(tiny_dataset, "test")[0]["image"])
    stack, spacing = read_tiff_stack(src)
    sp = (2.0, 0.5, 0.5)
    image = tmp_path / "in" / "my stack.ome.tif"
    image.parent.mkdir()
    write_tiff_stack(image, stack, spacing=sp)
    out = tmp_path / "out"
    run_inference(trained["root"], str(image), out, save_direction=True, save_distance="true")
    names = sorted(p.name for p in out.iterdir())
    stem = "my stack"
    assert names == sorted(
        f"{stem}{s}" for s in ("_prob.tif", "_seg.tif", ".swc", "_mip.png", "_trace.png", "_dir.tif", "_dist.tif")
    ), names
    prob, prob_sp = read_tiff_stack(out / f"{stem}_prob.tif")
    seg, _ = read_tiff_stack(out / f"{stem}_seg.tif")
    direction, _ = read_tiff_stack(out / f"{stem}_dir.tif")
    dist, _ = read_tiff_stack(out / f"{stem}_dist.tif")
    assert prob.shape == seg.shape == dist.shape == stack.shape and direction.shape == (3, *stack.shape)
    assert prob.dtype == np.float32 and 0.0 <= prob.min() and prob.max() <= 1.0
    assert seg.dtype == np.uint8 and set(np.unique(seg)) <= {0, 255}
    np.testing.assert_array_equal(seg > 0, prob >= 0.5)
    np.testing.assert_allclose(prob_sp, sp, rtol=1e-5)
    norms = np.linalg.norm(direction, axis=0)
    assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))
    assert dist.min() >= 0
    swc = read_swc(out / f"{stem}.swc")
    assert swc.ndim == 2 and swc.shape[1] == 7
    if len(swc):  # SWC nodes lie inside the stack, (x, y, z) -> [z, y, x]
        assert np.all(swc[:, 2:5] >= -0.5) and np.all(swc[:, 2:5] <= np.array(stack.shape[::-1]) - 0.5)
    from PIL import Image

    assert Image.open(out / f"{stem}_mip.png").size == (stack.shape[2], stack.shape[1])
    assert Image.open(out / f"{stem}_trace.png").size == (stack.shape[2], stack.shape[1])


def test_inference_with_a_segmentation_only_network(tiny_dataset, tmp_path):
    root = tmp_path / "bundle"
    (root / "models").mkdir(parents=True)
    net = bundle_net(features=[4, 8], multitask=False)
    torch.save(net.state_dict(), root / "models" / "model.pt")
    image = load_datalist(tiny_dataset, "test")[0]["image"]
    stem = input_stem(image)
    single = {"network_def#multitask": False, "threshold": 0.45}
    out = tmp_path / "out"
    run_inference(root, image, out, **single)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}{s}" for s in ("_prob.tif", "_seg.tif", ".swc", "_mip.png", "_trace.png")
    )
    out2 = tmp_path / "out2"
    with pytest.raises(Exception) as info:
        run_inference(root, image, out2, save_direction=True, **single)
    assert any("no direction head" in m and Path(image).name in m for m in exception_messages(info.value))
    assert not out2.exists() or not any(out2.iterdir())


@pytest.mark.parametrize("flag, expected", [("false", False), ("False", False), ("true", True), (False, False)])
def test_command_line_strings_reach_the_tracer_as_bools(flag, expected):
    # `--trace_soma_in_view false` arrives as the string "false" from `python -m monai.bundle run`
    from monai.bundle import ConfigParser

    from neurolink_monai.inference.blockwise import trace_step_id

    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[1] / "bundle" / "configs" / "inference.json"))
    parser.update({"trace_soma_in_view": flag})
    assert parser.get_parsed_content(trace_step_id(parser)).tracer.config.soma_in_view is expected
    parser.update({"trace_soma_in_view": "maybe"})
    with pytest.raises(Exception) as info:
        parser.get_parsed_content(trace_step_id(parser))
    assert any("trace_soma_in_view" in m and "maybe" in m for m in exception_messages(info.value))


def test_inference_needs_only_the_heads_it_saves_or_traces():
    assert inference_heads() == ["seg"] and inference_heads("false", "0") == ["seg"]
    assert inference_heads(save_direction="true") == ["seg", "direction"]
    assert inference_heads(trace_distance_key="pred_distance") == ["seg", "distance"]
    assert inference_heads(True, trace_distance_key="d") == ["seg", "direction", "distance"]
    with pytest.raises(ValueError, match="save_distance must be true or false, got 'maybe'"):
        inference_heads(save_distance="maybe")


def test_outputs_of_predictions_holding_some_heads():
    torch.manual_seed(0)
    pred = torch.randn(5, 6, 8, 8)
    keys = {"prob_key": "prob", "direction_key": "dir", "distance_key": "dist"}
    full = NeuroLinkOutputsd("pred", **keys)({"pred": pred})
    seg = NeuroLinkOutputsd("pred", allow_missing_heads=True, heads=["seg"], **keys)({"pred": pred[:1]})
    assert torch.equal(seg["pred"], full["pred"]) and torch.equal(seg["prob"], full["prob"])
    assert seg["dir"] is None and seg["dist"] is None
    dist = NeuroLinkOutputsd("pred", heads=["distance", "seg"], distance_key="dist")({"pred": pred[[0, 4]]})
    assert torch.equal(dist["dist"], full["dist"])
    with pytest.raises(ValueError, match="no direction head"):  # left out by the inferer: missing
        NeuroLinkOutputsd("pred", heads=["seg"], **keys)({"pred": pred[:1]})
    with pytest.raises(ValueError, match="heads"):
        NeuroLinkOutputsd("pred", heads=["direction"])


def test_outputs_of_a_single_task_prediction():
    pred = torch.randn(1, 6, 8, 8)
    keys = {"prob_key": "prob", "direction_key": "dir", "distance_key": "dist"}
    with pytest.raises(ValueError, match="no direction head"):
        NeuroLinkOutputsd("pred", **keys)({"pred": pred})
    d = NeuroLinkOutputsd("pred", allow_missing_heads=True, **keys)({"pred": pred})
    assert d["dir"] is None and d["dist"] is None and d["prob"].shape == (1, 6, 8, 8)


def test_inference_on_folder_and_list(trained, tiny_dataset, tmp_path):
    folder = tmp_path / "stacks"
    folder.mkdir()
    for item in load_datalist(tiny_dataset, "test"):
        shutil.copy(item["image"], folder / f"{input_stem(item['image'])}.tiff")
    (folder / "notes.txt").write_text("not an image: ignored")
    out = tmp_path / "out"
    run_inference(trained["root"], str(folder), out, trace=False, save_mip=False)
    stems = sorted(input_stem(p) for p in folder.glob("*.tiff"))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}{x}" for s in stems for x in ("_prob.tif", "_seg.tif"))
    out2 = tmp_path / "out2"
    run_inference(trained["root"], [str(sorted(folder.glob("*.tiff"))[0])], out2, trace="false")
    assert sorted(p.name for p in out2.iterdir()) == [
        f"{stems[0]}_mip.png",
        f"{stems[0]}_prob.tif",
        f"{stems[0]}_seg.tif",
    ]


def test_inference_reads_nifti_as_zyx(trained, tmp_path):
    rng = np.random.default_rng(0)
    zyx = rng.random((20, 24, 28)).astype(np.float32)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(zyx, (2, 1, 0)), np.diag([0.4, 0.5, 2.0, 1.0])), str(path))
    data = image_preprocessing_from_config()[0:4]
    d = {"image": str(path)}
    for t in data:
        d = t(d)
    assert tuple(d["image"].shape) == (1, 20, 24, 28)
    np.testing.assert_allclose(d["image"][0].numpy(), zyx, rtol=1e-6)
    out = tmp_path / "out"
    run_inference(trained["root"], str(path), out, trace=False)
    prob, spacing = read_tiff_stack(out / "vol_prob.tif")
    assert prob.shape == zyx.shape
    np.testing.assert_allclose(spacing, (2.0, 0.5, 0.4), rtol=1e-5)


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[object, str, str]]:
    """name -> (input_path, file named in the error, expected words)."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty").mkdir()
    tifffile.imwrite(bad / "flat.tif", np.zeros((32, 32), np.uint8))
    write_tiff_stack(bad / "two.tif", np.zeros((2, 8, 32, 32), np.uint8))
    tifffile.imwrite(bad / "nan.tif", np.full((8, 32, 32), np.nan, np.float32))
    (bad / "junk.tif").write_bytes(b"this is not a TIFF file")
    nib.save(nib.Nifti1Image(np.full((16, 16, 8), np.nan, np.float32), np.eye(4)), str(bad / "nan.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 8, 2), np.float32), np.eye(4)), str(bad / "rgb.nii.gz"))
    return {
        "missing": (str(bad / "missing.tif"), "missing.tif", "no such file"),
        "unreadable": (str(bad / "junk.tif"), "junk.tif", "not a TIFF"),
        "2d": (str(bad / "flat.tif"), "flat.tif", "2D"),
        "channels": (str(bad / "two.tif"), "two.tif", "2 channels"),
        "nan": (str(bad / "nan.tif"), "nan.tif", "NaN"),
        "nan_nifti": (str(bad / "nan.nii.gz"), "nan.nii.gz", "NaN"),
        "channels_nifti": (str(bad / "rgb.nii.gz"), "rgb.nii.gz", "2 channels"),
        "empty_folder": (str(bad / "empty"), "empty", "no image stack"),
        "empty_list": ([], "input_path", "empty list"),
    }


BAD_CASES = [
    "missing",
    "unreadable",
    "2d",
    "channels",
    "nan",
    "nan_nifti",
    "channels_nifti",
    "empty_folder",
    "empty_list",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_inputs_fail_clearly_before_writing(case, trained, tiny_dataset, tmp_path):
    path, named, words = _bad_inputs(tmp_path)[case]
    good = load_datalist(tiny_dataset, "test")[0]["image"]
    inputs = [good, path] if isinstance(path, str) else path  # a good stack first: nothing may be written for it
    with pytest.raises(InferenceInputError) as info:
        list_inference_inputs(inputs)
    assert named in str(info.value) and words.lower() in str(info.value).lower(), str(info.value)
    out = tmp_path / "out"
    with pytest.raises(Exception) as info:
        run_inference(trained["root"], inputs, out)
    messages = exception_messages(info.value)
    assert any(named in m and words.lower() in m.lower() for m in messages), messages
    assert not out.exists() or not any(out.iterdir())


def test_duplicate_stems_are_refused(tmp_path, tiny_dataset):
    src = load_datalist(tiny_dataset, "test")[0]["image"]
    (tmp_path / "a").mkdir()
    shutil.copy(src, tmp_path / "a" / "x.tif")
    shutil.copy(src, tmp_path / "x.tiff")
    with pytest.raises(InferenceInputError, match="share the output name stem 'x'"):
        list_inference_inputs([str(tmp_path / "a" / "x.tif"), str(tmp_path / "x.tiff")], validate=False)


def test_outputs_may_not_overwrite_inputs(tmp_path, tiny_dataset):
    src = load_datalist(tiny_dataset, "test")[0]["image"]
    shutil.copy(src, tmp_path / "a.tif")
    shutil.copy(src, tmp_path / "a_seg.tif")
    with pytest.raises(InferenceInputError, match="a_seg.tif: this input would be overwritten"):
        list_inference_inputs(str(tmp_path), validate=False, output_dir=str(tmp_path))
    assert len(list_inference_inputs(str(tmp_path), validate=False, output_dir=str(tmp_path / "out"))) == 2


def test_writer_leaves_nothing_of_a_failed_case(tmp_path, tiny_dataset):
    src = load_datalist(tiny_dataset, "test")[0]["image"]
    d = {"image": src}
    for t in image_preprocessing_from_config():
        d = t(d)
    pred = torch.randn(5, *d["image"].shape[1:])
    d = NeuroLinkOutputsd("pred", prob_key="prob", direction_key="pred_direction", distance_key="pred_distance")(
        {**d, "pred": pred}
    )
    out = tmp_path / "out"
    writer = SaveNeuroLinkOutputsd("image", output_dir=out, save_swc=True)  # no "swc" in the data: fails late
    with pytest.raises(OutputWriteError, match=Path(src).name):
        writer(d)
    assert list(out.iterdir()) == []  # neither the finished TIFFs nor the staging folder remain
    SaveNeuroLinkOutputsd("image", output_dir=out, save_swc=False)(d)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{input_stem(src)}{s}" for s in ("_prob.tif", "_seg.tif", "_mip.png")
    )


def test_writer_draws_the_traced_trees_in_order(tmp_path, tiny_dataset):
    from PIL import Image

    src = load_datalist(tiny_dataset, "test")[0]["image"]
    d = {"image": src}
    for t in image_preprocessing_from_config():
        d = t(d)
    d = NeuroLinkOutputsd("pred", prob_key="prob")({**d, "pred": torch.randn(1, *d["image"].shape[1:])})
    # two trees: a line along x at y = 5, then a line along y at x = 30
    main = [[1, 3, 2.0, 5, 1, 1, -1], [2, 3, 20.0, 5, 1, 1, 1]]
    d["swc"] = np.array(main + [[3, 3, 30.0, 10, 2, 1, -1], [4, 3, 30.0, 30, 2, 1, 3]])
    SaveNeuroLinkOutputsd("image", output_dir=tmp_path, save_swc=True)(d)
    trace = np.asarray(Image.open(tmp_path / f"{input_stem(src)}_trace.png"))
    colours = np.rint(TREE_COLOURS[:, :3] * 255).astype(np.uint8)
    assert (trace[5, 2:21] == colours[0]).all() and (trace[10:31, 30] == colours[1]).all()
    plain = mip_preview(d["image"])  # no mask overlay: only the trees are drawn on the projection
    assert (trace[20:, :20] == plain[20:, :20]).all()


def test_real_stack_passes_the_input_checks(diadem_dir):
    items = list_inference_inputs(str(diadem_dir / "OP_1.tif"))
    d = items[0]
    for t in image_preprocessing_from_config():
        d = t(d)
    img = d["image"]
    assert img.shape[0] == 1 and img.ndim == 4
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    from neurolink_monai.io import spacing_from_affine

    np.testing.assert_allclose(spacing_from_affine(img.affine), (0.9988, 0.3296, 0.3296), rtol=1e-3)


def test_trace_root_reaches_the_tracer():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from real_data import bundle_tracer  # the benchmarks' one reading of inference.json's tracer

    assert bundle_tracer()[1].tracer.root is None
    assert bundle_tracer({"trace_root": [12, 30.5, 4]})[1].tracer.root == (12.0, 30.5, 4.0)
