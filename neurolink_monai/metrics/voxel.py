# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Voxel-overlap metrics on binary masks: precision / recall / F1 / Dice, and hard clDice."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurolink_monai.metrics._validation import as_binary_mask
from neurolink_monai.skeleton import thin_curves
from neurolink_monai.utils import check_same_shape

__all__ = ["voxel_prf", "cldice", "topology_precision_sensitivity"]


def _ratio(num: float, den: float, both_empty: bool) -> float:
    # 0/0 happens only when a mask is empty: two empty masks agree perfectly, one empty mask scores 0
    if den == 0:
        return 1.0 if both_empty else 0.0
    return float(num) / float(den)


def voxel_prf(pred: Any, gold: Any) -> dict[str, float]:
    """Voxel-wise precision, recall, F1 and Dice of a binary prediction against a binary gold mask.

    ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``, ``f1 = 2 P R / (P + R)`` and
    ``dice = 2 TP / (2 TP + FP + FN)``; for binary masks F1 and Dice are the same number (both are returned so
    either name can be logged). When a denominator is zero: two empty masks score 1.0 everywhere; otherwise the
    undefined value is 0.0 (an empty prediction of a non-empty gold has precision 0, not 1).

    Args:
        pred: binary mask of any shape, e.g. (D, H, W) (bool or 0/1; numpy array or torch tensor).
        gold: binary mask of the same shape.

    Returns:
        ``{"precision", "recall", "f1", "dice", "tp", "fp", "fn"}`` (counts as floats).
    """
    p = as_binary_mask(pred, "pred")
    g = as_binary_mask(gold, "gold")
    check_same_shape(p, g, "pred", "gold")
    tp = float(np.count_nonzero(p & g))
    fp = float(np.count_nonzero(p)) - tp
    fn = float(np.count_nonzero(g)) - tp
    both_empty = tp + fp + fn == 0
    precision = _ratio(tp, tp + fp, both_empty)
    recall = _ratio(tp, tp + fn, both_empty)
    dice = _ratio(2 * tp, 2 * tp + fp + fn, both_empty)
    return {"precision": precision, "recall": recall, "f1": dice, "dice": dice, "tp": tp, "fp": fp, "fn": fn}


def topology_precision_sensitivity(pred: Any, gold: Any) -> tuple[float, float]:
    """The two halves of clDice (Shit et al., CVPR 2021): ``Tprec = |S(pred) & gold| / |S(pred)|`` and
    ``Tsens = |S(gold) & pred| / |S(gold)|``, with ``S`` the skeleton, a topology-preserving curve thinning
    (:func:`neurolink_monai.skeleton.thin_curves`): one voxel wide, inside the mask, one connected
    piece per connected component, so no neurite is left without skeleton whatever its width (scikit-image's 3D
    ``skeletonize`` deletes some even-width neurites, which would make them invisible to Tsens and Tprec). Two
    empty masks give (1.0, 1.0); one empty mask gives 0.0 for the undefined half.

    Args:
        pred: binary (H, W) or (D, H, W) mask.
        gold: binary mask of the same shape.
    """
    p = as_binary_mask(pred, "pred", ndims=(2, 3))
    g = as_binary_mask(gold, "gold", ndims=(2, 3))
    check_same_shape(p, g, "pred", "gold")
    both_empty = not p.any() and not g.any()
    sp, sg = thin_curves(p), thin_curves(g)
    tprec = _ratio(np.count_nonzero(sp & g), np.count_nonzero(sp), both_empty)
    tsens = _ratio(np.count_nonzero(sg & p), np.count_nonzero(sg), both_empty)
    return tprec, tsens


def cldice(pred: Any, gold: Any) -> float:
    """Hard centerline Dice (clDice) of Shit et al., "clDice - a Novel Topology-Preserving Loss Function for
    Tubular Structure Segmentation", CVPR 2021: the harmonic mean of topology precision and topology sensitivity
    (see :func:`topology_precision_sensitivity`), ``2 Tprec Tsens / (Tprec + Tsens)``; 0.0 when both are 0.

    Args:
        pred: binary (H, W) or (D, H, W) mask (bool or 0/1; numpy array or torch tensor).
        gold: binary mask of the same shape.

    Returns:
        clDice in [0, 1]; 1.0 for two empty masks.
    """
    tprec, tsens = topology_precision_sensitivity(pred, gold)
    if tprec + tsens == 0:
        return 0.0
    return 2.0 * tprec * tsens / (tprec + tsens)
