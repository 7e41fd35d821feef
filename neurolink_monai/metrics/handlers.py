# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Ignite handlers (``monai.handlers.IgniteMetricHandler``) for the mask metrics, to put in a
``SupervisedEvaluator``'s ``key_val_metric`` / ``additional_metrics``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monai.handlers import IgniteMetricHandler
from monai.utils import MetricReduction

from neurolink_monai.metrics.cumulative import BettiErrorMetric, ClDiceMetric, SkeletonContinuityMetric, VoxelPRFMetric

__all__ = ["VoxelPRFHandler", "ClDiceHandler", "BettiErrorHandler", "SkeletonContinuityHandler"]


def _identity(x):
    return x


class VoxelPRFHandler(IgniteMetricHandler):
    """Mean voxel precision / recall / F1 / Dice over images (one of them, ``metric_name``).

    Args:
        metric_name: ``"precision"``, ``"recall"``, ``"f1"`` (default) or ``"dice"``.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``, e.g.
            ``monai.handlers.from_engine(["pred", "label"])``; both binary (B, 1, ...) tensors or lists of
            channel-first tensors.
        save_details: store the per-image (N, 4) scores in ``engine.state.metric_details[name]``.
        reduction: MONAI reduction over images.
    """

    def __init__(
        self,
        metric_name: str = "f1",
        output_transform: Callable = _identity,
        save_details: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__(
            metric_fn=VoxelPRFMetric(metric_name, reduction=reduction),
            output_transform=output_transform,
            save_details=save_details,
        )


class ClDiceHandler(IgniteMetricHandler):
    """Mean hard clDice over images (Shit et al., CVPR 2021); higher is better, so it can be the key metric.

    Args:
        metric_name: ``"cldice"`` (default), ``"tprec"`` or ``"tsens"``.
        output_transform, save_details, reduction: as in :class:`VoxelPRFHandler`.
    """

    def __init__(
        self,
        metric_name: str = "cldice",
        output_transform: Callable = _identity,
        save_details: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__(
            metric_fn=ClDiceMetric(metric_name, reduction=reduction),
            output_transform=output_transform,
            save_details=save_details,
        )


class BettiErrorHandler(IgniteMetricHandler):
    """Mean Betti-0 or Betti-1 error over images (lower is better: use it in ``additional_metrics``).

    Args:
        metric_name: ``"betti0_error"`` (default) or ``"betti1_error"``.
        output_transform, save_details, reduction: as in :class:`VoxelPRFHandler`.
    """

    def __init__(
        self,
        metric_name: str = "betti0_error",
        output_transform: Callable = _identity,
        save_details: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__(
            metric_fn=BettiErrorMetric(metric_name, reduction=reduction),
            output_transform=output_transform,
            save_details=save_details,
        )


class SkeletonContinuityHandler(IgniteMetricHandler):
    """Mean FFN skeleton-continuity score over 3D images, the gold skeleton taken from the gold mask.

    Args:
        metric_name: ``"breaks"`` (default), ``"splits"``, ``"merges"``, ``"erl"``, ``"erl_fraction"`` or
            ``"omitted_fraction"``.
        spacing: voxel size (z, y, x) for lengths; ``None`` for voxels.
        step: gold-skeleton resampling step in voxels.
        output_transform, save_details, reduction: as in :class:`VoxelPRFHandler`.
    """

    def __init__(
        self,
        metric_name: str = "breaks",
        spacing: Sequence[float] | None = None,
        step: float = 1.0,
        output_transform: Callable = _identity,
        save_details: bool = True,
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__(
            metric_fn=SkeletonContinuityMetric(metric_name, spacing=spacing, step=step, reduction=reduction),
            output_transform=output_transform,
            save_details=save_details,
        )
