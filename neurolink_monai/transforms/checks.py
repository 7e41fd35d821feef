# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Early, explicit checks of loaded volumes so that bad input fails with a message naming the file."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from ..errors import DatasetError, StackContentError
from ..utils import as_positive_int, count_nonfinite, describe_source
from .intensity import DEFAULT_PERCENTILES

__all__ = [
    "CheckStack",
    "CheckStackd",
    "CheckVolume",
    "CheckVolumed",
    "check_binary_label",
    "check_contrast",
    "contrast_step",
]


class CheckVolume(Transform):
    """Check that an input is a non-empty, finite, channel-first 3D volume ``(C, D, H, W)``; return it unchanged.

    Raises:
        ValueError: 2D data (``(C, H, W)``) where a 3D stack is needed, wrong rank, an empty volume, or NaN/Inf
            values; the message names the file (MetaTensor ``filename_or_obj``) or ``name``.
    """

    def __init__(self, require_finite: bool = True) -> None:
        self.require_finite = require_finite

    def __call__(self, img: Any, name: str = "input") -> Any:
        src = describe_source(img, name)
        shape = tuple(img.shape)
        if len(shape) == 3:
            raise ValueError(
                f"{src}: got shape {shape}, a 2D image with a channel (C, H, W) or a 3D array without one; "
                "a channel-first 3D stack (C, D, H, W) is needed (add EnsureChannelFirstd after loading)."
            )
        if len(shape) != 4:
            raise ValueError(f"{src}: expected a channel-first 3D stack (C, D, H, W), got shape {shape}.")
        if int(np.prod(shape)) == 0:
            raise ValueError(f"{src}: empty volume of shape {shape}.")
        if self.require_finite:
            count, first = count_nonfinite(img)
            if count:
                raise ValueError(
                    f"{src}: {count} non-finite intensities (NaN/Inf), the first at (c, z, y, x) = {first}."
                )
        return img


class CheckVolumed(MapTransform):
    """Check every key with :class:`CheckVolume` and that all share one spatial shape ``(D, H, W)``.

    Use right after ``LoadImaged`` + ``EnsureChannelFirstd`` (and ``SWCToMaskd``), e.g. on
    ``keys=("image", "label")``: a label whose grid differs from the image's fails here, naming both files.
    """

    def __init__(self, keys: KeysCollection, require_finite: bool = True, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.check = CheckVolume(require_finite)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first: tuple[str, tuple[int, ...]] | None = None
        for key in self.key_iterator(d):
            img = self.check(d[key], name=f"key {key!r}")
            src = describe_source(img, f"key {key!r}")
            spatial = tuple(int(s) for s in img.shape[-3:])
            if first is None:
                first = (src, spatial)
            elif spatial != first[1]:
                raise ValueError(
                    f"shape mismatch: {src} has spatial shape {spatial} but {first[0]} has {first[1]}; "
                    "image and label must share one voxel grid."
                )
        return d


def contrast_step(dtype: Any, low: float, high: float) -> float:
    """The smallest intensity difference that can hold signal: one grey level (1) for integer and bool stacks,
    ``1e-6`` of the larger magnitude of ``low``/``high`` for float stacks (float32 resolves about 1e-7)."""
    if np.dtype(dtype).kind in "uib":
        return 1.0
    return 1e-6 * max(abs(float(low)), abs(float(high)))


def check_contrast(
    low: float,
    high: float,
    dtype: Any,
    name: str,
    percentiles: tuple[float, float],
    value_range: tuple[float, float] | None = None,
    option: str = "intensity_percentiles",
) -> None:
    """Refuse a constant or near-constant stack before it is segmented.

    Rule: the contrast ``high - low`` between the intensity-scaling percentiles (0.5 and 99.95 by default) must
    exceed :func:`contrast_step`, one grey level for integer stacks. Percentile scaling maps ``low .. high`` to
    ``0 .. 1``; with a contrast of at most one grey level the network input is all zeros or a binary pattern of
    quantisation noise, and the network then outputs the bias of its head or "neurites" drawn in noise: a
    confident wrong answer. Real stacks, faint neurites included, span many grey levels between these
    percentiles (the DIADEM OP stacks and the synthetic hard difficulty: see ``tests/test_bad_input.py``), so
    they pass; a pure-noise stack passes too (the rule cannot tell noise from faint signal).

    Args:
        low, high: the intensity percentiles of the whole stack.
        dtype: the stack's sample type as stored.
        name: the file (or option) named in the message.
        percentiles: the percentiles ``low`` and ``high`` were taken at.
        value_range: the stack's (min, max), to tell a constant stack and to hint at the percentiles when a few
            bright voxels lie above ``high``.
        option: the config key or CLI option holding the percentiles, named in the hint.

    Raises:
        StackContentError: the stack is constant or near-constant; the message names ``name`` and the values.
    """
    low, high = float(low), float(high)
    if high - low > contrast_step(dtype, low, high):
        return
    if value_range is not None and float(value_range[0]) == float(value_range[1]):
        raise StackContentError(
            f"{name}: the stack is constant (every voxel is {float(value_range[0]):g}): there is nothing to "
            "segment, so no output is made."
        )
    lo_p, hi_p = percentiles
    msg = (
        f"{name}: near-constant stack: its intensities between the {lo_p:g}th and {hi_p:g}th percentiles span "
        f"only {low:g} .. {high:g} (at most one grey level), so the network would only see quantisation noise; "
        "no output is made."
    )
    if value_range is not None and float(value_range[1]) > high:
        msg += (
            f" A few voxels reach {float(value_range[1]):g}: if they are the neurite, lower the upper percentile "
            f"({option})."
        )
    raise StackContentError(msg)


def check_binary_label(label: Any, name: str, allow_multilabel: bool = False) -> Any:
    """Return a label mask as 0/1 ``float32``, refusing masks that are not binary.

    A binary mask holds 0 and one foreground value (1, 255, or any other single value: every nonzero voxel is
    neurite). A mask with several nonzero values (an instance or class map, or a probability map) is refused
    unless ``allow_multilabel`` (config key ``label_nonzero_is_neurite``), which treats every nonzero voxel
    as neurite.

    Args:
        label: the mask, any shape (numpy array or torch tensor, MetaTensor kept).
        name: the file named in the message.
        allow_multilabel: accept several nonzero values, all meaning neurite.

    Raises:
        DatasetError: negative or non-finite values, or (without ``allow_multilabel``) more than one nonzero
            value; the message names the file and the values found.
    """
    import torch

    t = label if isinstance(label, torch.Tensor) else torch.as_tensor(np.asarray(label))
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise DatasetError(f"{name}: the label mask holds NaN/Inf values.")
    values = torch.unique(t.detach().reshape(-1)) if t.numel() <= 2**31 else torch.unique(t.detach().cpu())
    if bool((values < 0).any()):
        raise DatasetError(f"{name}: the label mask holds negative values ({_values_text(values)}).")
    nonzero = values[values != 0]
    if nonzero.numel() > 1 and not allow_multilabel:
        raise DatasetError(
            f"{name}: the label mask must be binary (0 and one foreground value), found the values "
            f"{_values_text(values)}; convert it, or pass --label_nonzero_is_neurite true to count every nonzero "
            "voxel as neurite."
        )
    return (
        (t != 0).to(torch.float32) if not isinstance(label, np.ndarray) else (np.asarray(label) != 0).astype(np.float32)
    )


def _values_text(values: Any) -> str:
    vals = [float(v) for v in values.reshape(-1)[:8].tolist()]
    text = ", ".join(f"{v:g}" for v in vals)
    return f"[{text}{', ...' if values.numel() > 8 else ''}] ({values.numel()} distinct)"


class CheckStack(Transform):
    """Check that a channel-first image is a stack the network can segment; return it unchanged.

    :class:`CheckVolume` rejects 2D images, other ranks, empty and non-finite stacks;
    this adds:

    - the channel count the network takes;
    - at least two slices: a single slice ``(C, 1, H, W)`` is a 2D image, which the 3D network and the tracer do
      not handle (its outputs would be 2D files that the tracing CLI refuses);
    - the contrast rule of :func:`check_contrast`: the intensities between the scaling
      ``percentiles`` must span more than one grey level. A constant (all-zero, all-equal) or near-constant stack
      is refused instead of being segmented into neurites made of noise.

    Every error names the file (MetaTensor metadata).

    Args:
        num_channels: expected channels (1 for NeuroLinkNet's default input).
        percentiles: the (low, high) intensity-scaling percentiles the contrast is measured between; None skips
            the contrast rule (label masks).
    """

    def __init__(self, num_channels: int = 1, percentiles: Sequence[float] | None = DEFAULT_PERCENTILES) -> None:
        self.num_channels = as_positive_int(num_channels, "num_channels")
        self.percentiles = None if percentiles is None else tuple(float(p) for p in percentiles)
        self.volume_check = CheckVolume(require_finite=True)

    def __call__(self, img: Any) -> Any:
        src = describe_source(img)
        self.volume_check(img, name=src)
        shape = tuple(int(s) for s in img.shape)
        if shape[0] != self.num_channels:
            raise StackContentError(
                f"{src}: the image has {shape[0]} channels (channel-first shape {shape}) but the model takes "
                f"{self.num_channels}; extract the neurite channel first (e.g. Fiji: Image > Color > Split Channels)."
            )
        if shape[1] < 2:
            raise StackContentError(
                f"{src}: a single slice (channel-first shape {shape}); NeuroLink segments 3D stacks of at least 2 "
                "slices."
            )
        if self.percentiles is not None:
            arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
            dtype = _stored_dtype(img, arr.dtype)
            low, high = np.percentile(arr, self.percentiles)
            check_contrast(low, high, dtype, src, self.percentiles, (float(arr.min()), float(arr.max())))
        return img


def _stored_dtype(img: Any, fallback: Any) -> np.dtype:
    """The sample type of the file an image was loaded from (MONAI loads TIFFs as float32), else ``fallback``."""
    meta = img.meta if isinstance(img, MetaTensor) else {}
    for key in ("dtype", "stored_dtype"):
        if key in meta:
            try:
                return np.dtype(str(meta[key]))
            except TypeError:
                pass
    return np.dtype(fallback)


class CheckStackd(MapTransform):
    """Dictionary version of :class:`CheckStack`."""

    def __init__(
        self,
        keys: KeysCollection,
        num_channels: int = 1,
        percentiles: Sequence[float] | None = DEFAULT_PERCENTILES,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = CheckStack(num_channels, percentiles)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.transform(d[key])
        return d
