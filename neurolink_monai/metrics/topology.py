# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Betti numbers of binary masks and the Betti-0 / Betti-1 errors between a prediction and a gold mask."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage.measure import euler_number

from neurolink_monai.metrics._validation import as_binary_mask
from neurolink_monai.utils import check_same_shape

__all__ = ["betti_numbers", "betti_errors"]


def _betti(mask: np.ndarray) -> tuple[int, int, int]:
    ndim = mask.ndim
    full = ndimage.generate_binary_structure(ndim, ndim)  # 8 / 26-connected foreground
    face = ndimage.generate_binary_structure(ndim, 1)  # 4 / 6-connected background, the dual connectivity
    _, b0 = ndimage.label(mask, structure=full)
    # the padded border joins every background region that reaches the image edge into the one "outside"
    _, n_background = ndimage.label(np.pad(~mask, 1, constant_values=True), structure=face)
    holes = n_background - 1
    chi = int(euler_number(mask, connectivity=ndim))  # skimage pads with background, as above
    if ndim == 2:
        return int(b0), int(holes), 0
    b2 = holes
    return int(b0), int(b0 + b2 - chi), int(b2)


def betti_numbers(mask: Any) -> tuple[int, int, int]:
    """Betti numbers ``(b0, b1, b2)`` of a binary (H, W) or (D, H, W) mask, the space outside the image counting
    as background.

    Foreground uses full connectivity (8 in 2D, 26 in 3D) and background the dual face connectivity (4 / 6), so the
    counts are those of the union of closed unit squares / cubes at the foreground pixels. ``b0`` = connected
    foreground components; ``b2`` = enclosed background cavities (3D only, 0 in 2D); ``b1`` = independent loops
    (handles / tunnels), from the Euler characteristic ``chi = b0 - b1 + b2`` (``skimage.measure.euler_number``);
    in 2D ``b1`` is the number of enclosed holes.
    """
    m = as_binary_mask(mask, "mask", ndims=(2, 3))
    return _betti(m)


def betti_errors(pred: Any, gold: Any) -> dict[str, float]:
    """Absolute Betti-number errors between a predicted and a gold binary mask, computed over the whole image
    (the topological errors of Hu et al., "Topology-Preserving Deep Image Segmentation", NeurIPS 2019, without
    their patch sampling; crop first for a local version).

    Args:
        pred: binary (H, W) or (D, H, W) mask (bool or 0/1; numpy array or torch tensor).
        gold: binary mask of the same shape.

    Returns:
        ``{"betti0_error": |b0(pred) - b0(gold)|, "betti1_error": |b1(pred) - b1(gold)|, "betti0_pred",
        "betti0_gold", "betti1_pred", "betti1_gold"}`` as floats, with ``b0`` the number of connected components
        and ``b1`` the number of loops (see :func:`betti_numbers`).
    """
    p = as_binary_mask(pred, "pred", ndims=(2, 3))
    g = as_binary_mask(gold, "gold", ndims=(2, 3))
    check_same_shape(p, g, "pred", "gold")
    bp, bg = _betti(p), _betti(g)
    return {
        "betti0_error": float(abs(bp[0] - bg[0])),
        "betti1_error": float(abs(bp[1] - bg[1])),
        "betti0_pred": float(bp[0]),
        "betti0_gold": float(bg[0]),
        "betti1_pred": float(bp[1]),
        "betti1_gold": float(bg[1]),
    }
