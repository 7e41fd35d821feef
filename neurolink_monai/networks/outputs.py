# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The channel layout of NeuroLinkNet's output and its ONE reading: the heads, the neurite probability, the mask.

Layout along the channel dim: ``[seg_0 .. seg_{out_channels-1}, dir_z, dir_y, dir_x, dist]``. :func:`split_outputs`
cuts it into heads (the losses use it on logits); :func:`interpret_outputs` turns it into what inference stores
(probability, mask, unit directions, distance) and is used by the bundle's post-processing, the blockwise path and
the napari plugin alike; :func:`head_channels` tells which channels hold which heads, so that a caller can keep
only some of them (the blockwise path blends only the stored heads).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "DIRECTION_CHANNELS",
    "DISTANCE_CHANNELS",
    "HEADS",
    "check_heads",
    "check_threshold",
    "head_channels",
    "interpret_outputs",
    "num_output_channels",
    "split_outputs",
]

DIRECTION_CHANNELS = 3
DISTANCE_CHANNELS = 1
HEADS = ("seg", "direction", "distance")


def num_output_channels(out_channels: int, multitask: bool = True) -> int:
    """Channels of the network output: ``out_channels`` segmentation logits, plus 3 + 1 when ``multitask``."""
    return out_channels + (DIRECTION_CHANNELS + DISTANCE_CHANNELS if multitask else 0)


def _head_sizes(out_channels: int) -> dict[str, int]:
    return {"seg": out_channels, "direction": DIRECTION_CHANNELS, "distance": DISTANCE_CHANNELS}


def head_channels(out_channels: int, heads: Sequence[str] = HEADS) -> list[int]:
    """Indices, in a multi-task output of ``out_channels`` segmentation channels, of the channels of ``heads``.

    Example: ``head_channels(1, ("seg", "distance")) == [0, 4]``. The channels come in layout order whatever the
    order of ``heads``; :func:`interpret_outputs` reads such a selection back with the same ``heads``.

    Raises:
        ValueError: an unknown head name.
    """
    unknown = sorted(set(heads) - set(HEADS))
    if unknown:
        raise ValueError(f"unknown output heads {unknown}; known: {list(HEADS)}.")
    out, start = [], 0
    for name, size in _head_sizes(out_channels).items():
        if name in heads:
            out += list(range(start, start + size))
        start += size
    return out


def check_heads(heads: Sequence[str]) -> tuple[str, ...]:
    """``heads``, a selection of :data:`HEADS` that includes ``"seg"``, in layout order.

    Raises:
        ValueError: a string instead of a list, no ``"seg"``, or an unknown head name.
    """
    if isinstance(heads, str) or "seg" not in heads:
        raise ValueError(f"heads must include 'seg', got {heads!r}.")
    head_channels(1, heads)  # validates the names
    return tuple(head for head in HEADS if head in heads)


def split_outputs(pred: torch.Tensor, out_channels: int = 1) -> dict[str, torch.Tensor | None]:
    """Split a NeuroLinkNet output ``(B, C, D, H, W)`` (or an unbatched ``(C, D, H, W)``) into its heads.

    Layout along the channel dim: ``[seg_0 .. seg_{out_channels-1}, dir_z, dir_y, dir_x, dist]`` with
    ``dir_*`` the (unnormalised, sign-free) neurite tangent along D, H, W and ``dist`` the non-negative
    distance-map regression. A single-task output holds the segmentation logits only.

    Returns:
        ``{"seg": (.., out_channels, ..), "direction": (.., 3, ..) or None, "distance": (.., 1, ..) or None}``.
    """
    if pred.dim() not in (4, 5):
        raise ValueError(f"pred must be (B, C, D, H, W) or (C, D, H, W), got shape {list(pred.shape)}.")
    ch = pred.shape[-4]
    if ch == out_channels:
        return {"seg": pred, "direction": None, "distance": None}
    if ch != num_output_channels(out_channels, True):
        raise ValueError(
            f"pred has {ch} channels; expected {out_channels} (segmentation only) or "
            f"{num_output_channels(out_channels, True)} (segmentation + direction + distance) for out_channels={out_channels}."
        )
    seg, direction, distance = torch.split(pred, [out_channels, DIRECTION_CHANNELS, DISTANCE_CHANNELS], dim=-4)
    return {"seg": seg, "direction": direction, "distance": distance}


def check_threshold(threshold: Any) -> float:
    """Return the probability ``threshold`` as a float, raising ``ValueError`` unless it lies in ``(0, 1]``
    (0 would mark every voxel as neurite)."""
    try:
        value = float(threshold)
    except (TypeError, ValueError) as e:
        raise ValueError(f"threshold must be a number in (0, 1], got {threshold!r}.") from e
    if isinstance(threshold, bool) or not math.isfinite(value) or not 0.0 < value <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}.")
    return value


def _split_selected(pred: torch.Tensor, out_channels: int, heads: Sequence[str]) -> dict[str, torch.Tensor | None]:
    sizes = {name: size for name, size in _head_sizes(out_channels).items() if name in heads}
    if pred.shape[-4] != sum(sizes.values()):
        raise ValueError(
            f"pred has {pred.shape[-4]} channels, but the heads {list(sizes)} of a network with out_channels="
            f"{out_channels} take {sum(sizes.values())} (shape {list(pred.shape)})."
        )
    parts = dict(zip(sizes, torch.split(pred, list(sizes.values()), dim=-4)))
    return {name: parts.get(name) for name in HEADS}


def _vector_length(vectors: torch.Tensor) -> torch.Tensor:
    """Euclidean length over the channel axis of ``(.., C, D, H, W)``, as ``(.., 1, D, H, W)``: a sum of squares
    over the ``C`` channel slices, one pass each (``Tensor.norm(dim=-4)`` reduces across the strided channel axis,
    many times slower on a whole-stack direction map; same result to float32 rounding)."""
    channels = vectors.unbind(-4)
    total = channels[0] * channels[0]
    for channel in channels[1:]:
        total.addcmul_(channel, channel)
    return total.sqrt_().unsqueeze(-4)


def interpret_outputs(
    pred: torch.Tensor,
    out_channels: int = 1,
    threshold: float = 0.5,
    heads: Sequence[str] | None = None,
    direction_eps: float = 1e-6,
) -> dict[str, torch.Tensor | None]:
    """Read a NeuroLinkNet output ``(C, D, H, W)`` (or ``(B, C, D, H, W)``): probability, mask, directions, distance.

    The neurite probability is the sigmoid of one segmentation channel (``out_channels=1``) or channel 1 of the
    softmax of two; the mask is ``prob >= threshold``; the direction is normalised to unit vectors ``(z, y, x)``
    (0 where its norm is at most ``direction_eps``: undefined); the distance is the network's non-negative
    regression, as it is.

    Args:
        pred: logits; the whole output (segmentation only, or all heads) when ``heads`` is None, else exactly the
            channels of ``heads`` in layout order (as :func:`head_channels` selects them).
        out_channels: segmentation channels of the network, 1 (sigmoid) or 2 (softmax, channel 1 = neurite).
        threshold: probability at or above which a voxel is neurite, in ``(0, 1]`` (:func:`check_threshold`).
        heads: the heads ``pred`` holds, ``"seg"`` among them; None: read from the channel count.
        direction_eps: direction vectors not longer than this become 0.

    Returns:
        ``{"prob": (.., 1, D, H, W) in [0, 1], "mask": (.., 1, D, H, W) bool, "direction": (.., 3, D, H, W) or None,
        "distance": (.., 1, D, H, W) or None}``, in ``pred``'s floating dtype.
    """
    if out_channels not in (1, 2):
        raise ValueError(f"out_channels must be 1 (sigmoid) or 2 (softmax), got {out_channels!r}.")
    threshold = check_threshold(threshold)
    if pred.dim() not in (4, 5):
        raise ValueError(f"pred must be (B, C, D, H, W) or (C, D, H, W), got shape {list(pred.shape)}.")
    if heads is None:
        parts = split_outputs(pred, out_channels)
    else:
        parts = _split_selected(pred, out_channels, check_heads(heads))
    seg = parts["seg"]
    prob = torch.sigmoid(seg) if out_channels == 1 else torch.softmax(seg, dim=-4).narrow(-4, 1, 1)
    direction = parts["direction"]
    if direction is not None:
        norm = _vector_length(direction)
        direction = torch.where(norm > direction_eps, direction / norm.clamp_min(direction_eps), 0.0)
    return {"prob": prob, "mask": prob >= threshold, "direction": direction, "distance": parts["distance"]}
