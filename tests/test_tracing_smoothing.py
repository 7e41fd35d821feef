# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Section smoothing of traced SWCs: the staircase becomes the line, the tree and its key nodes stay."""

from __future__ import annotations

import numpy as np
import pytest

from neurolink_monai.tracing import TraceConfig, smooth_sections, trace_swc


def _chain(points: np.ndarray, first_id: int = 1) -> np.ndarray:
    n = len(points)
    ids = np.arange(first_id, first_id + n, dtype=np.float64)
    parents = np.concatenate([[-1.0], ids[:-1]])
    return np.column_stack([ids, np.full(n, 3.0), points, np.ones(n), parents])


def _path_length(swc: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(swc[:, 2:5], axis=0), axis=1).sum())


def _staircase(steps: int = 40) -> np.ndarray:
    """The 8-connected voxel path along the line y = x / 2: a diagonal step, then an axis step, repeated."""
    pts = [(0.0, 0.0, 0.0)]
    for i in range(steps):
        x, y, _ = pts[-1]
        pts.append((x + 1.0, y + (1.0 if i % 2 == 0 else 0.0), 0.0))
    return np.asarray(pts)


def test_the_staircase_gets_the_length_of_the_line_and_keeps_its_ends():
    swc = _chain(_staircase())
    line = np.hypot(40.0, 20.0)
    assert _path_length(swc) / line == pytest.approx((np.sqrt(2) + 1) / np.sqrt(5), rel=1e-9)  # 8% too long
    out = smooth_sections(swc, 10)
    assert _path_length(out) / line < 1.01
    assert np.array_equal(out[[0, -1]], swc[[0, -1]])  # root and tip do not move
    assert np.array_equal(out[:, [0, 1, 5, 6]], swc[:, [0, 1, 5, 6]])  # ids, types, radii, parents
    assert np.array_equal(swc, _chain(_staircase()))  # the input is not modified


def test_branch_points_stay_and_branches_smooth_independently():
    trunk = _chain(_staircase(20))
    branch = _chain(np.column_stack([np.full(10, 10.0), 5.0 + np.arange(1, 11), np.tile([0.0, 1.0], 5)]), 22)
    branch[0, 6] = 11  # joins the trunk at its 11th node (10, 5, 0)
    swc = np.concatenate([trunk, branch])
    out = smooth_sections(swc, 20)
    key = [0, 10, 20, 30]  # root, branch point, the two tips
    assert np.array_equal(out[key], swc[key])
    z = np.concatenate([[0.0], out[20:31, 4]])  # from the branch point (z 0): the zigzag between slices 0 and 1
    assert np.all(np.diff(z) >= 0) and not np.all(np.diff(np.concatenate([[0.0], swc[20:31, 4]])) >= 0)


def test_any_id_order_and_tiny_inputs():
    swc = _chain(_staircase(12))
    shuffled = swc[np.random.default_rng(0).permutation(len(swc))]
    out = smooth_sections(shuffled, 5)
    back = out[np.argsort(out[:, 0])]
    assert np.allclose(back, smooth_sections(swc, 5))
    assert np.array_equal(smooth_sections(swc, 0), swc)
    assert smooth_sections(np.zeros((0, 7)), 3).shape == (0, 7)
    assert np.array_equal(smooth_sections(swc[:2], 3), swc[:2])


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_bad_iterations_are_refused_with_the_value(bad):
    with pytest.raises(ValueError, match="iterations"):
        smooth_sections(_chain(_staircase(4)), bad)
    with pytest.raises(ValueError, match="smooth_iterations"):
        TraceConfig.from_keywords(smooth_iterations=bad)


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        smooth_sections(np.zeros((4, 6)), 2)


def test_the_tracer_smooths_by_default_and_keeps_the_staircase_on_request():
    prob = np.zeros((3, 48, 80), dtype=np.float32)
    for x in range(2, 78):  # an oblique line of slope 1/2, one voxel wide
        prob[1, 5 + x // 2, x] = 1.0
    staircase = trace_swc(prob, smooth_iterations=0)
    smooth = trace_swc(prob)
    assert TraceConfig().smooth_iterations == 10
    assert len(smooth) == len(staircase) and np.array_equal(smooth[:, 6], staircase[:, 6])
    assert np.all(np.mod(staircase[:, 2:5], 1.0) == 0.0)
    assert _path_length(smooth) < _path_length(staircase) * 0.95
