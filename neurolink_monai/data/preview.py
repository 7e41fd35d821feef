# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Maximum-intensity-projection previews of 3D stacks, with an optional translucent mask overlay or SWC trees drawn
on top, as PNG."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_write_bytes
from ..io.swc import swc_tree_index, validate_swc

__all__ = ["TREE_COLOURS", "draw_swc", "mip_preview", "save_mip_png"]

TREE_COLOURS = np.array(
    [
        [0.12, 0.47, 0.71, 1.0],
        [1.00, 0.50, 0.05, 1.0],
        [0.17, 0.63, 0.17, 1.0],
        [0.84, 0.15, 0.16, 1.0],
        [0.58, 0.40, 0.74, 1.0],
        [0.55, 0.34, 0.29, 1.0],
        [0.89, 0.47, 0.76, 1.0],
        [0.50, 0.50, 0.50, 1.0],
        [0.74, 0.74, 0.13, 1.0],
        [0.09, 0.75, 0.81, 1.0],
        [0.40, 0.76, 0.65, 1.0],
        [0.99, 0.75, 0.44, 1.0],
    ]
)
"""RGBA in [0, 1] of tree ``k`` (``TREE_COLOURS[k % 12]``, Tableau-like): in :func:`draw_swc`'s pictures and in the
napari plugin's layers, so a tree has one colour everywhere (the first blue, the second orange, the third green)."""


def _as_volume(x, name: str) -> np.ndarray:
    """``(D, H, W)`` numpy view of a numpy array or torch tensor shaped ``(D, H, W)`` or ``(1, D, H, W)``."""
    if hasattr(x, "detach"):  # torch.Tensor / MetaTensor without importing torch here
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}.")
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape (D, H, W) or (1, D, H, W), got {tuple(x.shape)}.")
    if x.size == 0:
        raise ValueError(f"{name} is empty, shape {tuple(x.shape)}.")
    return x


def mip_preview(
    image,
    mask=None,
    percentiles: tuple[float, float] = (0.5, 99.8),
    color: Sequence[int] = (255, 0, 255),
    alpha: float = 0.4,
) -> np.ndarray:
    """Percentile-normalised maximum-intensity projection along D, with ``mask`` overlaid in a translucent colour.

    Args:
        image: ``(D, H, W)`` or ``(1, D, H, W)`` array or tensor, any real dtype.
        mask: optional array of the same spatial shape; voxels ``> 0`` anywhere along D are tinted with ``color``.
        percentiles: intensities of the projection mapped to black and white.
        color: RGB of the overlay.
        alpha: opacity of the overlay in ``[0, 1]``.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.
    """
    vol = _as_volume(image, "image")
    lo_p, hi_p = percentiles
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}.")
    if len(color) != 3:
        raise ValueError(f"color must be an RGB triple, got {color!r}.")
    mip = vol.max(axis=0).astype(np.float64)
    if not np.all(np.isfinite(mip)):
        mip = np.nan_to_num(mip, nan=0.0, posinf=np.nanmax(mip[np.isfinite(mip)], initial=0.0), neginf=0.0)
    lo, hi = np.percentile(mip, [lo_p, hi_p])
    gray = np.clip((mip - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(mip)
    rgb = np.repeat(gray[..., None] * 255.0, 3, axis=-1)
    if mask is not None:
        m = _as_volume(mask, "mask")
        if m.shape != vol.shape:
            raise ValueError(f"mask shape {tuple(m.shape)} differs from image shape {tuple(vol.shape)}.")
        hit = (m > 0).any(axis=0)
        rgb[hit] = (1.0 - alpha) * rgb[hit] + alpha * np.asarray(color, dtype=np.float64)
    return np.rint(rgb).astype(np.uint8)


def draw_swc(
    rgb: np.ndarray, swc: np.ndarray, colors: Sequence[Sequence[int]] | None = None, thickness: int = 1
) -> np.ndarray:
    """Draw the edges of an SWC, projected along z, on a copy of an ``(H, W, 3)`` picture such as
    :func:`mip_preview`'s: tree ``i`` (roots numbered in file order, :func:`~neurolink_monai.io.swc_tree_index`) in
    ``colors[i % len(colors)]`` (RGB, 0-255; :data:`TREE_COLOURS` by default), lines ``2 thickness + 1`` pixels
    wide, the first tree on top, nodes outside the picture clipped.

    Args:
        rgb: ``(H, W, 3)`` uint8 picture.
        swc: ``(N, 7)`` SWC array in voxel coordinates (x, y index W, H).
        colors: RGB (0-255) per tree; None for :data:`TREE_COLOURS`.
        thickness: half-width of the lines in pixels, ``>= 0``.

    Returns:
        ``(H, W, 3)`` uint8 picture.
    """
    if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3):
        raise ValueError(f"rgb must be an (H, W, 3) array, got {getattr(rgb, 'shape', type(rgb).__name__)}.")
    if isinstance(thickness, bool) or not isinstance(thickness, int) or thickness < 0:
        raise ValueError(f"thickness must be an integer >= 0, got {thickness!r}.")
    if colors is None:
        colors = np.rint(TREE_COLOURS[:, :3] * 255).astype(np.uint8)
    if len(colors) == 0 or any(len(c) != 3 for c in colors):
        raise ValueError(f"colors must be a non-empty sequence of RGB triples, got {colors!r}.")
    out = rgb.copy()
    arr = validate_swc(swc, "SWC to draw")
    if len(arr) == 0:
        return out
    parent_row, tree = swc_tree_index(arr)
    child = np.flatnonzero(parent_row >= 0)
    start, end = arr[child, 2:4], arr[parent_row[child], 2:4]
    steps = np.ceil(np.abs(end - start).max(axis=1)).astype(np.int64) + 1
    edge = np.repeat(np.arange(len(child)), steps)
    t = (np.arange(len(edge)) - np.repeat(np.cumsum(steps) - steps, steps)) / np.repeat(np.maximum(steps - 1, 1), steps)
    xy = np.rint(start[edge] + t[:, None] * (end[edge] - start[edge])).astype(np.int64)
    xy = np.concatenate((xy, np.rint(arr[:, 2:4]).astype(np.int64)))  # every node too: a lone root shows
    which = np.concatenate((tree[child[edge]], tree))
    order = np.argsort(-which, kind="stable")  # the last tree first: the main tree ends on top where they cross
    xy, color = xy[order], np.asarray(colors, dtype=np.uint8)[which[order] % len(colors)]
    h, w = out.shape[:2]
    for dy in range(-thickness, thickness + 1):
        for dx in range(-thickness, thickness + 1):
            x, y = xy[:, 0] + dx, xy[:, 1] + dy
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            out[y[inside], x[inside]] = color[inside]
    return out


def save_mip_png(path: str | os.PathLike, image, mask=None, swc: np.ndarray | None = None, **kwargs) -> Path:
    """Write :func:`mip_preview` of ``image`` (and ``mask``) to ``path`` as PNG, atomically; returns the path.
    With ``swc`` (an ``(N, 7)`` SWC array in voxel coordinates) its trees are drawn on top (:func:`draw_swc`).

    The PNG is written to a temporary file in the destination folder, then moved over ``path`` with ``os.replace``,
    so readers never see a half-written file. ``kwargs`` go to :func:`mip_preview`.
    """
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"preview path must end with .png, got {str(path)!r}.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder of the preview {str(path)!r} does not exist.")
    rgb = mip_preview(image, mask, **kwargs)
    if swc is not None:
        rgb = draw_swc(rgb, swc)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())
