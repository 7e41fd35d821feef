# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Direction-map target: the local neurite direction as a 3-channel unit vector field (NeuroLink's direction
head, Yan et al., MICCAI 2024).

Layout and conventions:

* ``(3, D, H, W)`` float32; channels are the ``(z, y, x)`` components of a unit vector **in voxel index space**
  (a step of ``v`` moves ``v_z`` slices, ``v_y`` rows, ``v_x`` columns), so flips and 90-degree rotations of the
  array act on it by negating and permuting components (:func:`flip_direction_map`,
  :func:`rotate90_direction_map`).
* Non-zero only inside a band around the neurite, zero outside (and where the direction is undefined, e.g. an
  isolated single-node tree).
* A direction has no sign. **Canonical sign**: ``v_z > 0``; if ``|v_z| <= 1e-6`` then ``v_y > 0``; if also
  ``|v_y| <= 1e-6`` then ``v_x > 0`` (:func:`canonicalize_direction`). Any such rule must jump somewhere
  (e.g. for in-plane neurites at ``v_y ~ 0``), so losses on this target must be sign-invariant.

Two sources:

* **SWC** (:func:`direction_map_from_swc`): each voxel within ``radius + band_margin`` of an edge gets the
  direction of its nearest edge (child to parent), radii as in :class:`~neurolink_monai.transforms.SWCToMask`.
* **Label** (:func:`direction_map_from_label`), for masks without a trace, or computed after spatial
  augmentation: the centreline is taken as the ridge of the mask's distance transform (voxels whose EDT is a
  local maximum over their 26 neighbours); each ridge voxel gets the principal axis (PCA about the ridge voxel,
  i.e. the local principal direction) of the foreground voxels within ``pca_radius + 2 * EDT``, weighted by
  their EDT; its weight is how elongated that neighbourhood is, ``(l1 - l2) / l1``;
  the band voxels (the mask dilated by ``band_margin``) then take the principal eigenvector of the
  Gaussian-weighted (``sigma``) average of the nearby ridge tensors ``v v^T``. Every step is symmetric under
  flips and 90-degree rotations, so the result commutes with them (up to the sign convention).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from ..utils import describe_source, to_numpy
from ._utils import (
    normalised_spacing,
    output_keys_for,
    resolve_spacing,
    swc_grid_mapping,
    to_numpy_volume,
    wrap_like,
)
from .direction_sign import canonicalize_direction
from .distance import mask_distance_transform
from .swc_raster import rasterize_swc

__all__ = [
    "DirectionMap",
    "DirectionMapd",
    "canonicalize_direction",
    "direction_map_from_label",
    "direction_map_from_swc",
    "apply_component_map",
    "flip_components",
    "flip_direction_map",
    "rotate90_components",
    "rotate90_direction_map",
]


def _as_numpy_field(direction: Any) -> np.ndarray:
    v = to_numpy(direction)
    if v.ndim != 4 or v.shape[0] != 3:
        raise ValueError(f"direction map must be (3, D, H, W), got shape {tuple(v.shape)}.")
    return v


def _flip_axes(spatial_axis: int | Sequence[int]) -> list[int]:
    """The spatial axes (0..2) of a MONAI ``Flip(spatial_axis)``, negative ones wrapped."""
    axes = [spatial_axis] if isinstance(spatial_axis, int) else list(spatial_axis)
    for ax in axes:
        if ax not in (0, 1, 2, -1, -2, -3):
            raise ValueError(f"spatial_axis must be in 0..2 (D, H, W), got {spatial_axis!r}.")
    return [ax % 3 for ax in axes]


def _rotation_plane(spatial_axes: Sequence[int]) -> tuple[int, int]:
    """The two distinct spatial axes (0..2) of a ``Rotate90(k, spatial_axes)``."""
    if len(spatial_axes) != 2:
        raise ValueError(f"spatial_axes must be two distinct axes in 0..2, got {spatial_axes!r}.")
    a, b = (int(s) % 3 for s in spatial_axes)
    if a == b:
        raise ValueError(f"spatial_axes must be two distinct axes in 0..2, got {spatial_axes!r}.")
    return a, b


def _flip(v: np.ndarray, axis: int) -> np.ndarray:
    v = np.flip(v, axis + 1).copy()
    v[axis] *= -1
    return v


def _swap(v: np.ndarray, a: int, b: int) -> np.ndarray:
    v = np.swapaxes(v, a + 1, b + 1)
    order = [0, 1, 2]
    order[a], order[b] = order[b], order[a]
    return np.ascontiguousarray(v[order])


def flip_components(spatial_axis: int | Sequence[int]) -> np.ndarray:
    """3x3 matrix acting on (z, y, x) vector components for a flip of the given spatial axes."""
    m = np.eye(3)
    for ax in _flip_axes(spatial_axis):
        m[ax, ax] *= -1
    return m


def rotate90_components(k: int = 1, spatial_axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """3x3 matrix acting on (z, y, x) vector components for ``np.rot90(k, axes)`` of the spatial axes."""
    a, b = _rotation_plane(spatial_axes)
    m = np.eye(3)
    k = int(k) % 4
    if k == 1:  # v'_a = -v_b, v'_b = v_a
        m[[a, b]] = 0
        m[a, b], m[b, a] = -1, 1
    elif k == 2:
        m[a, a], m[b, b] = -1, -1
    elif k == 3:  # v'_a = v_b, v'_b = -v_a
        m[[a, b]] = 0
        m[a, b], m[b, a] = 1, -1
    return m


def apply_component_map(direction: Any, matrix: np.ndarray) -> Any:
    """Apply a 3x3 component matrix to a ``(3, ...)`` field and re-canonicalise; keeps the input's type/meta."""
    if isinstance(direction, torch.Tensor):
        mat = torch.as_tensor(matrix, dtype=direction.dtype, device=direction.device)
        out = torch.einsum("ij,j...->i...", mat, direction)
        if isinstance(direction, MetaTensor):
            out = MetaTensor(out, meta=dict(direction.meta))
            out.applied_operations = list(direction.applied_operations)
        res = canonicalize_direction(to_numpy(out))
        return wrap_like(res, out)
    v = np.asarray(direction)
    return canonicalize_direction(np.einsum("ij,j...->i...", matrix, v).astype(v.dtype, copy=False))


def flip_direction_map(direction: Any, spatial_axis: int | Sequence[int]) -> Any:
    """Flip a ``(3, D, H, W)`` direction map like ``monai.transforms.Flip(spatial_axis)`` flips an image.

    The field is flipped along the spatial axes and the matching vector components are negated; the result is
    re-canonicalised. Returns the input's type (a MetaTensor keeps its meta, not updated).
    """
    v = _as_numpy_field(direction)
    for ax in _flip_axes(spatial_axis):
        v = _flip(v, ax)
    return wrap_like(canonicalize_direction(v), direction)


def rotate90_direction_map(direction: Any, k: int = 1, spatial_axes: tuple[int, int] = (0, 1)) -> Any:
    """Rotate a ``(3, D, H, W)`` direction map like ``monai.transforms.Rotate90(k, spatial_axes)`` (``np.rot90``).

    The field is rotated and its components in the rotation plane are permuted/negated; re-canonicalised.
    """
    v = _as_numpy_field(direction)
    a, b = _rotation_plane(spatial_axes)
    k = int(k) % 4
    if k == 1:  # np.rot90: transpose(flip(m, b))
        v = _swap(_flip(v, b), a, b)
    elif k == 2:
        v = _flip(_flip(v, a), b)
    elif k == 3:  # np.rot90: flip(transpose(m), b)
        v = _flip(_swap(v, a, b), b)
    return wrap_like(canonicalize_direction(v), direction)


def direction_map_from_swc(
    swc: np.ndarray,
    spatial_shape: Sequence[int],
    spacing: Sequence[float] | None = None,
    band_margin: float = 1.0,
    min_radius: float = 1.0,
    radius_scale: float = 1.0,
    grid_mapping: np.ndarray | None = None,
) -> np.ndarray:
    """``(3, D, H, W)`` float32 canonical direction map from an SWC in voxel units (see module docstring)."""
    _, direction = rasterize_swc(
        swc, spatial_shape, spacing, min_radius, radius_scale, direction_margin=band_margin, grid_mapping=grid_mapping
    )
    return direction


def _ridge(mask: np.ndarray, edt: np.ndarray) -> np.ndarray:
    """Foreground voxels whose EDT is >= all 26 neighbours (outside the array counts as 0)."""
    fg = np.argwhere(mask)
    padded = np.pad(edt, 1)
    value = edt[fg[:, 0], fg[:, 1], fg[:, 2]]
    is_max = np.ones(len(fg), dtype=bool)
    p = fg + 1
    for dz in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dz == dy == dx == 0:
                    continue
                is_max &= value >= padded[p[:, 0] + dz, p[:, 1] + dy, p[:, 2] + dx]
    return fg[is_max]


def _principal(t6: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal eigenvectors (N, 3) and coherence (l1 - l2) / l1 of symmetric tensors given as 6 components."""
    t = np.empty((len(t6), 3, 3))
    t[:, 0, 0], t[:, 1, 1], t[:, 2, 2] = t6[:, 0], t6[:, 1], t6[:, 2]
    t[:, 0, 1] = t[:, 1, 0] = t6[:, 3]
    t[:, 0, 2] = t[:, 2, 0] = t6[:, 4]
    t[:, 1, 2] = t[:, 2, 1] = t6[:, 5]
    w, vec = np.linalg.eigh(t)
    lead = vec[:, :, 2]
    coherence = np.divide(w[:, 2] - w[:, 1], w[:, 2], out=np.zeros(len(w)), where=w[:, 2] > 1e-12)
    return lead, coherence


def _outer6(v: np.ndarray) -> np.ndarray:
    return np.stack(
        [v[:, 0] ** 2, v[:, 1] ** 2, v[:, 2] ** 2, v[:, 0] * v[:, 1], v[:, 0] * v[:, 2], v[:, 1] * v[:, 2]], 1
    )


def direction_map_from_label(
    label: np.ndarray,
    spacing: Sequence[float] | None = None,
    band_margin: float = 1.0,
    pca_radius: float = 2.0,
    sigma: float = 1.5,
) -> np.ndarray:
    """``(3, D, H, W)`` float32 canonical direction map from a ``(D, H, W)`` mask (see module docstring).

    Args:
        label: mask, non-zero is foreground.
        spacing: voxel size ``(z, y, x)`` (ratios matter); ``None``: isotropic.
        band_margin: band = mask dilated by this many x-voxels (physical distance).
        pca_radius: neighbourhood radius (x-voxels) of the PCA, added to twice the local EDT.
        sigma: Gaussian width (x-voxels) used to spread ridge directions to the band.
    """
    mask = np.asarray(label) != 0
    if mask.ndim != 3:
        raise ValueError(f"label must be (D, H, W), got shape {mask.shape}.")
    for name, val, lo in (("band_margin", band_margin, 0.0), ("pca_radius", pca_radius, 1.0), ("sigma", sigma, 0.3)):
        if not (np.isfinite(val) and val >= lo):
            raise ValueError(f"{name} must be a finite number >= {lo}, got {val!r}.")
    sp = normalised_spacing(np.ones(3) if spacing is None else np.asarray(spacing, dtype=np.float64))
    out = np.zeros((3, *mask.shape), dtype=np.float32)
    if not mask.any():
        return out
    # work on the bounding box of the band
    reach = np.ceil(band_margin / sp).astype(int)
    nz = np.argwhere(mask)
    lo = np.maximum(nz.min(0) - reach - 1, 0)
    hi = np.minimum(nz.max(0) + reach + 2, mask.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    m = mask[box]
    if m.all():
        raise ValueError(f"the label of shape {mask.shape} is foreground everywhere; no neurite to orient.")
    edt = mask_distance_transform(m, sp)
    ridge = _ridge(m, edt)
    rp = ridge * sp
    # PCA about each ridge voxel of the foreground voxels within pca_radius + 2 * EDT (so the ball is longer
    # than the neurite is wide), weighted by their EDT to favour the centre
    fg = np.argwhere(m)
    fgp = fg * sp
    w_fg = edt[fg[:, 0], fg[:, 1], fg[:, 2]].astype(np.float64)
    radius = pca_radius + 2.0 * edt[ridge[:, 0], ridge[:, 1], ridge[:, 2]].astype(np.float64)
    pairs = cKDTree(rp).sparse_distance_matrix(cKDTree(fgp), float(radius.max()), output_type="ndarray")
    pairs = pairs[pairs["v"] <= radius[pairs["i"]]]
    o6 = _outer6(fgp[pairs["j"]] - rp[pairs["i"]]) * w_fg[pairs["j"], None]
    t6 = np.stack([np.bincount(pairs["i"], o6[:, c], len(ridge)) for c in range(6)], axis=1)
    lead_phys, coherence = _principal(t6)
    lead = lead_phys / sp  # physical -> voxel index space
    lead /= np.maximum(np.linalg.norm(lead, axis=1, keepdims=True), 1e-12)

    # band: mask dilated by band_margin (physical ball)
    offs = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    ball = np.zeros(tuple(2 * reach + 1), dtype=bool)
    inside = np.sqrt(((offs * sp) ** 2).sum(1)) <= band_margin + 1e-9
    ball[tuple((offs[inside] + reach).T)] = True
    band = ndi.binary_dilation(m, structure=ball) if band_margin > 0 else m
    bidx = np.argwhere(band)
    # Gaussian spread of the ridge tensors; truncate so the kernel reaches every band voxel
    near = cKDTree(rp).query(bidx * sp, k=1)[0]
    truncate = (float(near.max()) + 1.0) / sigma
    sig = sigma / sp
    field = np.zeros((6, *m.shape), dtype=np.float64)
    w6 = _outer6(lead) * coherence[:, None]
    for c in range(6):
        field[c][tuple(ridge.T)] = w6[:, c]
        field[c] = ndi.gaussian_filter(field[c], sig, truncate=truncate, mode="constant")
    vec = canonicalize_direction(_principal(field[:, bidx[:, 0], bidx[:, 1], bidx[:, 2]].T)[0].T).T
    defined = np.abs(field[:3, bidx[:, 0], bidx[:, 1], bidx[:, 2]]).sum(0) > 1e-12
    sub = np.zeros((3, *m.shape), dtype=np.float32)
    sub[:, bidx[defined, 0], bidx[defined, 1], bidx[defined, 2]] = vec[defined].T
    out[(slice(None), *box)] = sub
    return out


class DirectionMap(Transform):
    """Direction-map target ``(3, D, H, W)`` float32 on the grid of a ``(1, D, H, W)`` label.

    ``__call__(label, swc=None)``: with an SWC (voxel units of the original image) the SWC path is used and the
    label only provides the grid (shape, spacing and, for a MetaTensor moved by MONAI spatial transforms, the
    mapping from the original grid); without one the label's own centreline is used. See the module docstring
    for the layout, the band and the canonical sign.

    Args:
        spacing: voxel size ``(z, y, x)``; ``None`` reads a MetaTensor's affine, else isotropic.
        band_margin: band half-width beyond the neurite surface (x voxels).
        min_radius, radius_scale: SWC radius handling, as in :class:`SWCToMask`.
        pca_radius, sigma: label path parameters, see :func:`direction_map_from_label`.
    """

    def __init__(
        self,
        spacing: Sequence[float] | None = None,
        band_margin: float = 1.0,
        min_radius: float = 1.0,
        radius_scale: float = 1.0,
        pca_radius: float = 2.0,
        sigma: float = 1.5,
    ) -> None:
        self.spacing = spacing
        self.band_margin = float(band_margin)
        self.min_radius = float(min_radius)
        self.radius_scale = float(radius_scale)
        self.pca_radius = float(pca_radius)
        self.sigma = float(sigma)

    def __call__(self, label: Any, swc: np.ndarray | None = None) -> Any:
        arr = to_numpy_volume(label, "label", channels=1)
        src = describe_source(label, "label")
        sp = resolve_spacing(label, self.spacing, src)
        if swc is not None:
            out = direction_map_from_swc(
                swc,
                arr.shape[1:],
                sp,
                self.band_margin,
                self.min_radius,
                self.radius_scale,
                grid_mapping=swc_grid_mapping(label),
            )
        else:
            try:
                out = direction_map_from_label(arr[0], sp, self.band_margin, self.pca_radius, self.sigma)
            except ValueError as e:
                raise ValueError(f"{src}: {e}") from e
        return wrap_like(out, label)


class DirectionMapd(MapTransform):
    """Dictionary version of :class:`DirectionMap`.

    Args:
        keys: label keys giving the grid (and the centreline when there is no SWC).
        output_keys: where to store the maps (default ``"direction"``).
        swc_key: key of an ``(N, 7)`` SWC array; when present (and not None) the SWC path is used, otherwise the
            label path. Set None to always use the label (e.g. after augmentations that the SWC cannot follow).
        spacing, band_margin, min_radius, radius_scale, pca_radius, sigma: see :class:`DirectionMap`.
        allow_missing_keys: skip absent label keys instead of raising.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        output_keys: KeysCollection | None = "direction",
        swc_key: str | None = "swc",
        spacing: Sequence[float] | None = None,
        band_margin: float = 1.0,
        min_radius: float = 1.0,
        radius_scale: float = 1.0,
        pca_radius: float = 2.0,
        sigma: float = 1.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_keys = output_keys_for(self.keys, output_keys, "direction")
        self.swc_key = swc_key
        self.transform = DirectionMap(spacing, band_margin, min_radius, radius_scale, pca_radius, sigma)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        swc = d.get(self.swc_key) if self.swc_key is not None else None
        for key, out in self.key_iterator(d, self.output_keys):
            d[out] = self.transform(d[key], swc)
        return d
