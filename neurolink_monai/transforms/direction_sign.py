# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The canonical sign of direction vectors (a neurite direction has no sign; targets pick one)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..utils import to_numpy

__all__ = ["SIGN_EPS", "canonicalize_direction"]

SIGN_EPS = 1e-6


def canonicalize_direction(direction: Any, eps: float = SIGN_EPS) -> Any:
    """Give a ``(3, ...)`` field of (z, y, x) vectors the canonical sign; returns the same type.

    Rule: ``v_z > 0``; if ``|v_z| <= eps`` then ``v_y > 0``; if also ``|v_y| <= eps`` then ``v_x > 0``.
    Zero vectors stay zero.
    """
    is_torch = isinstance(direction, torch.Tensor)
    v = to_numpy(direction)
    if v.ndim < 1 or v.shape[0] != 3:
        raise ValueError(f"direction must have 3 components on axis 0, got shape {tuple(v.shape)}.")
    sign = np.where(np.abs(v[0]) > eps, np.sign(v[0]), np.where(np.abs(v[1]) > eps, np.sign(v[1]), np.sign(v[2])))
    sign[sign == 0] = 1
    out = (v * sign[None]).astype(v.dtype, copy=False)
    if is_torch:
        from ._utils import wrap_like

        return wrap_like(out, direction)
    return out
