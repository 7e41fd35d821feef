# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Argument checks of the metric functions: binary masks and matching shapes (array conversion, spacings and
positive numbers come from :mod:`neurolink_monai.utils`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from neurolink_monai.utils import to_numpy

__all__ = ["as_binary_mask"]


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
