# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The training batch as the bundle's trainer reads it: the network input and the stacked training target.

``train.json`` keeps the binary mask under ``label`` and stacks the 5-channel training target ``[label, dir_z,
dir_y, dir_x, distance]`` under ``target`` (``ConcatItemsd``); MONAI's default ``prepare_batch`` always reads
``label``, so the trainer is given :class:`PrepareKeyedBatch` with ``target_key="target"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from monai.engines.utils import PrepareBatch

__all__ = ["PrepareKeyedBatch"]


class PrepareKeyedBatch(PrepareBatch):
    """``prepare_batch`` of a MONAI engine reading the input and the target under the keys given.

    Args:
        image_key: the network input, ``(B, C, D, H, W)``.
        target_key: the target handed to the loss, e.g. the stacked ``(B, 5, D, H, W)`` training target.

    Returns (when called): ``(batch[image_key], batch[target_key])`` moved to ``device``.
    """

    def __init__(self, image_key: str = "image", target_key: str = "target") -> None:
        for name, key in (("image_key", image_key), ("target_key", target_key)):
            if not isinstance(key, str) or not key:
                raise TypeError(f"{name} must be a non-empty string, got {key!r}.")
        self.image_key, self.target_key = image_key, target_key

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [key for key in (self.image_key, self.target_key) if key not in batchdata]
        if missing:
            raise KeyError(f"the batch has no {missing} (keys: {sorted(map(str, batchdata))}).")
        return tuple(  # type: ignore[return-value]
            batchdata[key].to(device=device, non_blocking=non_blocking, **kwargs)
            for key in (self.image_key, self.target_key)
        )
