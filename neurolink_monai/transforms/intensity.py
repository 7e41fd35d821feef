# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Percentile intensity windowing of light-microscopy stacks (uint8/uint16, sparse bright neurites).

The ONE intensity mapping of the project, used by the bundle (:class:`MicroscopyNormalize`, in memory) and by the
blockwise path (:func:`intensity_window` + :func:`scale_intensity`, out of core): the ``lower`` and ``upper``
percentiles of the whole stack (``DEFAULT_PERCENTILES`` = (0.5, 99.95), the bundle's ``intensity_percentiles``)
map to 0 and 1, and the result is clipped to ``[0, 1]``, float32.

A degenerate window, ``high == low`` (a constant stack, or one so empty that both percentiles fall on the
background, e.g. three bright voxels in a 20 x 100 x 100 stack), maps ``x -> clip(x - low, 0, 1)`` with a warning
naming the file when it is known. (MONAI's ``ScaleIntensityRange`` returns the unclipped ``x - low`` there, which
fed values up to the raw intensity, e.g. 3000, to the network.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import get_track_meta
from monai.transforms import MapTransform, Transform
from monai.transforms.utils_pytorch_numpy_unification import percentile
from monai.utils import convert_to_dst_type, convert_to_tensor

from ..utils import as_positive_int, count_nonfinite, describe_source

__all__ = [
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_PERCENTILES",
    "MicroscopyNormalize",
    "MicroscopyNormalized",
    "check_percentiles",
    "intensity_window",
    "scale_intensity",
    "subsample_strides",
    "volume_percentiles",
]

DEFAULT_PERCENTILES = (0.5, 99.95)
# 2**24 voxels: exact for stacks up to e.g. 64 x 512 x 512; a 16M-voxel subsample estimates the
# percentiles of larger volumes to well below one grey level of a uint16 stack in practice.
DEFAULT_MAX_SAMPLES = 2**24


def check_percentiles(lower: Any, upper: Any) -> tuple[float, float]:
    """Return ``(lower, upper)`` as floats, raising unless ``0 <= lower < upper <= 100``.

    Raises:
        TypeError: a percentile is not a number.
        ValueError: a percentile outside ``[0, 100]`` (or NaN), or ``lower >= upper``; the message shows both.
    """
    for name, value in (("lower", lower), ("upper", upper)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} percentile must be a number, got {value!r}.")
        if not math.isfinite(value) or not 0.0 <= value <= 100.0:
            raise ValueError(f"{name} percentile must be in [0, 100], got {value!r}.")
    if not lower < upper:
        raise ValueError(
            f"lower percentile must be smaller than upper (0 <= lower < upper <= 100), got lower={lower!r}, "
            f"upper={upper!r}."
        )
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
    as_positive_int(max_samples, "max_samples")
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
    lower: float = DEFAULT_PERCENTILES[0],
    upper: float = DEFAULT_PERCENTILES[1],
    max_samples: int = DEFAULT_MAX_SAMPLES,
) -> tuple[float, float]:
    """The ``lower`` and ``upper`` intensity percentiles of a whole volume, read out of core when needed.

    Args:
        volume: an array-like of any number of dims with ``shape`` and numpy-style strided slicing: a numpy array,
            torch tensor, Zarr array, dask array, ``tifffile.memmap`` or a
            :class:`~neurolink_monai.inference.blockwise.VolumeSource`. Percentiles are taken over all its elements
            (channels included), like ``MicroscopyNormalize(channel_wise=False)``.
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
    lower, upper = check_percentiles(lower, upper)
    low, high = volume_percentiles(volume, (lower, upper), max_samples)
    return low, high


def volume_percentiles(
    volume: Any, percentiles: Sequence[float], max_samples: int = DEFAULT_MAX_SAMPLES
) -> tuple[float, ...]:
    """Any ``percentiles`` (each in ``[0, 100]``) of a whole volume, from the sample :func:`intensity_window` reads.

    Raises:
        ValueError: empty volume, a percentile outside ``[0, 100]``, or NaN/Inf intensities.
        TypeError: non-numeric data.
    """
    for value in percentiles:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 100.0:
            raise ValueError(f"percentiles must be numbers in [0, 100], got {list(percentiles)!r}.")
    shape = tuple(int(s) for s in getattr(volume, "shape", ()))
    if not shape or math.prod(shape) == 0:
        raise ValueError(f"cannot compute intensity percentiles of an empty volume of shape {shape!r}.")
    sample = _sample(volume, subsample_strides(shape, max_samples))
    if sample.dtype.kind not in "uifb":
        raise TypeError(f"intensity percentiles need numeric samples, got dtype {sample.dtype}.")
    if sample.dtype.kind == "f" and not np.isfinite(sample).all():
        bad = int((~np.isfinite(sample)).sum())
        raise ValueError(f"the volume holds non-finite intensities (NaN/Inf): {bad} of {sample.size} sampled voxels.")
    return tuple(float(v) for v in np.percentile(sample, list(percentiles)))


def scale_intensity(
    block: np.ndarray | torch.Tensor, window: Sequence[Any], clip: bool = True, name: str | None = None
) -> np.ndarray | torch.Tensor:
    """Map intensities linearly so that ``window = (low, high)`` becomes ``(0, 1)``, clipped to ``[0, 1]``, float32.

    Equal to MONAI's ``ScaleIntensityRange(a_min=low, a_max=high, b_min=0, b_max=1, clip=clip)`` whenever
    ``high > low``. When ``high == low`` (a constant stack, or one whose percentiles both fall on the background)
    the mapping is ``clip(x - low, 0, 1)`` whatever ``clip``, with a warning naming ``name`` (the file), where
    MONAI would return the unclipped ``x - low``.

    Args:
        block: any shape, e.g. ``(D, H, W)`` or ``(B, C, D, H, W)``; numpy array or torch tensor.
        window: ``(low, high)`` from :func:`intensity_window` (numbers or 0-dim tensors; arithmetic runs in float32).
        clip: clip the result of a proper window to ``[0, 1]``.
        name: the file the block comes from, named in the warning.

    Returns:
        float32 of the same shape and type (numpy in, numpy out; torch in, torch out on the same device).
    """
    if len(window) != 2:
        raise ValueError(f"window must be (low, high), got {window!r}.")
    low, high = window
    if not (math.isfinite(float(low)) and math.isfinite(float(high))) or float(high) < float(low):
        raise ValueError(f"window must be two finite numbers with low <= high, got {window!r}.")
    is_numpy = not isinstance(block, torch.Tensor)
    t = torch.as_tensor(np.asarray(block)) if is_numpy else block
    t = t.to(torch.float32)
    if float(high) > float(low):
        t = (t - low) / (high - low)
        if clip:
            t = torch.clamp(t, 0.0, 1.0)
    else:
        warnings.warn(
            f"{name or 'input'}: degenerate intensity window, low == high == {float(low):g} (a constant stack, or "
            "one whose percentiles both fall on the background); mapping x -> clip(x - low, 0, 1).",
            stacklevel=2,
        )
        t = torch.clamp(t - low, 0.0, 1.0)
    return t.numpy() if is_numpy else t


class MicroscopyNormalize(Transform):
    """Map intensities to [0, 1] with the ``lower`` and ``upper`` percentiles of the image (per channel).

    Neurites fill a tiny fraction of a light-microscopy stack (0.1 % of the voxels in the DIADEM OP stacks), so
    the upper percentile must sit above the background: the default 99.95 maps the brightest 0.05 % of voxels
    to >= 1 and ``clip=True`` saturates them, which keeps weak neurites away from zero whatever the bit depth
    (uint8, 12/16-bit uint16). The lower percentile (default 0.5) removes the camera offset. The percentiles are
    MONAI's (``ScaleIntensityRangePercentiles``), the mapping :func:`scale_intensity`: a degenerate window
    (``high == low``) gives ``clip(x - low, 0, 1)`` with a warning naming the file (a constant image becomes
    zeros). The output is a float32 tensor (MetaTensor metadata kept); spacing is not touched (networks run on
    the anisotropic grid).

    Args:
        lower, upper: percentiles with ``0 <= lower < upper <= 100``, default ``DEFAULT_PERCENTILES``.
        clip: clip the scaled intensities to ``[0, 1]``.
        channel_wise: percentiles per channel (``(C, ...)`` input) instead of over the whole array.

    Raises:
        ValueError: non-finite intensities, naming the file.
    """

    def __init__(
        self,
        lower: float = DEFAULT_PERCENTILES[0],
        upper: float = DEFAULT_PERCENTILES[1],
        clip: bool = True,
        channel_wise: bool = True,
    ) -> None:
        self.lower, self.upper = check_percentiles(lower, upper)
        self.clip = bool(clip)
        self.channel_wise = bool(channel_wise)

    def _scale(self, img: torch.Tensor, name: str) -> torch.Tensor:
        window = (percentile(img, self.lower), percentile(img, self.upper))  # 0-dim float32 tensors, as MONAI
        return scale_intensity(img, window, self.clip, name)

    def __call__(self, img: Any) -> Any:
        name = describe_source(img, "image")
        count, first = count_nonfinite(img)
        if count:
            raise ValueError(f"{name}: non-finite intensities (NaN/Inf) in {count} voxel(s), the first at {first}.")
        img = convert_to_tensor(img, track_meta=get_track_meta())
        img_t = convert_to_tensor(img, track_meta=False).to(torch.float32)
        if self.channel_wise:
            out = torch.stack([self._scale(channel, name) for channel in img_t])
        else:
            out = self._scale(img_t, name)
        return convert_to_dst_type(out, dst=img, dtype=torch.float32)[0]


class MicroscopyNormalized(MapTransform):
    """Dictionary version of :class:`MicroscopyNormalize`."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        lower: float = DEFAULT_PERCENTILES[0],
        upper: float = DEFAULT_PERCENTILES[1],
        clip: bool = True,
        channel_wise: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = MicroscopyNormalize(lower, upper, clip, channel_wise)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
