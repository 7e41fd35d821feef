# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Metric functions on hand-computed cases: voxel PRF, clDice, Betti errors, continuity (ERL), Vaa3D neuron
distance and node PRF (the skeleton graphs they are built on: tests/test_skeleton_graph.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from neurolink_monai.metrics import (
    SegmentDistanceIndex,
    betti_errors,
    betti_numbers,
    cldice,
    neuron_distance,
    node_prf,
    skeleton_continuity,
    topology_precision_sensitivity,
    vaa3d_edge_samples,
    voxel_prf,
)
from neurolink_monai.skeleton import subdivide_graph, swc_to_graph

from helpers import chain_swc, straight_swc

# ---------------------------------------------------------------- voxel metrics


def test_voxel_prf_hand_counts():
    pred = np.array([1, 1, 0, 0, 1])
    gold = np.array([1, 0, 1, 0, 1], dtype=bool)
    r = voxel_prf(pred, gold)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 1)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3) and r["dice"] == pytest.approx(4 / 6)


def test_voxel_prf_asymmetric_and_torch_input():
    gold = np.zeros((4, 4, 4), bool)
    gold[1, 1, :] = True  # 4 voxels
    pred = torch.zeros(4, 4, 4)
    pred[1, 1, :2] = 1  # 2 true positives
    pred[3, 3, 3] = 1  # 1 false positive
    r = voxel_prf(pred, gold)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(0.5)
    assert r["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5)) == pytest.approx(r["dice"])


def test_voxel_prf_empty_masks():
    empty = np.zeros((3, 3, 3), bool)
    full = np.ones((3, 3, 3), bool)
    assert voxel_prf(empty, empty) == {
        "precision": 1.0,
        "recall": 1.0,
        "f1": 1.0,
        "dice": 1.0,
        "tp": 0,
        "fp": 0,
        "fn": 0,
    }
    r = voxel_prf(empty, full)
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)
    r = voxel_prf(full, empty)
    assert (r["precision"], r["recall"], r["dice"]) == (0.0, 0.0, 0.0)


def test_voxel_prf_rejects_probabilities_and_shape_mismatch():
    with pytest.raises(ValueError, match="binary mask.*0.7"):
        voxel_prf(np.array([0.0, 0.7]), np.array([0, 1]))
    with pytest.raises(ValueError, match="same shape.*\\(2,\\).*\\(3,\\)"):
        voxel_prf(np.array([0, 1]), np.array([0, 1, 1]))
    with pytest.raises(TypeError, match="dtype"):
        voxel_prf(np.array(["a", "b"]), np.array([0, 1]))


def test_cldice_one_voxel_line_half_predicted():
    gold = np.zeros((5, 5, 30), bool)
    gold[2, 2, 5:25] = True  # 20 voxels, its own skeleton
    pred = np.zeros_like(gold)
    pred[2, 2, 5:15] = True  # first 10
    tprec, tsens = topology_precision_sensitivity(pred, gold)
    assert tprec == 1.0 and tsens == pytest.approx(10 / 20)
    assert cldice(pred, gold) == pytest.approx(2 * 0.5 / 1.5)


def test_cldice_ignores_thickness_unlike_dice():
    gold = np.zeros((7, 7, 30), bool)
    gold[3, 3, 5:25] = True
    pred = ndimage.binary_dilation(gold, structure=np.ones((3, 3, 3)))  # 3x3 tube around the gold line
    assert cldice(pred, gold) == pytest.approx(1.0)
    assert voxel_prf(pred, gold)["dice"] < 0.25


def test_cldice_disconnected_prediction_and_empty():
    gold = np.zeros((5, 5, 30), bool)
    gold[2, 2, 5:25] = True
    assert cldice(gold, gold) == 1.0
    assert cldice(np.zeros_like(gold), np.zeros_like(gold)) == 1.0
    assert cldice(np.zeros_like(gold), gold) == 0.0
    off = np.zeros_like(gold)
    off[0, 0, 5:25] = True  # parallel, not overlapping
    assert cldice(off, gold) == 0.0
    with pytest.raises(ValueError, match="dimensions"):
        cldice(np.zeros(5), np.zeros(5))


# ---------------------------------------------------------------- Betti numbers


def _ring() -> np.ndarray:
    m = np.zeros((3, 7, 7), bool)
    m[1, 1:6, 1:6] = True
    m[1, 2:5, 2:5] = False
    return m


def test_betti_numbers_ring_shell_and_plate():
    assert betti_numbers(_ring()) == (1, 1, 0)
    shell = np.zeros((5, 5, 5), bool)
    shell[1:4, 1:4, 1:4] = True
    shell[2, 2, 2] = False
    assert betti_numbers(shell) == (1, 0, 1)
    plate = np.zeros((3, 5, 9), bool)
    plate[1] = True
    plate[1, 2, 2] = plate[1, 2, 6] = False  # two holes through a plate: genus 2
    assert betti_numbers(plate) == (1, 2, 0)
    assert betti_numbers(np.ones((4, 4, 4))) == (1, 0, 0)  # touching the border is not a cavity


def test_betti_numbers_26_connectivity_and_2d():
    diag = np.zeros((3, 7, 7), bool)
    for y, x in [(1, 3), (2, 2), (3, 1), (4, 2), (5, 3), (4, 4), (3, 5), (2, 4)]:
        diag[1, y, x] = True  # a diamond ring joined only through voxel corners
    assert betti_numbers(diag) == (1, 1, 0)
    two = np.zeros((4, 9), bool)
    two[1, 1:3] = two[1, 5:8] = True
    assert betti_numbers(two) == (2, 0, 0)
    assert betti_numbers(_ring()[1]) == (1, 1, 0)


def test_betti_errors_hand_cases():
    gold = np.zeros((3, 7, 7), bool)
    gold[1, 1:6, 1:6] = True  # a filled plate: b0 = 1, b1 = 0
    pred = _ring()  # the same plate with a hole: b1 = 1
    pred[1, 0, 0] = False
    pred2 = pred.copy()
    pred2[1, 5, 1:6] = False  # cut one side: no loop left, still 1 piece
    r = betti_errors(pred, gold)
    assert (r["betti0_error"], r["betti1_error"]) == (0.0, 1.0)
    assert (r["betti1_pred"], r["betti1_gold"]) == (1.0, 0.0)
    split = gold.copy()
    split[1, 3, :] = False  # two pieces
    assert betti_errors(split, gold)["betti0_error"] == 1.0
    assert betti_errors(pred2, gold) == {
        "betti0_error": 0.0,
        "betti1_error": 0.0,
        "betti0_pred": 1.0,
        "betti0_gold": 1.0,
        "betti1_pred": 0.0,
        "betti1_gold": 0.0,
    }


# ---------------------------------------------------------------- skeleton continuity (FFN)


def t_shape_gold() -> np.ndarray:
    """A T: trunk x 0..10 and branch A x 10..20 along y = 10, branch B y 10..20 at x = 10; z = 3. Length 30."""
    pts = [(x, 10, 3) for x in range(0, 21)] + [(10, y, 3) for y in range(11, 21)]
    parents = [-1] + list(range(1, 21)) + [11] + list(range(22, 31))
    return chain_swc(pts, parents)


def rasterise(swc: np.ndarray, shape=(7, 24, 24), dilate: bool = True) -> np.ndarray:
    pts = subdivide_graph(swc_to_graph(swc), 0.5).points
    mask = np.zeros(shape, bool)
    mask[tuple(np.rint(pts).astype(int).T)] = True
    return ndimage.binary_dilation(mask, np.ones((3, 3, 3))) if dilate else mask


def test_continuity_perfect_t():
    gold = t_shape_gold()
    r = skeleton_continuity(rasterise(gold), gold)
    assert (r["breaks"], r["splits"], r["merges"]) == (0, 0, 0)
    assert r["total_length"] == pytest.approx(30) and r["erl"] == pytest.approx(30.0) and r["erl_fraction"] == 1.0


def test_continuity_straight_line_with_gap():
    gold = straight_swc(0, 19, y=2, z=2)
    pred = np.zeros((5, 5, 20), bool)
    pred[2, 2, :] = True
    pred[2, 2, 10] = False  # runs x 0..9 (length 9) and x 11..19 (length 8)
    r = skeleton_continuity(pred, gold)
    assert (r["breaks"], r["splits"], r["n_runs"]) == (1, 1, 2)
    assert r["erl"] == pytest.approx((81 + 64) / 19)
    assert r["omitted_fraction"] == pytest.approx(2 / 19) and r["omitted_edges"] == 2


def test_continuity_omitted_branch_is_not_a_break():
    gold = t_shape_gold()
    trunk_a = chain_swc([(x, 10, 3) for x in range(0, 21)])
    pred = rasterise(trunk_a)  # the dilation also covers branch B's first node at y = 11
    r = skeleton_continuity(pred, gold)
    assert (r["breaks"], r["splits"]) == (0, 0)
    assert r["erl"] == pytest.approx(21**2 / 30)
    assert r["omitted_fraction"] == pytest.approx(9 / 30)


def test_continuity_detached_branch():
    gold = t_shape_gold()
    pred = rasterise(gold)
    pred[:, 13:15, :] = False  # cut branch B between y = 12 and y = 15
    r = skeleton_continuity(pred, gold)
    assert (r["breaks"], r["splits"], r["merges"]) == (1, 1, 0)
    assert r["erl"] == pytest.approx((22**2 + 5**2) / 30)
    assert r["omitted_edges"] == 3


def test_continuity_merge_counts_zero():
    two = np.concatenate([straight_swc(0, 10, y=5, z=3), straight_swc(0, 10, y=15, z=3)])
    two[11:, 0] += 11
    two[12:, 6] += 11  # second tree: ids 12..22, root 12
    pred = np.zeros((7, 24, 24), bool)
    pred[2:5, 4:17, 0:11] = True  # one slab holding both gold trees
    r = skeleton_continuity(pred, two)
    assert (r["merges"], r["splits"], r["breaks"]) == (1, 0, 0)
    assert r["erl"] == 0.0 and r["merged_edges"] == 20
    r = skeleton_continuity(pred, two, merges_count_zero=False)
    assert r["erl"] == pytest.approx((100 + 100) / 20) == pytest.approx(r["erl_gold"])


def test_continuity_gold_mask_input_spacing_and_outside_nodes():
    gold = t_shape_gold()
    mask = rasterise(gold)
    r = skeleton_continuity(mask, mask)  # gold skeleton from the mask itself
    assert (r["breaks"], r["splits"], r["merges"]) == (0, 0, 0) and r["erl_fraction"] == 1.0
    r = skeleton_continuity(mask, gold, spacing=(1.0, 2.0, 2.0))
    assert r["total_length"] == pytest.approx(60.0)
    outside = straight_swc(15, 30, y=10, z=3)  # the mask ends at x = 21, the image at x = 23
    r = skeleton_continuity(mask, outside)
    assert r["omitted_fraction"] == pytest.approx(9 / 15) and r["erl"] == pytest.approx(6**2 / 15)
    with pytest.raises(ValueError, match="same shape"):
        skeleton_continuity(mask, mask[:, :10])
    with pytest.raises(ValueError, match="binary mask"):
        skeleton_continuity(mask * 255, gold)


def test_continuity_instance_labels():
    gold = straight_swc(0, 19, y=2, z=2)
    labels = np.zeros((5, 5, 20), np.int32)
    labels[2, 2, :10] = 7
    labels[2, 2, 10:] = 9  # touching, but two different segments: one split edge
    r = skeleton_continuity(labels, gold, instance_labels=True)
    assert (r["breaks"], r["splits"], r["split_edges"]) == (1, 1, 1)
    assert r["erl"] == pytest.approx((81 + 81) / 19)


# ---------------------------------------------------------------- Vaa3D neuron distance


def test_vaa3d_edge_samples_counts():
    g = swc_to_graph(chain_swc([(0, 0, 0), (2.4, 0, 0), (2.8, 0, 0), (5.3, 0, 0)]))
    samples = vaa3d_edge_samples(g)
    # lengths 2.4 -> int(1 + 2.4 + 0.5) = 3 points, 0.4 -> 1 point (the child), 2.5 -> 4 points
    assert len(samples) == 3 + 1 + 4
    assert np.allclose(np.sort(samples[:, 2])[:3], [0, 1.2, 2.4])


def test_neuron_distance_identical_and_parallel():
    a = straight_swc(0, 10)
    r = neuron_distance(a, a)
    assert (r["ESA"], r["DSA"], r["PDS"]) == (0.0, 0.0, 0.0)
    b = straight_swc(0, 10, y=3)
    r = neuron_distance(a, b)
    assert r["ESA"] == pytest.approx(3) and r["DSA"] == pytest.approx(3) and r["PDS"] == 1.0
    assert r["n_samples_a"] == 20  # 10 edges of length 1, two points each
    r = neuron_distance(a, b, threshold=4.0)
    assert r["ESA"] == pytest.approx(3) and (r["DSA"], r["PDS"]) == (0.0, 0.0)
    r = neuron_distance(a, straight_swc(0, 10, y=2))  # distance exactly at the threshold counts (>=, as Vaa3D)
    assert r["PDS"] == 1.0


def test_neuron_distance_longer_tree_hand_computed():
    a, b = straight_swc(0, 10), straight_swc(0, 20)
    r = neuron_distance(a, b)
    # B's edges x -> x + 1 for x >= 10 give sample distances k and k + 1, k = 0..9: sum 100 over 40 samples
    assert r["ESA_ab"] == 0.0 and r["ESA_ba"] == pytest.approx(100 / 40)
    assert r["ESA"] == pytest.approx(1.25)
    # samples >= 2 from A: all but 0, 1, 1 of those 20: 17 samples summing to 98
    assert r["DSA_ba"] == pytest.approx(98 / 17) and r["DSA"] == pytest.approx(98 / 17)
    assert r["PDS_ba"] == pytest.approx(17 / 40) and r["PDS"] == pytest.approx(17 / 80)
    assert r["max_distance"] == 0.0  # min of the directed maxima (Vaa3D's dist_max)
    s = neuron_distance(b, a)
    assert s["ESA"] == r["ESA"] and s["ESA_ab"] == r["ESA_ba"]


def test_neuron_distance_segment_not_node_distance():
    a = chain_swc([(0, 0, 0), (10, 0, 0)])  # one long edge
    b = chain_swc([(4.5, 1, 0), (5.5, 1, 0)])  # a short edge 1 voxel beside its middle
    r = neuron_distance(b, a)
    assert r["ESA_ab"] == pytest.approx(1.0)  # to the segment, not to the far end nodes


def test_neuron_distance_single_nodes_and_spacing():
    r = neuron_distance(chain_swc([(0, 0, 0)]), chain_swc([(3, 4, 0)]))
    assert r["ESA"] == pytest.approx(5.0) and r["PDS"] == 1.0
    r = neuron_distance(straight_swc(0, 10), straight_swc(0, 10, z=1), spacing=(2.0, 0.5, 0.5))
    assert r["ESA"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="threshold"):
        neuron_distance(straight_swc(0, 3), straight_swc(0, 3), threshold=-1)
    with pytest.raises(ValueError, match="spacing"):
        neuron_distance(straight_swc(0, 3), straight_swc(0, 3), spacing=(1, 1))
    with pytest.raises(ValueError, match="swc_b"):
        neuron_distance(straight_swc(0, 3), np.zeros((2, 5)))


def random_tree(rng: np.random.Generator, n: int, step: float = 1.5) -> np.ndarray:
    parents = np.array([-1] + [int(rng.integers(max(0, i - 5), i)) + 1 for i in range(1, n)])
    xyz = np.zeros((n, 3))
    for i in range(1, n):
        xyz[i] = xyz[parents[i] - 1] + rng.normal(scale=step, size=3)
    return chain_swc(xyz, parents)


def brute_force_distance(points: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    ab = ends - starts
    ap = points[:, None, :] - starts[None]
    den = (ab * ab).sum(-1)
    t = np.clip((ap * ab).sum(-1) / np.where(den > 0, den, 1), 0, 1)
    return np.sqrt(((ap - t[..., None] * ab) ** 2).sum(-1)).min(axis=1)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 60), spread=st.floats(0.1, 30.0))
def test_segment_index_is_exact(seed, n, spread):
    rng = np.random.default_rng(seed)
    g = swc_to_graph(random_tree(rng, n, step=spread))
    starts, ends = g.points[g.edges[:, 0]], g.points[g.edges[:, 1]]
    queries = rng.normal(scale=3 * spread, size=(200, 3)) + g.points.mean(axis=0)
    fast = SegmentDistanceIndex(starts, ends).query(queries)
    assert np.allclose(fast, brute_force_distance(queries, starts, ends), rtol=0, atol=1e-9)


def test_neuron_distance_matches_brute_force_vaa3d():
    rng = np.random.default_rng(3)
    a, b = random_tree(rng, 300), random_tree(rng, 250)
    b[:, 2:5] += 2.0
    r = neuron_distance(a, b)
    ga, gb = swc_to_graph(a), swc_to_graph(b)
    d_ab = brute_force_distance(vaa3d_edge_samples(ga), gb.points[gb.edges[:, 0]], gb.points[gb.edges[:, 1]])
    d_ba = brute_force_distance(vaa3d_edge_samples(gb), ga.points[ga.edges[:, 0]], ga.points[ga.edges[:, 1]])
    assert r["ESA"] == pytest.approx((d_ab.mean() + d_ba.mean()) / 2, abs=1e-12)
    assert r["PDS"] == pytest.approx(((d_ab >= 2).mean() + (d_ba >= 2).mean()) / 2, abs=1e-12)
    assert r["DSA"] == pytest.approx((d_ab[d_ab >= 2].mean() + d_ba[d_ba >= 2].mean()) / 2, abs=1e-12)


# ---------------------------------------------------------------- node precision / recall


def test_node_prf_y_shape_trunk_only():
    gold = chain_swc([(0, 0, 0), (10, 0, 0), (13, 4, 0), (13, -4, 0)], parents=[-1, 1, 2, 2])
    trunk = chain_swc([(0, 0, 0), (10, 0, 0)])
    r = node_prf(trunk, gold, tolerance=4.0)
    # gold resampled: 11 trunk nodes + 5 per branch at arc lengths 1..5 from the branch point; 1..4 are within 4
    assert (r["n_gold"], r["n_test"]) == (21, 11)
    assert r["precision"] == 1.0 and r["recall"] == pytest.approx(19 / 21)
    assert r["f1"] == pytest.approx(0.95)


def test_node_prf_shift_tolerance_and_spacing():
    a, b = straight_swc(0, 10), straight_swc(0, 10, y=3)
    assert node_prf(a, b, tolerance=4.0)["f1"] == 1.0
    assert node_prf(a, b, tolerance=3.0)["f1"] == 1.0  # exactly at the tolerance matches
    r = node_prf(a, b, tolerance=2.0)
    assert (r["precision"], r["recall"], r["f1"]) == (0.0, 0.0, 0.0)
    assert node_prf(a, b, tolerance=2.0, spacing=(1.0, 0.5, 0.5))["f1"] == 1.0  # 3 voxels = 1.5 units
    dense = chain_swc([(x / 10, 0, 0) for x in range(101)])  # same line, 10x denser nodes
    assert node_prf(dense, a)["n_test"] == 11
