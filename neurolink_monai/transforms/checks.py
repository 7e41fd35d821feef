# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Early, explicit checks of loaded volumes so that bad input fails with a message naming the file."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from ..utils import count_nonfinite, describe_source

__all__ = ["CheckVolume", "CheckVolumed"]


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
