# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""MONAI ``CumulativeIterationMetric`` wrappers of the mask metrics, for evaluators and validation loops."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction

from neurolink_monai.metrics._validation import as_binary_mask
from neurolink_monai.metrics.continuity import skeleton_continuity
from neurolink_monai.metrics.topology import betti_errors
from neurolink_monai.metrics.voxel import topology_precision_sensitivity, voxel_prf
from neurolink_monai.utils import as_positive_float, as_spacing

__all__ = [
    "PerImageMaskMetric",
    "VoxelPRFMetric",
    "ClDiceMetric",
    "BettiErrorMetric",
    "SkeletonContinuityMetric",
    "SkeletonBreaksMetric",
]


def _foreground(x: torch.Tensor, name: str) -> np.ndarray:
    """(B, C, *spatial) binary tensor -> (B, *spatial) bool foreground (C == 1, or one-hot C == 2 -> channel 1)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.dim() < 3:
        raise ValueError(f"{name} must be batch-first and channel-first (B, C, *spatial), got shape {list(x.shape)}.")
    if x.shape[1] not in (1, 2):
        raise ValueError(
            f"{name} must have 1 channel (binary foreground) or 2 (one-hot background, foreground), got shape "
            f"{list(x.shape)}; for a NeuroLinkNet output take the segmentation head first "
            f"(neurolink_monai.networks.split_outputs) and threshold it (AsDiscrete(threshold=0.5))."
        )
    return as_binary_mask(x[:, x.shape[1] - 1], name)


class PerImageMaskMetric(CumulativeIterationMetric):
    """Base class: computes a dict of scores per image from binary ``y_pred`` and ``y`` of shape
    (B, C, *spatial) (C = 1, or 2 for one-hot, channel 1 = foreground), buffers a (B, K) tensor with one column
    per name in :attr:`metric_names`, and on :meth:`aggregate` reduces the columns of ``metric_name`` over images
    (``MetricReduction``; NaN entries are skipped, as in MONAI).

    Args:
        metric_name: one name from :attr:`metric_names`, or several (then :meth:`aggregate` returns a list).
        reduction: MONAI reduction over images, default ``"mean"``; ``"none"`` returns the (N, 1) values.
        get_not_nans: also return the count of not-NaN values, as MONAI metrics do.
    """

    metric_names: tuple[str, ...] = ()
    spatial_dims: tuple[int, ...] = (2, 3)

    def __init__(
        self,
        metric_name: str | Sequence[str],
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        names = (metric_name,) if isinstance(metric_name, str) else tuple(metric_name)
        unknown = [n for n in names if n not in self.metric_names]
        if not names or unknown:
            raise ValueError(f"metric_name must be among {list(self.metric_names)}, got {metric_name!r}.")
        self.metric_name = names
        self.reduction = reduction
        self.get_not_nans = get_not_nans

    def _per_image(self, pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        raise NotImplementedError(f"Subclass {self.__class__.__name__} must implement _per_image.")

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if y is None:
            raise ValueError(f"{self.__class__.__name__} needs the ground truth y, got None.")
        pred, gold = _foreground(y_pred, "y_pred"), _foreground(y, "y")
        if pred.shape != gold.shape:
            raise ValueError(f"y_pred and y must have the same shape, got {list(y_pred.shape)} and {list(y.shape)}.")
        if pred.ndim - 1 not in self.spatial_dims:
            raise ValueError(
                f"{self.__class__.__name__} supports {self.spatial_dims} spatial dims, got shape {list(y_pred.shape)}."
            )
        rows = []
        for p, g in zip(pred, gold):
            scores = self._per_image(p, g)
            rows.append([scores[n] for n in self.metric_names])
        return torch.as_tensor(np.asarray(rows, dtype=np.float32), device=y_pred.device)

    def aggregate(self, reduction: MetricReduction | str | None = None):  # type: ignore[override]
        """Reduce the buffered per-image scores; a tensor per name in ``metric_name`` (a list for several)."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"the data to aggregate must be a PyTorch Tensor, got {type(data).__name__}.")
        results: list = []
        for name in self.metric_name:
            k = self.metric_names.index(name)
            f, not_nans = do_metric_reduction(data[:, k : k + 1], reduction or self.reduction)
            results.append((f, not_nans) if self.get_not_nans else f)
        return results[0] if len(results) == 1 else results


class VoxelPRFMetric(PerImageMaskMetric):
    """Voxel precision / recall / F1 / Dice per image (:func:`neurolink_monai.metrics.voxel_prf`).

    Args:
        metric_name: ``"precision"``, ``"recall"``, ``"f1"`` (default) or ``"dice"``, or several of them.
    """

    metric_names = ("precision", "recall", "f1", "dice")
    spatial_dims = (1, 2, 3)

    def __init__(
        self,
        metric_name: str | Sequence[str] = "f1",
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(metric_name, reduction, get_not_nans)

    def _per_image(self, pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        return voxel_prf(pred, gold)


class ClDiceMetric(PerImageMaskMetric):
    """Hard clDice per image (Shit et al., CVPR 2021; :func:`neurolink_monai.metrics.cldice`), for (B, C, H, W)
    or (B, C, D, H, W) binary tensors.

    Args:
        metric_name: ``"cldice"`` (default), ``"tprec"`` (topology precision) or ``"tsens"`` (topology sensitivity).
    """

    metric_names = ("cldice", "tprec", "tsens")

    def __init__(
        self,
        metric_name: str | Sequence[str] = "cldice",
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(metric_name, reduction, get_not_nans)

    def _per_image(self, pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        tprec, tsens = topology_precision_sensitivity(pred, gold)
        cl = 0.0 if tprec + tsens == 0 else 2 * tprec * tsens / (tprec + tsens)
        return {"cldice": cl, "tprec": tprec, "tsens": tsens}


class BettiErrorMetric(PerImageMaskMetric):
    """Betti-0 / Betti-1 errors per image (:func:`neurolink_monai.metrics.betti_errors`); lower is better.

    Args:
        metric_name: ``"betti0_error"`` (default) or ``"betti1_error"``, or both.
    """

    metric_names = ("betti0_error", "betti1_error")

    def __init__(
        self,
        metric_name: str | Sequence[str] = "betti0_error",
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(metric_name, reduction, get_not_nans)

    def _per_image(self, pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        return betti_errors(pred, gold)


class SkeletonContinuityMetric(PerImageMaskMetric):
    """FFN skeleton continuity per 3D image (:func:`neurolink_monai.metrics.skeleton_continuity`), with the gold
    skeleton taken from the skeletonised gold mask ``y``. Images whose gold mask is empty give NaN (skipped by the
    reduction).

    Args:
        metric_name: ``"breaks"`` (default), ``"splits"``, ``"merges"``, ``"erl"``, ``"erl_fraction"`` or
            ``"omitted_fraction"``, or several. Only ``erl`` and ``erl_fraction`` are higher-is-better.
        spacing: voxel size (z, y, x) for lengths (ERL in physical units); ``None`` for voxels.
        step: gold-skeleton resampling step in voxels.
    """

    metric_names = ("breaks", "splits", "merges", "erl", "erl_fraction", "omitted_fraction")
    spatial_dims = (3,)

    def __init__(
        self,
        metric_name: str | Sequence[str] = "breaks",
        spacing: Sequence[float] | None = None,
        step: float = 1.0,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(metric_name, reduction, get_not_nans)
        self.spacing = None if spacing is None else tuple(as_spacing(spacing).tolist())
        self.step = as_positive_float(step, "step")

    def _per_image(self, pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
        if not gold.any():
            return dict.fromkeys(self.metric_names, float("nan"))
        return skeleton_continuity(pred, gold, spacing=self.spacing, step=self.step)


SkeletonBreaksMetric = SkeletonContinuityMetric
