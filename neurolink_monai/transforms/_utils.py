# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Helpers shared by the target transforms: spacing, source names, grid mapping of SWC coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import convert_data_type

__all__ = [
    "describe_source",
    "resolve_spacing",
    "normalised_spacing",
    "swc_grid_mapping",
    "to_numpy_volume",
    "wrap_like",
]


def describe_source(img: Any, fallback: str = "input") -> str:
    """A name for error messages: the file a MetaTensor was loaded from, else ``fallback``."""
    if isinstance(img, MetaTensor):
        name = img.meta.get("filename_or_obj")
        if name:
            return str(name)
    return fallback


def _check_spacing(spacing: Sequence[float], where: str) -> np.ndarray:
    try:
        sp = np.asarray(spacing, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: spacing must be 3 numbers (z, y, x), got {spacing!r}.") from e
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or (sp <= 0).any():
        raise ValueError(f"{where}: spacing must be 3 positive finite numbers (z, y, x), got {spacing!r}.")
    return sp


def resolve_spacing(img: Any, spacing: Sequence[float] | None, where: str = "input") -> np.ndarray:
    """Voxel spacing ``(z, y, x)``: ``spacing`` if given, else the MetaTensor affine's ``pixdim``, else ones."""
    if spacing is not None:
        return _check_spacing(spacing, where)
    if isinstance(img, MetaTensor) and "affine" in img.meta:
        aff = np.asarray(convert_data_type(img.affine, np.ndarray)[0], dtype=np.float64)
        if aff.shape == (4, 4):
            return _check_spacing(np.sqrt((aff[:3, :3] ** 2).sum(axis=0)), where)
    return np.ones(3)


def normalised_spacing(spacing: np.ndarray) -> np.ndarray:
    """Spacing in units of the in-plane x voxel, the unit of SWC radii and of the distance map."""
    return spacing / spacing[2]


def swc_grid_mapping(ref: Any) -> np.ndarray:
    """4x4 map from the voxel grid the SWC was traced on to ``ref``'s current voxel grid, in (z, y, x) order.

    A MetaTensor that went through MONAI spatial transforms (crop, flip, rotate90, ...) carries its current
    ``affine`` and the reader's ``original_affine``; ``inv(affine) @ original_affine`` then maps the original
    voxel coordinates (those of the SWC) onto the transformed grid. Anything else gives the identity.
    """
    if isinstance(ref, MetaTensor) and "affine" in ref.meta and ref.meta.get("original_affine") is not None:
        aff = np.asarray(convert_data_type(ref.affine, np.ndarray)[0], dtype=np.float64)
        orig = np.asarray(convert_data_type(ref.meta["original_affine"], np.ndarray)[0], dtype=np.float64)
        if aff.shape == (4, 4) and orig.shape == (4, 4):
            mapping = np.linalg.solve(aff, orig)
            return np.where(np.abs(mapping) < 1e-9, 0.0, mapping)
    return np.eye(4)


def to_numpy_volume(img: Any, name: str, channels: int | None = 1) -> np.ndarray:
    """Return a ``(C, D, H, W)`` numpy view of a channel-first 3D volume, validating its shape and values."""
    if isinstance(img, torch.Tensor):
        arr = img.detach().cpu().numpy()
    else:
        arr = np.asarray(img)
    src = describe_source(img, name)
    if arr.ndim != 4:
        raise ValueError(f"{src}: expected a channel-first 3D volume (C, D, H, W), got shape {tuple(arr.shape)}.")
    if channels is not None and arr.shape[0] != channels:
        raise ValueError(f"{src}: expected {channels} channel(s), got shape {tuple(arr.shape)}.")
    if arr.size == 0:
        raise ValueError(f"{src}: empty volume of shape {tuple(arr.shape)}.")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{src}: {int((~np.isfinite(arr)).sum())} non-finite values (NaN/Inf).")
    return arr


def wrap_like(out: np.ndarray, ref: Any) -> Any:
    """Return ``out`` as the same kind of object as ``ref``: MetaTensor (sharing ``ref``'s meta), tensor or array."""
    if isinstance(ref, MetaTensor):
        res = MetaTensor(torch.from_numpy(np.ascontiguousarray(out)), meta=dict(ref.meta))
        res.applied_operations = list(ref.applied_operations)
        return res
    if isinstance(ref, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(out)).to(ref.device)
    return out
