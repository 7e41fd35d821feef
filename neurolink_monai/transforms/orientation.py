# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Axis order: NIfTI volumes, stored ``(x, y, z)``, to the project's ``(z, y, x)`` array order."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from ..utils import describe_source

__all__ = ["NIFTI_SUFFIXES", "ToZYX", "ToZYXd", "is_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(name: Any) -> bool:
    """Whether a file name ends with a NIfTI suffix (``.nii``, ``.nii.gz``, any case)."""
    return str(name).lower().endswith(NIFTI_SUFFIXES)


class ToZYX(Transform):
    """Reorder a channel-first NIfTI volume ``(C, x, y, z)`` to the project's ``(C, z, y, x)``; others pass.

    NIfTI stores the first array axis as x; TIFF stacks (and the whole project) use ``(z, y, x)``. The affine
    columns are permuted with the axes, so the spacing read from it stays right (``(sz, sy, sx)`` afterwards).
    Whether the input is NIfTI is decided from the MetaTensor's ``filename_or_obj`` suffix (``.nii``, ``.nii.gz``).
    """

    def __call__(self, img: Any) -> Any:
        if not (isinstance(img, MetaTensor) and is_nifti(describe_source(img, ""))):
            return img
        if img.ndim != 4:
            return img  # CheckStack reports the wrong dimensionality with the file name
        out = img.permute(0, 3, 2, 1).contiguous()
        meta = dict(img.meta)
        affine = torch.as_tensor(img.affine, dtype=torch.float64)
        meta["affine"] = affine[:, [2, 1, 0, 3]]
        meta["spatial_shape"] = np.asarray(out.shape[1:])
        return MetaTensor(out.as_tensor(), meta=meta)


class ToZYXd(MapTransform):
    """Dictionary version of :class:`ToZYX`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = ToZYX()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
