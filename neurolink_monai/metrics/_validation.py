# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Argument checks shared by the metric functions: binary masks, spacings, array conversion."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["to_numpy", "as_binary_mask", "check_same_shape", "as_spacing", "as_positive_float"]


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array (torch tensors are detached and moved to the CPU first)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def as_binary_mask(x: Any, name: str, ndims: Sequence[int] | None = None) -> np.ndarray:
    """Return ``x`` as a bool array, refusing anything that is not already binary.

    Args:
        x: bool array, or a numeric array whose values are all 0 or 1 (numpy array or torch tensor).
        name: the argument name, used in error messages.
        ndims: the allowed numbers of dimensions (``None``: any).

    Raises:
        TypeError: when ``x`` is not array-like or has a non-numeric dtype.
        ValueError: when ``x`` holds values other than 0 and 1 (e.g. probabilities or logits), or has a wrong ndim.
    """
    try:
        arr = to_numpy(x)
    except Exception as e:  # e.g. ragged nested lists
        raise TypeError(f"{name} must be an array, got {type(x).__name__}: {e}") from e
    if arr.dtype == bool:
        out = arr
    elif np.issubdtype(arr.dtype, np.number):
        is_binary = (arr == 0) | (arr == 1)
        if not is_binary.all():
            bad = arr[~is_binary].flat[0]
            raise ValueError(
                f"{name} must be a binary mask (bool or values 0/1), got dtype {arr.dtype} with value {bad!r}; "
                f"threshold probabilities or logits first (e.g. monai.transforms.AsDiscrete(threshold=0.5))."
            )
        out = arr.astype(bool)
    else:
        raise TypeError(f"{name} must be a bool or numeric array, got dtype {arr.dtype}.")
    if ndims is not None and out.ndim not in tuple(ndims):
        allowed = " or ".join(str(n) for n in ndims)
        raise ValueError(f"{name} must have {allowed} dimensions, got shape {tuple(out.shape)}.")
    return out


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise ValueError unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")


def as_spacing(spacing: Sequence[float] | None, ndim: int = 3) -> np.ndarray:
    """Return a voxel spacing in array order (z, y, x) as a float64 array; ``None`` means unit spacing.

    Raises:
        ValueError: unless ``spacing`` holds ``ndim`` positive finite numbers.
    """
    if spacing is None:
        return np.ones(ndim, dtype=np.float64)
    try:
        arr = np.asarray(spacing, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"spacing must be {ndim} positive numbers in (z, y, x) order, got {spacing!r}.") from e
    if arr.size != ndim or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"spacing must be {ndim} positive finite numbers in (z, y, x) order, got {spacing!r}.")
    return arr


def as_positive_float(value: Any, name: str, allow_zero: bool = False) -> float:
    """Return ``value`` as a float, raising ValueError unless it is finite and positive (or zero when allowed)."""
    try:
        out = float(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a number, got {value!r}.") from e
    if not math.isfinite(out) or out < 0 or (out == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}.")
    return out
