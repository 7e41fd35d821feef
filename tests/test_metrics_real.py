# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The tree and continuity metrics on the real DIADEM OP gold traces (skipped when the data is absent)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from neurolink_monai.metrics import (
    cldice,
    neuron_distance,
    node_prf,
    skeleton_continuity,
    vaa3d_edge_samples,
)
from neurolink_monai.skeleton import subdivide_graph, swc_to_graph

OP_SPACING = (0.998835, 0.3296485, 0.3296485)  # (z, y, x) micrometres, from the stacks' ImageJ metadata


def load_gold(diadem_dir, k: int) -> np.ndarray:
    return np.loadtxt(diadem_dir / f"OP_{k}.swc", comments="#", ndmin=2)


def rasterise(swc: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Voxels along the gold polyline (26-connected: nodes at most 1 voxel apart per axis), dilated in-plane."""
    pts = np.rint(subdivide_graph(swc_to_graph(swc), 1.0).points).astype(int)
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(pts.T)] = True
    return ndimage.binary_dilation(mask, np.ones((1, 3, 3), dtype=bool))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_gold_against_itself(diadem_dir, k):
    gold = load_gold(diadem_dir, k)
    r = neuron_distance(gold, gold)
    assert r["ESA"] == pytest.approx(0.0, abs=1e-9) and r["DSA"] == 0.0 and r["PDS"] == 0.0
    p = node_prf(gold, gold)
    assert (p["precision"], p["recall"], p["f1"]) == (1.0, 1.0, 1.0)


def test_jittered_gold_has_small_esa(diadem_dir):
    gold = load_gold(diadem_dir, 1)
    jittered = gold.copy()
    jittered[:, 2:5] += np.random.default_rng(0).normal(scale=0.5, size=(len(gold), 3))
    r = neuron_distance(jittered, gold)
    assert 0.2 < r["ESA"] < 1.0 and r["PDS"] < 0.01
    assert node_prf(jittered, gold, tolerance=2.0)["f1"] == 1.0
    um = neuron_distance(jittered, gold, spacing=OP_SPACING, threshold=2.0)
    assert um["ESA"] < r["ESA"]  # xy voxels are 0.33 um, so the same jitter is smaller in micrometres


def test_shifted_gold_distance_and_brute_force(diadem_dir):
    gold = load_gold(diadem_dir, 3)
    shifted = gold.copy()
    shifted[:, 2] += 3.0  # 3 voxels along x
    r = neuron_distance(shifted, gold)
    assert 0.5 < r["ESA"] <= 3.0 + 1e-9 and r["PDS"] > 0.1
    g = swc_to_graph(gold)
    samples = vaa3d_edge_samples(swc_to_graph(shifted))
    a, b = g.points[g.edges[:, 0]], g.points[g.edges[:, 1]]
    best = np.full(len(samples), np.inf)
    for i in range(0, len(samples), 256):  # brute force over every gold segment
        p = samples[i : i + 256, None, :]
        t = np.clip(((p - a) * (b - a)).sum(-1) / ((b - a) ** 2).sum(-1).clip(1e-12), 0, 1)
        best[i : i + 256] = np.sqrt(((p - a - t[..., None] * (b - a)) ** 2).sum(-1)).min(axis=1)
    assert r["ESA_ab"] == pytest.approx(best.mean(), abs=1e-12)
    assert r["PDS_ab"] == pytest.approx((best >= 2.0).mean(), abs=1e-12)


def test_swc_path_input(diadem_dir):
    io = pytest.importorskip("neurolink_monai.io")
    if not hasattr(io, "read_swc"):
        pytest.skip("neurolink_monai.io.read_swc is not available")
    path = diadem_dir / "OP_2.swc"
    assert neuron_distance(path, load_gold(diadem_dir, 2))["ESA"] == pytest.approx(0.0, abs=1e-9)


def test_continuity_of_rasterised_gold_and_gaps(diadem_dir):
    gold = load_gold(diadem_dir, 2)
    shape = tifffile.TiffFile(diadem_dir / "OP_2.tif").series[0].shape
    mask = rasterise(gold, shape)
    r = skeleton_continuity(mask, gold)
    assert (r["breaks"], r["splits"], r["merges"], r["omitted_fraction"]) == (0, 0, 0, 0.0)
    assert r["erl_fraction"] == pytest.approx(1.0)
    # gaps at two inner nodes (each far from any tip) cut the trace into at least three runs
    nodes = np.rint(gold[[50, 156]][:, [4, 3, 2]]).astype(int)
    for z, y, x in nodes:
        mask[max(z - 2, 0) : z + 3, y - 3 : y + 4, x - 3 : x + 4] = False
    cut = skeleton_continuity(mask, gold, spacing=OP_SPACING)
    assert cut["breaks"] >= 2 and cut["erl_fraction"] < 0.9 and 0 < cut["omitted_fraction"] < 0.05


def test_bright_stack_covers_gold_trace(diadem_dir):
    """OP_1 is bright and nearly background-free: its non-zero voxels should hold the gold trace at
    [round(z), round(y), round(x)], which also checks the coordinate convention (x/y swapped fails)."""
    image = tifffile.imread(diadem_dir / "OP_1.tif")
    gold = load_gold(diadem_dir, 1)
    r = skeleton_continuity(image > 0, gold)
    assert r["omitted_fraction"] < 0.05 and r["erl_fraction"] > 0.8
    swapped = gold.copy()
    swapped[:, [2, 3]] = swapped[:, [3, 2]]
    assert skeleton_continuity(image > 0, swapped)["omitted_fraction"] > 0.5
    assert cldice(image > 0, rasterise(gold, image.shape)) > 0.1
