# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Input checks shared by the losses: clear ``ValueError``/``TypeError`` messages instead of deep torch tracebacks
(matching shapes: :func:`neurolink_monai.utils.check_same_shape`)."""

from __future__ import annotations

import torch
from monai.data import MetaTensor

__all__ = ["as_plain_tensor", "check_binary_label", "check_probabilities"]


def as_plain_tensor(x: object, name: str) -> torch.Tensor:
    """``x`` as a plain ``torch.Tensor``: a MONAI ``MetaTensor`` drops its metadata but keeps its autograd graph."""
    if isinstance(x, MetaTensor):
        return x.as_tensor()
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    return x


def check_binary_label(label: torch.Tensor, name: str = "label") -> None:
    """Raise ``ValueError`` naming the offending values unless every voxel of ``label`` is 0 or 1.

    One fused comparison pass over the label, cheaper than any of the losses it guards.
    """
    if label.dtype == torch.bool:
        return
    bad = (label != 0) & (label != 1)
    if bool(bad.any()):
        values = torch.unique(label[bad])
        shown = ", ".join(f"{v:g}" for v in values[:5].tolist()) + (", ..." if values.numel() > 5 else "")
        raise ValueError(
            f"{name} must be binary (values in {{0, 1}}), got {int(bad.sum())} voxel(s) with other values "
            f"({shown}) in a {name} of shape {list(label.shape)}."
        )


def check_probabilities(input: torch.Tensor, name: str = "input") -> None:
    """Raise ``ValueError`` unless ``input`` lies in [0, 1] (logits passed where probabilities are expected)."""
    lo, hi = torch.aminmax(input.detach())
    lo, hi = float(lo), float(hi)
    if not (lo >= 0.0 and hi <= 1.0):  # also catches NaN
        raise ValueError(
            f"with sigmoid=False the {name} must hold probabilities in [0, 1], got values in [{lo:g}, {hi:g}] "
            f"(shape {list(input.shape)}); pass logits with sigmoid=True."
        )
