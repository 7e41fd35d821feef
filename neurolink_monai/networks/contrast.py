# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Local contrast normalisation: a fixed, content-independent alternative to per-window instance norm at the input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LocalContrast3d", "box_sum"]


def box_sum(x: torch.Tensor, radius: int, dim: int) -> torch.Tensor:
    """Sum of ``x`` over the ``2 radius + 1`` neighbours along ``dim`` (zeros outside), by a cumulative sum: the cost
    does not grow with ``radius``. Same shape as ``x``."""
    pad = [0] * (2 * x.dim())
    pad[2 * (x.dim() - 1 - dim)] = radius + 1
    pad[2 * (x.dim() - 1 - dim) + 1] = radius
    cumulative = F.pad(x, pad).cumsum(dim)
    size = x.shape[dim]
    return cumulative.narrow(dim, 2 * radius + 1, size) - cumulative.narrow(dim, 0, size)


class LocalContrast3d(nn.Module):
    """Append to each channel its local contrast: ``(x - m) / sqrt(v + floor ** 2)``.

    ``m`` and ``v`` are the mean and variance of ``x`` in the ``(2 r + 1)`` box around each voxel (``radius`` r along
    D, H, W), over the voxels inside the input only. Unlike instance norm, the result at a voxel depends only on its
    neighbourhood, not on the window it was cut from: a neuron comes out the same alone and inside a larger volume,
    while faint stretches are still raised to the contrast of bright ones (the weak-signal adaptation that instance
    norm gives). ``floor`` (input intensity units) keeps flat regions from being amplified into structure. No
    parameters.

    Shapes: ``(B, C, D, H, W)`` -> ``(B, 2 C, D, H, W)``, the input channels first.
    """

    def __init__(self, radius: Sequence[int] = (6, 12, 12), floor: float = 0.02) -> None:
        super().__init__()
        if isinstance(radius, str) or not isinstance(radius, Sequence):
            raise TypeError(f"radius must be a sequence of three positive ints (D, H, W), got {radius!r}.")
        radius = tuple(radius)
        if len(radius) != 3 or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in radius):
            raise ValueError(f"radius must hold three positive ints (D, H, W), got {radius!r}.")
        if not floor > 0:
            raise ValueError(f"floor must be positive, got {floor!r}.")
        self.radius = radius
        self.floor = float(floor)

    def _box_sum(self, x: torch.Tensor) -> torch.Tensor:
        for dim, r in zip((2, 3, 4), self.radius):
            x = box_sum(x, r, dim)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"LocalContrast3d expects a (B, C, D, H, W) input, got shape {list(x.shape)}.")
        count = self._box_sum(torch.ones_like(x[:1, :1]))
        mean = self._box_sum(x) / count
        variance = (self._box_sum(x * x) / count - mean * mean).clamp_min(0.0)
        return torch.cat([x, (x - mean) * torch.rsqrt(variance + self.floor**2)], dim=1)

    def extra_repr(self) -> str:
        return f"radius={self.radius}, floor={self.floor}"
