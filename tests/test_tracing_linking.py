# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Main-tree linking: weak stretches are crossed, dark gaps and specks are not, the main tree comes first."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from neurolink_monai.skeleton import thin_curves, voxel_graph
from neurolink_monai.tracing import LinkParams, TraceConfig, trace_swc, trace_with_config
from neurolink_monai.tracing.linking import link_cost_volume


def _line(prob: np.ndarray, y: int, x0: int, x1: int, value: float, z: int = 10) -> None:
    prob[z - 1 : z + 2, y - 1 : y + 2, x0:x1] = value


def _scene(gap_value: float) -> np.ndarray:
    """A neurite along x with a 10-voxel stretch of ``gap_value`` in it, a speck, and a second long neurite."""
    prob = np.zeros((20, 64, 110), dtype=np.float32)
    _line(prob, 30, 5, 46, 0.9)
    _line(prob, 30, 46, 56, gap_value)
    _line(prob, 30, 56, 100, 0.9)
    prob[9:12, 6:9, 20:23] = 0.9  # a speck
    _line(prob, 56, 10, 90, 0.9)  # another neuron, far away
    return prob


def _trees(swc: np.ndarray) -> list[np.ndarray]:
    roots = np.flatnonzero(swc[:, 6] == -1)
    return np.split(swc, roots[1:])


def test_weak_stretch_joins_the_main_tree_and_specks_go():
    swc = trace_swc(_scene(0.3), max_gap=0.0, link_cost=30.0, max_trees=1)
    (tree,) = _trees(swc)
    assert tree[:, 2].min() <= 8 and tree[:, 2].max() >= 96  # one tree across the weak stretch
    assert np.all(np.abs(tree[:, 3] - 30) <= 2)  # only the first neurite: no speck, no second neuron


def test_without_linking_the_weak_stretch_splits_the_neurite():
    swc = trace_swc(_scene(0.3), max_gap=0.0)
    assert len(_trees(swc)) >= 3  # two halves and the second neuron (the speck may be dropped as too short)


def test_a_piece_beyond_the_budget_joins_through_a_piece_joined_before():
    """Each weak stretch costs 26 <= 30, both together 52: the last piece joins in the second growth round, whose
    search starts from the piece joined in the first (and skips what the main tree reaches as cheaply)."""
    prob = np.zeros((20, 64, 110), dtype=np.float32)
    for x0, x1, value in [(5, 46, 0.9), (46, 56, 0.3), (56, 70, 0.9), (70, 80, 0.3), (80, 100, 0.9)]:
        _line(prob, 30, x0, x1, value)
    (tree,) = _trees(trace_swc(prob, max_gap=0.0, link_cost=30.0, max_trees=1))
    assert tree[:, 2].min() <= 8 and tree[:, 2].max() >= 96
    (alone,) = _trees(trace_swc(prob, max_gap=0.0, link_cost=20.0, max_trees=1))  # neither stretch: 26 > 20
    assert alone[:, 2].max() <= 48


def test_dark_gap_beyond_the_budget_is_not_crossed():
    # a 10-voxel gap at probability 0 costs 50 > 30: the halves stay apart, so the other neuron is the longest
    swc = trace_swc(_scene(0.0), max_gap=0.0, link_cost=30.0, max_trees=3, keep_length=30.0)
    trees = _trees(swc)
    assert np.all(np.abs(trees[0][:, 3] - 56) <= 2)
    for tree in trees[1:]:
        assert not (tree[:, 2].min() < 46 and tree[:, 2].max() > 56)


def test_long_pieces_join_across_a_larger_budget():
    # the 10-voxel dark gap costs 50: beyond link_cost 30, within 2 x 30 for two halves at least keep_length long
    scene = _scene(0.0)
    kwargs = dict(max_gap=0.0, link_cost=30.0, max_trees=1, keep_length=40.0)
    (joined,) = _trees(trace_swc(scene, long_link_factor=2.0, **kwargs))
    assert joined[:, 2].min() <= 8 and joined[:, 2].max() >= 96 and np.all(np.abs(joined[:, 3] - 30) <= 2)
    (apart,) = _trees(trace_swc(scene, **kwargs))  # factor 1: the halves stay apart, the other neuron is longest
    assert np.all(np.abs(apart[:, 3] - 56) <= 2)
    (short,) = _trees(trace_swc(scene, long_link_factor=2.0, **{**kwargs, "keep_length": 50.0}))
    assert np.all(np.abs(short[:, 3] - 56) <= 2)  # halves of 41 and 44 voxels are not long: budget 30


def test_max_trees_keeps_the_longest_other_neurites_after_the_main_tree():
    swc = trace_swc(_scene(0.3), max_gap=0.0, link_cost=30.0, max_trees=3, keep_length=40.0)
    trees = _trees(swc)
    assert len(trees) == 2  # main tree + the second neuron; the speck is shorter than keep_length
    assert len(trees[0]) > len(trees[1])
    assert np.all(np.abs(trees[1][:, 3] - 56) <= 2)


def test_user_root_picks_the_main_tree():
    swc = trace_swc(_scene(0.3), max_gap=0.0, link_cost=30.0, max_trees=1, root=(50, 56, 10))
    (tree,) = _trees(swc)
    assert np.all(np.abs(tree[:, 3] - 56) <= 2)
    assert np.allclose(tree[0, 2:5], (50, 56, 10), atol=1.5)


def test_parents_precede_children():
    swc = trace_swc(_scene(0.3), max_gap=0.0, link_cost=30.0, max_trees=3, keep_length=40.0)
    assert np.all((swc[:, 6] == -1) | (swc[:, 6] < swc[:, 0]))


def test_cost_volume_is_cheap_on_the_foreground_and_blocked_far_from_it():
    prob = np.zeros((5, 5, 60), dtype=np.float32)
    prob[2, 2, :10] = 0.8
    prob[2, 2, 10:20] = 0.25
    cost = link_cost_volume(prob, 0.5, budget=20.0)
    assert cost[2, 2, 0] == pytest.approx(0.02)
    assert cost[2, 2, 12] == pytest.approx(1.0 + 4.0 * 0.5)
    assert cost[2, 2, 59] == -1.0  # far beyond half the budget: impassable


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_link_cost": -1.0},
        {"min_piece_length": float("nan")},
        {"max_trees": -1},
        {"max_trees": 1.5},
        {"long_link_factor": 0.5},
        {"dark_gap_ratio": 1.5},
        {"crossing_distance": -1.0},
        {"crossing_angle": 120.0},
    ],
)
def test_bad_link_params(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LinkParams(**kwargs)


@pytest.mark.parametrize("kwargs", [{"link_cost": -1.0}, {"max_trees": -2}, {"keep_length": float("inf")}])
def test_bad_trace_params(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        trace_swc(np.zeros((4, 4, 4), np.float32), **kwargs)


def test_a_chain_of_specks_joined_through_background_is_not_a_further_tree():
    prob = np.zeros((20, 64, 110), dtype=np.float32)
    _line(prob, 30, 5, 100, 0.9)  # the neuron
    for x0 in range(10, 100, 12):  # 8 specks of 10 voxels, 2-voxel faint gaps: 90 voxels in all once joined
        _line(prob, 52, x0, x0 + 10, 0.9)
        _line(prob, 52, x0 + 10, x0 + 12, 0.3)
    swc = trace_swc(prob, max_gap=0.0, min_component_length=6.0, link_cost=30.0, max_trees=3, keep_length=40.0)
    (tree,) = _trees(swc)
    assert np.all(np.abs(tree[:, 3] - 30) <= 2)


def test_piece_weights_are_length_times_mean_evidence_and_check_their_input():
    from neurolink_monai.tracing.linking import piece_weights

    labels, length = np.array([0, 0, 1, 1, 1]), np.array([2.0, 3.0])
    assert np.array_equal(piece_weights(labels, length, None), length)
    assert np.allclose(piece_weights(labels, length, np.array([1.0, 3.0, 0.0, 0.0, 3.0])), [4.0, 3.0])
    with pytest.raises(ValueError, match=r"node_evidence must be \(5,\)"):
        piece_weights(labels, length, np.ones(4))


@pytest.mark.parametrize(
    "shape, sampling",
    [
        ((80, 40, 50), (1.0, 1.0, 1.0)),
        ((60, 30, 30), (3.0, 1.0, 1.0)),
        ((9, 30, 30), (1.0, 1.0, 1.0)),
        ((9, 80, 40), (1.0, 1.0, 1.0)),  # slabs along H
        ((20, 30, 90), (3.0, 1.0, 1.0)),  # slabs along W
    ],
)
def test_distance_within_reach_is_the_whole_volume_transform(shape, sampling):
    from scipy import ndimage as ndi

    from neurolink_monai.tracing.linking import _distance_within

    fg = np.random.default_rng(0).random(shape) < 0.003
    fg[0, 0, 0] = True
    whole = ndi.distance_transform_edt(~fg, sampling=sampling)
    slabs = _distance_within(fg, sampling, 16.0)
    near = whole <= 16.0
    assert np.array_equal(slabs[near], whole[near]) and (slabs[~near] > 16.0).all()


def _with_link(**link) -> TraceConfig:
    config = TraceConfig.from_keywords(max_gap=0.0, link_cost=30.0, max_trees=1)
    return replace(config, link=replace(config.link, **link))


def _image(prob: np.ndarray, gap_level: float) -> np.ndarray:
    """A noisy image of the neurites of ``prob`` (level 100 where it is at least 0.5, ``gap_level`` where it is
    weaker but above 0)."""
    noise = np.random.default_rng(0).normal(0.0, 1.0, prob.shape)
    return (10.0 + noise + np.where(prob >= 0.5, 100.0, np.where(prob > 0, gap_level, 0.0))).astype(np.float32)


def test_a_gap_the_image_shows_as_background_is_not_crossed():
    """The probability map bridges the weak stretch either way; the image decides: a faint neurite there is
    crossed, background is not (two neurites that merely line up), unless ``dark_gap_ratio`` is 0."""
    prob = _scene(0.3)
    (faint,) = _trees(trace_swc(prob, image=_image(prob, 30.0), max_gap=0.0, link_cost=30.0, max_trees=1))
    assert faint[:, 2].max() >= 96
    (dark,) = _trees(trace_swc(prob, image=_image(prob, 0.0), max_gap=0.0, link_cost=30.0, max_trees=1))
    assert np.all(np.abs(dark[:, 3] - 56) <= 2)  # the halves stay apart, so the other neuron is the longest
    (ungated,) = _trees(trace_with_config(prob, config=_with_link(dark_gap_ratio=0.0), image=_image(prob, 0.0)))
    assert ungated[:, 2].max() >= 96


def _crossing(branch: bool) -> np.ndarray:
    """A neurite along x at z = 10 and one along y at z = 14, one voxel of background between them where they
    cross (x = 50, y = 30); with ``branch`` the second one stops there (a branch leaving the first)."""
    prob = np.zeros((24, 64, 110), dtype=np.float32)
    _line(prob, 30, 5, 100, 0.9)
    prob[13:16, 33 if branch else 5 : 60, 49:52] = 0.9
    return prob


def test_a_neurite_passing_another_is_not_joined_to_it_a_branch_is():
    passing = trace_swc(_crossing(branch=False), max_gap=0.0, link_cost=30.0, max_trees=1)
    assert np.all(np.abs(passing[:, 3] - 30) <= 2)  # the main tree alone: the other neurite passes it
    (joined,) = _trees(trace_with_config(_crossing(branch=False), config=_with_link(crossing_distance=0.0)))
    assert joined[:, 3].max() >= 55
    (branched,) = _trees(trace_swc(_crossing(branch=True), max_gap=0.0, link_cost=30.0, max_trees=1))
    assert branched[:, 3].max() >= 55


def test_on_an_axon_stack_the_main_tree_is_the_one_entering_brightest():
    """A dim neuron that spreads further (length about 240 at level 60) and a bright axon (70 at level 100), both
    entering at x = 0: with the somata outside the view the bright one is listed first; with them in view, the
    heavier one."""
    prob = np.zeros((20, 64, 128), dtype=np.float32)
    _line(prob, 16, 0, 70, 0.9)
    _line(prob, 44, 0, 120, 0.9)
    _line(prob, 56, 10, 120, 0.9)
    prob[9:12, 44:57, 117:120] = 0.9
    image = _image(prob, 0.0)
    image[:, 40:, :] -= 40.0 * (prob[:, 40:, :] >= 0.5)
    axon = _trees(trace_swc(prob, image=image, soma_in_view=False, max_gap=0.0, link_cost=30.0, max_trees=3))
    assert len(axon) == 2 and np.all(np.abs(axon[0][:, 3] - 16) <= 2)
    in_view = _trees(trace_swc(prob, image=image, max_gap=0.0, link_cost=30.0, max_trees=3))
    assert np.all(in_view[0][:, 3] >= 42)


@pytest.mark.parametrize("share", [0.0, 1.5])
def test_brightest_entry_tree_checks_its_share(share):
    from neurolink_monai.tracing.trees import brightest_entry_tree

    prob = np.zeros((20, 64, 128), dtype=np.float32)
    _line(prob, 16, 0, 70, 0.9)
    graph = voxel_graph(thin_curves(prob >= 0.5, return_coords=True))
    with pytest.raises(ValueError, match="min_share"):
        brightest_entry_tree(graph, np.ones(graph.num_nodes), prob.shape, share)
