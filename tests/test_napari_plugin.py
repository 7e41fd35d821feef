# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The napari plugin without a GUI: manifest, readers, writer, SWC <-> layer data, inference function."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from neurolink_monai.io import read_swc, sort_swc, write_swc, write_tiff_stack
from neurolink_monai.io.swc import SWCError
from neurolink_monai.napari import MANIFEST_PATH
from neurolink_monai.napari.layers import edge_status, points_to_swc, spacing_from_header, swc_to_layer_data, tree_index
from neurolink_monai.napari.readers import (
    get_swc_reader,
    get_tiff_reader,
    get_zarr_reader,
    read_swc_layers,
    read_tiff_layers,
)
from neurolink_monai.napari.segment import InferenceCancelled, count_windows, segment_volume
from neurolink_monai.napari.writers import write_swc_points
from neurolink_monai.networks import NeuroLinkNet

from helpers import CONFIGS, run_blockwise_here, tiny_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def forest() -> np.ndarray:
    """Two trees, ids not sorted, a branch point, non-integer coordinates, several node types."""
    return np.array(
        [
            [10, 1, 5.5, 6.0, 2.0, 3.0, -1],
            [11, 3, 7.0, 6.5, 2.5, 1.0, 10],
            [12, 3, 9.0, 7.0, 3.0, 0.8, 11],
            [13, 3, 8.0, 4.0, 2.0, 0.7, 11],
            [3, 2, 20.0, 1.0, 1.0, 0.5, -1],
            [4, 2, 21.0, 2.0, 1.5, 0.5, 3],
        ]
    )


def tiny_checkpoint(tmp_path) -> tuple[str, str]:
    """A state dict of a tiny NeuroLinkNet and a bundle config whose network_def builds it."""
    network_def = {
        "_target_": "neurolink_monai.networks.NeuroLinkNet",
        "features": [4, 4, 4, 4],
        "kernel_size": 3,
    }
    config = tmp_path / "tiny_inference.json"
    config.write_text(json.dumps({"network_def": network_def, "roi_size": [8, 16, 16], "overlap": 0.25}))
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    torch.save(NeuroLinkNet(features=(4, 4, 4, 4), kernel_size=3).state_dict(), ckpt)
    return str(ckpt), str(config)


def test_manifest_validates_with_npe2():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(MANIFEST_PATH)
    assert manifest.name == "neurolink-monai"
    cli = shutil.which("npe2")
    if cli is None:
        pytest.skip("npe2 command line not on PATH")
    res = subprocess.run([cli, "validate", str(MANIFEST_PATH)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_manifest_commands_resolve():
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load(MANIFEST_PATH.read_text())
    names = [c["python_name"] for c in manifest["contributions"]["commands"]]
    for name in names:
        module, attr = name.split(":")
        if module.endswith(".widget"):
            pytest.importorskip("napari")
            pytest.importorskip("magicgui")
        mod = __import__(module, fromlist=[attr])
        assert callable(getattr(mod, attr)), name


def test_swc_layer_data_axis_order_spacing_and_features():
    swc = forest()
    (points, pmeta, ptype), (vectors, vmeta, vtype) = swc_to_layer_data(swc, "t", spacing=(2.0, 0.5, 0.25))
    assert (ptype, vtype) == ("points", "vectors")
    np.testing.assert_array_equal(points, swc[:, [4, 3, 2]])  # (z, y, x) from SWC (x, y, z)
    assert pmeta["scale"] == vmeta["scale"] == (2.0, 0.5, 0.25)
    np.testing.assert_array_equal(pmeta["features"]["type"], swc[:, 1])
    np.testing.assert_array_equal(pmeta["features"]["radius"], swc[:, 5])
    np.testing.assert_array_equal(pmeta["features"]["tree"], [0, 0, 0, 0, 1, 1])
    assert not np.array_equal(pmeta["face_color"][0], pmeta["face_color"][4])  # trees are distinguishable
    # one vector per edge, from the parent to the child
    assert vectors.shape == (4, 2, 3)
    np.testing.assert_array_equal(vectors[0, 0], points[0])
    np.testing.assert_array_equal(vectors[0, 0] + vectors[0, 1], points[1])


def test_swc_round_trip_through_layer_data_and_files(tmp_path):
    src = tmp_path / "in.swc"
    write_swc(src, forest(), header=["voxel spacing (z, y, x) = (2.0, 0.5, 0.5)"], sort=False)
    before = src.read_bytes()
    (points, meta, _), _ = read_swc_layers(str(src))
    assert meta["scale"] == (2.0, 0.5, 0.5)
    out = tmp_path / "out.swc"
    assert write_swc_points(out, points, meta) == [str(out)]
    np.testing.assert_array_equal(read_swc(out), sort_swc(forest()))
    assert src.read_bytes() == before  # nothing opened is modified
    # the written spacing is read back, so a second round trip is the identity
    (points2, meta2, _), _ = read_swc_layers(str(out))
    assert meta2["scale"] == (2.0, 0.5, 0.5)
    np.testing.assert_array_equal(points_to_swc(points2, meta2["features"]), read_swc(out))


def test_points_to_swc_honours_proofreading_edits():
    (points, meta, _), _ = swc_to_layer_data(forest())
    feats = {k: np.asarray(v) for k, v in meta["features"].items()}
    keep = np.array([True, False, True, True, True, True])  # delete node 11: its children 12, 13 become roots
    edited = {k: v[keep] for k, v in feats.items()}
    swc = points_to_swc(points[keep], edited)
    assert int((swc[:, 6] == -1).sum()) == 4
    # a point added by hand repeats the last id: it becomes a new one-node tree
    added = {k: np.append(v, v[-1]) for k, v in feats.items()}
    swc = points_to_swc(np.vstack([points, [[0.0, 1.0, 2.0]]]), added)
    assert len(swc) == 7 and int((swc[:, 6] == -1).sum()) == 3
    np.testing.assert_array_equal(swc[-1, 2:5], [2.0, 1.0, 0.0])
    with pytest.raises(SWCError, match="no 'id' feature"):
        points_to_swc(points, {})


def test_spacing_from_header_formats():
    assert spacing_from_header(["# voxel spacing (z, y, x) = (2.0, 0.5, 0.5)"]) == (2.0, 0.5, 0.5)
    assert spacing_from_header(["# units: voxels; spacing (z, y, x): (1.5, 1.0, 1.0)"]) == (1.5, 1.0, 1.0)
    assert spacing_from_header(["# nothing here"]) is None
    assert spacing_from_header(["# spacing (z, y, x) = (0, 1, 1)"]) is None


def test_edge_status_marks_bridged_and_low_confidence():
    swc = np.array([[1, 3, 0, 0, 0, 1, -1], [2, 3, 1, 0, 0, 1, 1], [3, 3, 2, 0, 0, 1, 2], [4, 3, 3, 0, 0, 1, 3]])
    prob = np.array([[[0.9, 0.9, 0.6, 0.2]]], dtype=np.float32)
    parent_row, tree = tree_index(swc)
    status = edge_status(swc[:, [4, 3, 2]], parent_row, prob, threshold=0.5, confident=0.7)
    np.testing.assert_array_equal(status, [0, 1, 2])
    with pytest.raises(ValueError, match="threshold"):
        edge_status(swc[:, [4, 3, 2]], parent_row, prob, threshold=0.8, confident=0.7)


def test_tiff_reader_uses_spacing_as_scale(tmp_path):
    path = tmp_path / "stack.tif"
    vol = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    write_tiff_stack(path, vol, spacing=(2.0, 0.5, 0.25))
    assert get_tiff_reader(str(path)) is read_tiff_layers
    [(data, meta, kind)] = read_tiff_layers(str(path))
    assert kind == "image" and data.shape == (4, 5, 6)
    np.testing.assert_allclose(meta["scale"], (2.0, 0.5, 0.25), rtol=1e-5)


def test_readers_decline_other_paths(tmp_path):
    assert get_swc_reader(str(tmp_path / "a.tif")) is None
    assert get_tiff_reader(str(tmp_path / "a.swc")) is None
    assert get_swc_reader([str(tmp_path / "a.swc"), str(tmp_path / "b.swc")]) is None
    (tmp_path / "other.zarr").mkdir()
    assert get_zarr_reader(str(tmp_path / "other.zarr")) is None  # not a blockwise output


def test_blockwise_zarr_reader_is_lazy(tmp_path):
    da = pytest.importorskip("dask.array")
    src = tmp_path / "in.tif"
    rng = np.random.default_rng(0)
    write_tiff_stack(src, rng.integers(0, 1000, (8, 16, 16)).astype(np.uint16), spacing=(2.0, 1.0, 1.0))
    net = tiny_net((4, 4), dsconv=True)
    out = tmp_path / "out.zarr"
    run_blockwise_here(
        src, out, model=net, roi_size=(8, 16, 16), chunks=(8, 16, 16), save_direction=True, save_distance=True
    )
    reader = get_zarr_reader(str(out))
    assert reader is not None
    layers = reader(str(out))
    kinds = {meta["name"] if isinstance(meta["name"], str) else "direction": kind for _, meta, kind in layers}
    assert kinds == {"out prob": "image", "out mask": "labels", "direction": "image", "out distance": "image"}
    for data, meta, _ in layers:
        assert isinstance(data, da.Array)  # lazy: nothing loaded
        assert tuple(meta["scale"])[-3:] == (2.0, 1.0, 1.0)
    direction = next(d for d, m, _ in layers if m.get("channel_axis") == 0)
    assert direction.shape == (3, 8, 16, 16)


def test_segment_volume_runs_reports_progress_and_cancels(tmp_path):
    ckpt, config = tiny_checkpoint(tmp_path)
    image = np.random.default_rng(0).integers(0, 500, (8, 16, 16)).astype(np.uint16)
    before = image.copy()
    calls = []
    res = segment_volume(image, ckpt, config=config, progress=lambda d, t: calls.append((d, t)))
    assert res.prob.shape == res.mask.shape == (8, 16, 16) and res.direction.shape == (3, 8, 16, 16)
    assert calls == [(1, 1)]
    np.testing.assert_array_equal(image, before)
    big = np.random.default_rng(1).random((8, 16, 40)).astype(np.float32)  # a constant stack is refused
    assert count_windows(big.shape, (8, 16, 16), 0.25) == 3  # x starts 0, 12, 24 (interval 16 * 0.75)
    calls.clear()
    segment_volume(big, ckpt, config=config, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]  # the count matches the inferer's calls
    with pytest.raises(InferenceCancelled, match="after 0 of 3"):
        segment_volume(big, ckpt, config=config, cancelled=lambda: True)


def test_segment_volume_errors(tmp_path):
    ckpt, config = tiny_checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r"single-channel 3D stack .* shape \(16, 16\)"):
        segment_volume(np.zeros((16, 16)), ckpt, config=config)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        segment_volume(np.zeros((8, 16, 16)), tmp_path / "missing.pt", config=config)


def test_non_gui_modules_do_not_import_napari_or_qt():
    """The non-GUI modules must import without napari or Qt (the default test command runs without the extra)."""
    import ast

    import neurolink_monai.napari as plugin

    gui = {"napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "npe2"}
    for name in ("__init__", "layers", "readers", "writers", "segment", "headless"):
        tree = ast.parse((MANIFEST_PATH.parent / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not roots & gui, f"{plugin.__name__}.{name} imports {roots & gui}"


def test_bundle_settings_carry_the_tracer_keywords_of_inference_json():
    """The napari widget traces with these: the ``TraceSWCd`` entry of ``inference.json``, resolved."""
    from neurolink_monai.inference.blockwise import bundle_inference_settings

    config = json.loads((CONFIGS / "inference.json").read_text())
    trace = bundle_inference_settings()["trace"]
    assert trace["link_cost"] == config["trace_link_cost"] and trace["max_trees"] == config["trace_max_trees"]
    assert trace["min_contrast"] == config["trace_min_contrast"] and trace["threshold"] == config["threshold"]
