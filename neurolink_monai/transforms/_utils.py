# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Helpers shared by the target transforms: spacing, output keys, grid mapping of SWC coordinates, conversions."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.utils import convert_data_type

from ..io.tiff_monai import metatensor_spacing
from ..utils import as_spacing, count_nonfinite, describe_source, to_numpy

__all__ = [
    "describe_source",
    "output_keys_for",
    "resolve_spacing",
    "normalised_spacing",
    "swc_grid_mapping",
    "to_numpy_volume",
    "wrap_like",
]


def output_keys_for(keys: Sequence[Hashable], output_keys: KeysCollection | None, suffix: str) -> list[Hashable]:
    """One output key per input key of a dictionary transform: ``output_keys`` as given (a single key or a
    sequence), or ``"{key}_{suffix}"`` for each key when it is None or empty.

    Raises:
        ValueError: the numbers of output keys and keys differ.
    """
    outs = [output_keys] if isinstance(output_keys, str) else list(output_keys or [])
    if not outs:
        outs = [f"{k}_{suffix}" for k in keys]
    if len(outs) != len(keys):
        raise ValueError(f"output_keys {output_keys!r} must match keys {keys!r} one to one.")
    return outs


def resolve_spacing(img: Any, spacing: Sequence[float] | None, where: str = "input") -> np.ndarray:
    """Voxel spacing ``(z, y, x)``: ``spacing`` if given, else the MetaTensor's
    (:func:`~neurolink_monai.io.metatensor_spacing`), else ones.

    Raises:
        ValueError: a bad ``spacing`` or a degenerate affine, the message starting with ``where``.
    """
    if spacing is not None:
        return as_spacing(spacing, where=where)
    from_affine = metatensor_spacing(img, where)
    return np.ones(3) if from_affine is None else np.asarray(from_affine, dtype=np.float64)


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
    arr = to_numpy(img)
    src = describe_source(img, name)
    if arr.ndim != 4:
        raise ValueError(f"{src}: expected a channel-first 3D volume (C, D, H, W), got shape {tuple(arr.shape)}.")
    if channels is not None and arr.shape[0] != channels:
        raise ValueError(f"{src}: expected {channels} channel(s), got shape {tuple(arr.shape)}.")
    if arr.size == 0:
        raise ValueError(f"{src}: empty volume of shape {tuple(arr.shape)}.")
    count, first = count_nonfinite(arr)
    if count:
        raise ValueError(f"{src}: {count} non-finite values (NaN/Inf), the first at (c, z, y, x) = {first}.")
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
