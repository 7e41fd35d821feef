# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Faint spurs: a side branch the image shows is kept; one traced into the dim flare beside a neurite is removed."""

from __future__ import annotations

import numpy as np
import pytest

from neurolink_monai.io import swc_parent_index
from neurolink_monai.skeleton import SkeletonGraph
from neurolink_monai.tracing import trace_swc
from neurolink_monai.tracing.contrast import background_and_noise, level_noise, node_levels
from neurolink_monai.tracing.pruning import prune_faint_spurs


def _tee(spur_nodes: int = 8) -> SkeletonGraph:
    """A trunk of 21 nodes along x (nodes 0..20) and a spur of ``spur_nodes`` nodes along y from trunk node 10."""
    trunk = [(0, 0, x) for x in range(21)]
    spur = [(0, y, 10) for y in range(1, spur_nodes + 1)]
    edges = [(i, i + 1) for i in range(20)] + [(10, 21)] + [(21 + i, 22 + i) for i in range(spur_nodes - 1)]
    return SkeletonGraph(np.array(trunk + spur), np.array(edges))


def _levels(trunk: float, spur: float, spur_nodes: int = 8) -> np.ndarray:
    return np.concatenate([np.full(21, trunk), np.full(spur_nodes, spur)])


def test_a_spur_much_dimmer_than_its_trunk_is_removed_a_bright_one_kept():
    graph = _tee()
    faint = prune_faint_spurs(graph, _levels(100.0, 5.0), noise=1.0, ratio=0.3)
    assert faint[:21].all() and not faint[21:].any()
    assert prune_faint_spurs(graph, _levels(100.0, 60.0), noise=1.0, ratio=0.3).all()


def test_a_dim_spur_the_noise_cannot_tell_from_its_trunk_is_kept():
    # 5 against 100 is faint only if the spur's level is known to better than ~8; with noise 50 it is not
    assert prune_faint_spurs(_tee(), _levels(100.0, 5.0), noise=50.0, ratio=0.3).all()


def test_ratio_zero_and_the_protected_node_keep_everything():
    graph, levels = _tee(), _levels(100.0, 5.0)
    assert prune_faint_spurs(graph, levels, noise=1.0, ratio=0.0).all()
    assert prune_faint_spurs(graph, levels, noise=1.0, ratio=0.3, protect=28).all()  # 28: the spur's tip


def test_levels_of_another_length_are_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"shape \(29,\), got \(28,\)"):
        prune_faint_spurs(_tee(), np.zeros(28), noise=1.0, ratio=0.3)


def _flare_scene() -> tuple[np.ndarray, np.ndarray]:
    """A bright neurite along x with two side branches along y, both in the probability map: one the image shows
    at 60 % of the neurite's intensity, one (the out-of-focus flare) at 4 %. The background is clipped to 0."""
    shape = (8, 48, 80)
    image = np.zeros(shape, np.float32)
    prob = np.zeros(shape, np.float32)
    image[3:5, 9:12, 6:74] = 200.0
    image[3:5, 12:30, 24:27] = 120.0  # a real side branch
    image[3:5, 12:30, 52:55] = 8.0  # flare
    prob[image > 0] = 0.9
    return image, prob


def test_trace_removes_the_flare_and_keeps_the_side_branch():
    image, prob = _flare_scene()
    both = trace_swc(prob, max_gap=0.0, image=image)
    assert np.any((both[:, 3] > 20) & (np.abs(both[:, 2] - 53) <= 2))  # without the rule: the flare is traced
    swc = trace_swc(prob, max_gap=0.0, image=image, faint_spur_ratio=0.3)
    assert not np.any((swc[:, 3] > 16) & (np.abs(swc[:, 2] - 53) <= 2))
    assert np.any((swc[:, 3] > 20) & (np.abs(swc[:, 2] - 25) <= 2))
    assert np.count_nonzero(swc[:, 6] == -1) == 1
    parents = swc_parent_index(swc)
    assert np.all(parents < np.arange(len(swc)))  # parents before children
    assert np.array_equal(trace_swc(prob, max_gap=0.0, faint_spur_ratio=0.3), trace_swc(prob, max_gap=0.0))


def test_node_levels_are_the_local_mean_above_background_and_zero_on_a_clipped_one():
    image, prob = _flare_scene()
    background, _ = background_and_noise(image, prob >= 0.5)
    levels = node_levels(image, background, np.array([[4, 10, 40], [4, 40, 40], [0, 0, 0]]))
    assert levels.shape == (3,) and levels[0] == pytest.approx(
        200.0 * 18 / 27, rel=1e-5
    )  # 18 of the 27 voxels in the neurite
    assert levels[1] == 0.0 and levels[2] == 0.0  # the border point reads its clipped neighbourhood


def test_level_noise_is_measured_on_the_background_and_deterministic():
    rng = np.random.default_rng(1)
    image = rng.normal(10.0, 2.0, size=(16, 64, 64)).astype(np.float32)
    foreground = np.zeros(image.shape, dtype=bool)
    foreground[6:9, 30:34, :] = True
    image[foreground] += 500.0  # far above the noise: must not enter the estimate
    background, _ = background_and_noise(image, foreground)
    noise = level_noise(image, background, foreground)
    assert noise == pytest.approx(2.0 / np.sqrt(27.0), rel=0.15)  # white noise: the 3x3x3 mean's sigma
    assert level_noise(image, background, foreground) == noise
    assert level_noise(np.zeros_like(image), np.zeros_like(image), foreground) == 1e-12
