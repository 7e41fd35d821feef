# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Node precision / recall / F1 between a traced and a gold SWC tree, after resampling both to ~1 voxel."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from neurolink_monai.skeleton import resample_graph, swc_to_graph
from neurolink_monai.utils import as_positive_float

__all__ = ["matched_within", "node_prf"]


def matched_within(points: np.ndarray, reference: np.ndarray, tolerance: float) -> np.ndarray:
    """Whether each of ``points`` ``(N, 3)`` has a ``reference`` point ``(M, 3)`` within ``tolerance`` (inclusive):
    the node matching of :func:`node_prf`, ``(N,)`` bool (all False when ``reference`` is empty)."""
    bound = tolerance * (1 + 1e-9) + 1e-12  # let points at exactly `tolerance` through; compared exactly below
    d, _ = cKDTree(reference).query(points, k=1, distance_upper_bound=bound)
    return d <= tolerance


def node_prf(
    swc_test: Any,
    swc_gold: Any,
    tolerance: float = 4.0,
    spacing: Sequence[float] | None = None,
    step: float = 1.0,
) -> dict[str, float]:
    """Node precision, recall and F1 of a reconstruction against a gold tree, length-weighted by resampling.

    Both trees are first resampled so that every unbranched section carries nodes equally spaced at most
    ``step`` voxels apart along the curve (tips and branch points kept; :func:`resample_graph`), so a node stands
    for about ``step`` voxels of neurite whatever the original node density. A test node is a true positive when
    some gold node lies within ``tolerance``; a gold node is recovered when some test node lies within
    ``tolerance``. ``precision = matched test nodes / test nodes``, ``recall = recovered gold nodes / gold nodes``,
    ``f1 = 2 P R / (P + R)`` (0 when P + R = 0). Matching is many-to-one (nearest neighbour, no assignment), as in
    the length-based precision/recall of tracing benchmarks; two overlapping copies of one branch are not penalised.

    Args:
        swc_test: (N, 7) SWC array (or path) of the reconstruction, voxel coordinates.
        swc_gold: (M, 7) SWC array (or path) of the gold standard, voxel coordinates.
        tolerance: matching distance, in voxels, or in physical units when ``spacing`` is given.
        spacing: voxel size (z, y, x); when given the resampled nodes are scaled to physical units before matching.
        step: resampling step in voxels.

    Returns:
        ``{"precision", "recall", "f1", "n_test", "n_gold", "matched_test", "matched_gold"}`` (counts as floats).
    """
    tolerance = as_positive_float(tolerance, "tolerance", allow_zero=True)
    test = resample_graph(swc_to_graph(swc_test, "swc_test", spacing), step).scaled()
    gold = resample_graph(swc_to_graph(swc_gold, "swc_gold", spacing), step).scaled()
    hit_test = matched_within(test.points, gold.points, tolerance)
    hit_gold = matched_within(gold.points, test.points, tolerance)
    precision = float(hit_test.mean())
    recall = float(hit_gold.mean())
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_test": float(test.num_nodes),
        "n_gold": float(gold.num_nodes),
        "matched_test": float(hit_test.sum()),
        "matched_gold": float(hit_gold.sum()),
    }
