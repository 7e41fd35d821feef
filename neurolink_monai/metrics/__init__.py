# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Evaluation metrics: voxel overlap, clDice, Betti errors, FFN skeleton continuity, Vaa3D neuron distance and
node precision/recall, plus MONAI cumulative metrics and ignite handlers wrapping the mask metrics."""

from __future__ import annotations

from neurolink_monai.metrics.continuity import centreline_recall, segment_labels, skeleton_continuity
from neurolink_monai.metrics.cumulative import (
    BettiErrorMetric,
    ClDiceMetric,
    PerImageMaskMetric,
    SkeletonBreaksMetric,
    SkeletonContinuityMetric,
    VoxelPRFMetric,
)
from neurolink_monai.metrics.diadem import DIADEM_DATASETS, DIADEM_JAR_ENV, diadem_score, find_diadem_jar
from neurolink_monai.metrics.handlers import (
    BettiErrorHandler,
    ClDiceHandler,
    SkeletonContinuityHandler,
    VoxelPRFHandler,
)
from neurolink_monai.metrics.neuron_distance import SegmentDistanceIndex, neuron_distance, vaa3d_edge_samples
from neurolink_monai.metrics.node_matching import node_prf
from neurolink_monai.metrics.summary import (
    RECONSTRUCTION_SCORES,
    SEGMENTATION_SCORES,
    reconstruction_scores,
    segmentation_scores,
)
from neurolink_monai.metrics.topology import betti_errors, betti_numbers
from neurolink_monai.metrics.voxel import cldice, topology_precision_sensitivity, voxel_prf

__all__ = [
    "DIADEM_DATASETS",
    "DIADEM_JAR_ENV",
    "diadem_score",
    "find_diadem_jar",
    "voxel_prf",
    "cldice",
    "topology_precision_sensitivity",
    "betti_numbers",
    "betti_errors",
    "skeleton_continuity",
    "centreline_recall",
    "segment_labels",
    "neuron_distance",
    "vaa3d_edge_samples",
    "SegmentDistanceIndex",
    "node_prf",
    "segmentation_scores",
    "reconstruction_scores",
    "SEGMENTATION_SCORES",
    "RECONSTRUCTION_SCORES",
    "PerImageMaskMetric",
    "VoxelPRFMetric",
    "ClDiceMetric",
    "BettiErrorMetric",
    "SkeletonContinuityMetric",
    "SkeletonBreaksMetric",
    "VoxelPRFHandler",
    "ClDiceHandler",
    "BettiErrorHandler",
    "SkeletonContinuityHandler",
]
