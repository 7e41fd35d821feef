# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""One record of scores per case: the mask metrics of a segmentation and the tree metrics of a reconstruction,
under the names the evaluation tables and ``benchmarks/results/ablation.json`` use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neurolink_monai.io import read_swc
from neurolink_monai.metrics.continuity import skeleton_continuity
from neurolink_monai.metrics.neuron_distance import neuron_distance
from neurolink_monai.metrics.node_matching import node_prf
from neurolink_monai.metrics.topology import betti_errors
from neurolink_monai.metrics.voxel import cldice, voxel_prf

__all__ = ["SEGMENTATION_SCORES", "RECONSTRUCTION_SCORES", "segmentation_scores", "reconstruction_scores"]

SEGMENTATION_SCORES = ("precision", "recall", "f1", "cldice", "betti0_error", "breaks", "erl_fraction")
"""Keys of :func:`segmentation_scores`."""

RECONSTRUCTION_SCORES = ("ESA", "DSA", "PDS", "node_precision", "node_recall", "node_f1", "trees")
"""Keys of :func:`reconstruction_scores`."""


def segmentation_scores(
    pred: Any, gold: Any, gold_skeleton: Any | None = None, spacing: Sequence[float] | None = None
) -> dict[str, float]:
    """Mask metrics of one case.

    Args:
        pred: (D, H, W) binary prediction.
        gold: (D, H, W) binary gold mask.
        gold_skeleton: the gold centreline for the continuity metrics, an (N, 7) SWC array or path in voxel
            coordinates; ``None`` skeletonises ``gold``.
        spacing: voxel size (z, y, x) for the run lengths of the continuity metrics; ``None`` measures in voxels.

    Returns:
        ``{"precision", "recall", "f1"}`` (:func:`voxel_prf`), ``"cldice"`` (hard clDice), ``"betti0_error"``
        (:func:`betti_errors`), ``"breaks"`` and ``"erl_fraction"`` (:func:`skeleton_continuity` along
        ``gold_skeleton``), all floats.
    """
    prf = voxel_prf(pred, gold)
    continuity = skeleton_continuity(pred, gold if gold_skeleton is None else gold_skeleton, spacing=spacing)
    return {
        "precision": prf["precision"],
        "recall": prf["recall"],
        "f1": prf["f1"],
        "cldice": cldice(pred, gold),
        "betti0_error": betti_errors(pred, gold)["betti0_error"],
        "breaks": continuity["breaks"],
        "erl_fraction": continuity["erl_fraction"],
    }


def reconstruction_scores(swc: Any, gold_swc: Any, threshold: float = 2.0, tolerance: float = 4.0) -> dict[str, float]:
    """Tree metrics of one reconstruction against its gold SWC, both in voxel coordinates.

    Args:
        swc: (N, 7) SWC array or path of the reconstruction; it may be empty (nothing traced).
        gold_swc: (M, 7) SWC array or path of the gold standard.
        threshold: the "different structure" distance of Vaa3D's ESA / DSA / PDS (:func:`neuron_distance`), voxels.
        tolerance: node matching distance of :func:`node_prf`, voxels.

    Returns:
        ``{"ESA", "DSA", "PDS", "node_precision", "node_recall", "node_f1", "trees"}`` as floats. An empty
        reconstruction has no distances to measure: ESA and DSA are NaN, PDS is 1 (everything of the gold tree is
        different structure) and the node scores are 0.
    """
    swc = np.asarray(read_swc(swc) if not isinstance(swc, np.ndarray) else swc, dtype=float).reshape(-1, 7)
    if len(swc) == 0:
        nan = float("nan")
        return {"ESA": nan, "DSA": nan, "PDS": 1.0, "node_precision": 0.0, "node_recall": 0.0, "node_f1": 0.0,
                "trees": 0.0}  # fmt: skip
    distance = neuron_distance(swc, gold_swc, threshold=threshold)
    nodes = node_prf(swc, gold_swc, tolerance=tolerance)
    return {
        "ESA": distance["ESA"],
        "DSA": distance["DSA"],
        "PDS": distance["PDS"],
        "node_precision": nodes["precision"],
        "node_recall": nodes["recall"],
        "node_f1": nodes["f1"],
        "trees": float(np.count_nonzero(swc[:, 6] == -1)),
    }
