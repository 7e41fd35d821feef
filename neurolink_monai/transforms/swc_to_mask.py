# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Loading SWC traces in MONAI pipelines and rasterising them into label masks on an image's grid."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from ..io.swc import read_swc, validate_swc
from ..utils import describe_source
from ._utils import output_keys_for, resolve_spacing, swc_grid_mapping, wrap_like
from .swc_raster import check_raster_params, check_swc_inside, rasterize_swc

__all__ = ["LoadSWC", "LoadSWCd", "SWCToMask", "SWCToMaskd"]


class LoadSWC(Transform):
    """Read an SWC file into an ``(N, 7)`` float64 array (:func:`neurolink_monai.io.read_swc`)."""

    def __call__(self, path: str | os.PathLike) -> np.ndarray:
        return read_swc(path)


class LoadSWCd(MapTransform):
    """Replace SWC paths under ``keys`` by ``(N, 7)`` arrays; the path goes to ``{key}_meta_dict["filename_or_obj"]``.

    Values that are arrays already are left as they are.

    SWC arrays have different lengths per sample: drop them (``DeleteItemsd``) before batching.
    """

    def __init__(self, keys: KeysCollection = "swc", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            if isinstance(path, np.ndarray):
                continue  # already loaded (e.g. by the bundle's LoadLabeld for an SWC label)
            d[key] = read_swc(path)
            d[f"{key}_meta_dict"] = {"filename_or_obj": str(path)}
        return d


class SWCToMask(Transform):
    """Rasterise an ``(N, 7)`` SWC (voxel units) into a ``(1, D, H, W)`` uint8 mask of tapered cylinders.

    Each edge is a tapered capsule whose radius runs linearly between the two nodes' radii (see
    :mod:`neurolink_monai.transforms.swc_raster`); a voxel is foreground when its centre is inside. Radii are in
    in-plane (x) voxels and the shape honours anisotropic ``spacing``.

    Args:
        spatial_shape: grid ``(D, H, W)``.
        spacing: voxel size ``(z, y, x)``; only ratios matter. ``None``: isotropic.
        min_radius: smallest radius used (x voxels); the default 1.0 keeps thin traces connected.
        radius_scale: factor applied to the SWC radii before ``min_radius``.
        check_inside: raise ValueError when a node lies outside the grid (a wrong unit or axis order is the
            usual cause), instead of silently clipping the trace.
    """

    def __init__(
        self,
        spatial_shape: Sequence[int],
        spacing: Sequence[float] | None = None,
        min_radius: float = 1.0,
        radius_scale: float = 1.0,
        check_inside: bool = True,
    ) -> None:
        self.spatial_shape, self.min_radius, self.radius_scale = check_raster_params(
            spatial_shape, min_radius, radius_scale
        )
        self.spacing = None if spacing is None else resolve_spacing(None, spacing, "SWCToMask")
        self.check_inside = check_inside

    def __call__(self, swc: np.ndarray, grid_mapping: np.ndarray | None = None, source: str = "SWC") -> np.ndarray:
        arr = validate_swc(swc, source)
        if self.check_inside and grid_mapping is None:
            check_swc_inside(arr, self.spatial_shape, source)
        mask, _ = rasterize_swc(
            arr, self.spatial_shape, self.spacing, self.min_radius, self.radius_scale, grid_mapping=grid_mapping
        )
        return mask[None].astype(np.uint8)


class SWCToMaskd(MapTransform):
    """Rasterise SWC arrays under ``keys`` onto the grid of ``ref_key`` (usually ``"image"``).

    The reference gives the shape (its last three dims), the spacing (its affine, unless ``spacing`` is given)
    and the meta of the output, a ``(1, D, H, W)`` uint8 MetaTensor when the reference is one. If the reference
    went through MONAI spatial transforms (crop, flip, rotate90), the SWC is mapped from the original grid onto
    the current one through ``inv(affine) @ original_affine``; nodes are then checked against the original
    ``spatial_shape``.

    Args:
        keys: SWC keys (arrays, e.g. from :class:`LoadSWCd`).
        ref_key: reference image key; when absent from the data, ``spatial_shape`` must be given.
        output_keys: where to store the masks (default ``"label"``).
        spatial_shape, spacing, min_radius, radius_scale, check_inside: see :class:`SWCToMask`.
        allow_missing_keys: skip absent SWC keys instead of raising.
    """

    def __init__(
        self,
        keys: KeysCollection = "swc",
        ref_key: str | None = "image",
        output_keys: KeysCollection | None = "label",
        spatial_shape: Sequence[int] | None = None,
        spacing: Sequence[float] | None = None,
        min_radius: float = 1.0,
        radius_scale: float = 1.0,
        check_inside: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_keys = output_keys_for(self.keys, output_keys, "mask")
        self.ref_key = ref_key
        self.spatial_shape, self.min_radius, self.radius_scale = check_raster_params(
            spatial_shape, min_radius, radius_scale
        )
        self.spacing = spacing
        self.check_inside = check_inside

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        ref = d.get(self.ref_key) if self.ref_key is not None else None
        if ref is None and self.spatial_shape is None:
            raise ValueError(f"SWCToMaskd: reference key {self.ref_key!r} is missing and no spatial_shape was given.")
        shape = tuple(int(s) for s in ref.shape[-3:]) if ref is not None else self.spatial_shape
        if ref is not None and len(ref.shape) < 4:
            raise ValueError(
                f"{describe_source(ref, str(self.ref_key))}: reference must be channel-first (C, D, H, W), "
                f"got shape {tuple(ref.shape)}; a 3D stack is needed."
            )
        spacing = resolve_spacing(ref, self.spacing, describe_source(ref, str(self.ref_key)))
        mapping = swc_grid_mapping(ref)
        identity = np.allclose(mapping, np.eye(4))
        for key, out in self.key_iterator(d, self.output_keys):
            meta = d.get(f"{key}_meta_dict") or {}
            source = str(meta.get("filename_or_obj", f"SWC under key {key!r}"))
            swc = validate_swc(d[key], source)
            if self.check_inside:
                original = None if ref is None else getattr(ref, "meta", {}).get("spatial_shape")
                grid = shape if identity else None
                if not identity and original is not None and len(np.asarray(original)) >= 3:
                    grid = tuple(int(s) for s in np.asarray(original)[-3:])
                if grid is not None:  # unknown original grid after a spatial transform: nothing to check against
                    check_swc_inside(swc, grid, f"{source} (grid of {describe_source(ref, str(self.ref_key))})")
            mask, _ = rasterize_swc(
                swc,
                shape,
                spacing,
                self.min_radius,
                self.radius_scale,
                grid_mapping=None if identity else mapping,
            )
            d[out] = wrap_like(mask[None].astype(np.uint8), ref)
        return d
