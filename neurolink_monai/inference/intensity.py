# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Percentile intensity windowing for volumes that may not fit in memory.

The bundle's inference workflow scales every stack to ``[0, 1]`` with percentiles computed over the whole volume and
clips (MONAI's ``ScaleIntensityRangePercentiles(lower, upper, b_min=0, b_max=1, clip=True)``). Out of core, the two
percentiles come from :func:`intensity_window`, which reads the whole volume when it holds at most ``max_samples``
voxels (then the result is exact, identical to ``numpy.percentile`` over the volume) and otherwise an evenly strided
subsample of about ``max_samples`` voxels (every ``s_0``-th plane, every ``s_1``-th row, every ``s_2``-th column).
:func:`scale_intensity` then maps any block with those two values, so every block of a volume sees the same mapping.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "DEFAULT_LOWER_PERCENTILE",
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_UPPER_PERCENTILE",
    "intensity_window",
    "scale_intensity",
    "subsample_strides",
]

DEFAULT_LOWER_PERCENTILE = 1.0
DEFAULT_UPPER_PERCENTILE = 99.9
# 2**24 voxels: exact for stacks up to e.g. 64 x 512 x 512; a 16M-voxel subsample estimates the
# percentiles of larger volumes to well below one grey level of a uint16 stack in practice.
DEFAULT_MAX_SAMPLES = 2**24


def _check_percentiles(lower: float, upper: float) -> tuple[float, float]:
    for name, value in (("lower", lower), ("upper", upper)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} percentile must be a number, got {value!r}.")
        if not math.isfinite(value) or not 0.0 <= value <= 100.0:
            raise ValueError(f"{name} percentile must be in [0, 100], got {value!r}.")
    if not lower < upper:
        raise ValueError(f"lower percentile must be smaller than upper, got lower={lower!r}, upper={upper!r}.")
    return float(lower), float(upper)


def subsample_strides(shape: Sequence[int], max_samples: int = DEFAULT_MAX_SAMPLES) -> tuple[int, ...]:
    """Per-axis strides ``s`` such that ``prod(ceil(shape / s)) <= max_samples``, as even as possible.

    Strides grow one at a time on the axis that currently keeps the most samples, so a ``(60, 4096, 4096)`` stack is
    thinned in-plane before its few planes are. All strides are 1 when the volume holds at most ``max_samples``
    voxels.
    """
    shape = tuple(int(s) for s in shape)
    if any(s < 1 for s in shape):
        raise ValueError(f"shape must hold positive sizes, got {shape!r}.")
    if isinstance(max_samples, bool) or not isinstance(max_samples, (int, np.integer)) or max_samples < 1:
        raise ValueError(f"max_samples must be a positive int, got {max_samples!r}.")
    strides = [1] * len(shape)
    counts = list(shape)
    while math.prod(counts) > max_samples:
        axis = int(np.argmax(counts))
        strides[axis] += 1
        counts[axis] = -(-shape[axis] // strides[axis])
    return tuple(strides)


def _sample(volume: Any, strides: tuple[int, ...]) -> np.ndarray:
    """Strided subsample of ``volume`` read in slabs along axis 0, so a chunked store is read chunk row by row."""
    index = tuple(slice(None, None, s) for s in strides)
    if hasattr(volume, "dask") and hasattr(volume, "compute"):  # a dask array: let its scheduler read in parallel
        return np.asarray(volume[index].compute())
    if isinstance(volume, (np.ndarray, torch.Tensor)):
        data = volume[index]
        return data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    n0, s0 = int(volume.shape[0]), strides[0]
    chunk0 = getattr(volume, "chunks", None)
    rows = int(chunk0[0]) if isinstance(chunk0, tuple) and chunk0 and isinstance(chunk0[0], (int, np.integer)) else 1
    slab = max(s0, -(-max(rows, 16) // s0) * s0)  # a multiple of s0 covering at least one chunk row
    parts = [np.asarray(volume[(slice(z0, min(z0 + slab, n0), s0),) + index[1:]]) for z0 in range(0, n0, slab)]
    return np.concatenate(parts, axis=0)


def intensity_window(
    volume: Any,
    lower: float = DEFAULT_LOWER_PERCENTILE,
    upper: float = DEFAULT_UPPER_PERCENTILE,
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> tuple[float, float]:
    """The ``lower`` and ``upper`` intensity percentiles of a whole volume, read out of core when needed.

    Args:
        volume: an array-like of any number of dims with ``shape`` and numpy-style strided slicing: a numpy array,
            torch tensor, Zarr array, dask array, ``tifffile.memmap`` or a
            :class:`~neurolink_monai.inference.blockwise.VolumeSource`. Percentiles are taken over all its elements
            (channels included), like MONAI's ``ScaleIntensityRangePercentiles(channel_wise=False)``.
        lower: lower percentile in ``[0, 100]``.
        upper: upper percentile in ``[0, 100]``, larger than ``lower``.
        max_samples: the exact percentiles are computed when ``volume`` has at most this many elements; larger
            volumes are subsampled with :func:`subsample_strides` (deterministic, evenly spread) and the
            percentiles of the subsample are returned.

    Returns:
        ``(low, high)`` as Python floats (``numpy.percentile``, linear interpolation).

    Raises:
        ValueError: empty volume, bad percentiles, or NaN/Inf intensities.
    """
    lower, upper = _check_percentiles(lower, upper)
    shape = tuple(int(s) for s in getattr(volume, "shape", ()))
    if not shape or math.prod(shape) == 0:
        raise ValueError(f"cannot compute intensity percentiles of an empty volume of shape {shape!r}.")
    sample = _sample(volume, subsample_strides(shape, max_samples))
    if sample.dtype.kind not in "uifb":
        raise TypeError(f"intensity percentiles need numeric samples, got dtype {sample.dtype}.")
    if sample.dtype.kind == "f" and not np.isfinite(sample).all():
        bad = int((~np.isfinite(sample)).sum())
        raise ValueError(f"the volume holds non-finite intensities (NaN/Inf): {bad} of {sample.size} sampled voxels.")
    low, high = np.percentile(sample, [lower, upper])
    return float(low), float(high)


def scale_intensity(block: np.ndarray | torch.Tensor, window: Sequence[float]) -> np.ndarray | torch.Tensor:
    """Map intensities linearly so that ``window = (low, high)`` becomes ``(0, 1)``, clipped to ``[0, 1]``, float32.

    Equal to MONAI's ``ScaleIntensityRange(a_min=low, a_max=high, b_min=0, b_max=1, clip=True)`` whenever
    ``high > low``. When ``high == low`` (for instance a stack that is almost all background, so that both
    percentiles are 0) the mapping degenerates to ``clip(x - low, 0, 1)`` with a warning, where MONAI would return
    the unclipped ``x - low``.

    Args:
        block: any shape, e.g. ``(D, H, W)`` or ``(B, C, D, H, W)``; numpy array or torch tensor.
        window: ``(low, high)`` from :func:`intensity_window`.

    Returns:
        float32 of the same shape and type (numpy in, numpy out; torch in, torch out on the same device).
    """
    if len(window) != 2:
        raise ValueError(f"window must be (low, high), got {window!r}.")
    low, high = float(window[0]), float(window[1])
    if not (math.isfinite(low) and math.isfinite(high)) or high < low:
        raise ValueError(f"window must be two finite numbers with low <= high, got {window!r}.")
    is_numpy = not isinstance(block, torch.Tensor)
    t = torch.as_tensor(np.asarray(block)) if is_numpy else block
    t = t.to(torch.float32)
    if high > low:
        t = (t - low) / (high - low)
    else:
        warnings.warn(f"degenerate intensity window low == high == {low}; mapping x -> clip(x - low, 0, 1).")
        t = t - low
    t = torch.clamp(t, 0.0, 1.0)
    return t.numpy() if is_numpy else t
