# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The channel layout of NeuroLinkNet's output and the post-processing that splits it."""

from __future__ import annotations

import torch

__all__ = ["DIRECTION_CHANNELS", "DISTANCE_CHANNELS", "num_output_channels", "split_outputs"]

DIRECTION_CHANNELS = 3
DISTANCE_CHANNELS = 1


def num_output_channels(out_channels: int, multitask: bool = True) -> int:
    """Channels of the network output: ``out_channels`` segmentation logits, plus 3 + 1 when ``multitask``."""
    return out_channels + (DIRECTION_CHANNELS + DISTANCE_CHANNELS if multitask else 0)


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
