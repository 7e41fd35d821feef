# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Morphologies from real SWC traces: placed, rotated and cropped into a synthetic volume.

``SyntheticConfig(swc_dir=DIR)`` (CLI ``--swc-dir DIR``) renders, instead of a random tree, one trace of ``DIR/*.swc``
per sample (voxel units, project convention; ``swc_spacing`` gives the voxel size the traces were made on). The trace
is scaled to the sample's voxel grid through physical units, rotated by a random angle about the z axis, randomly
flipped, shifted so that a random node lands in the central part of the volume, and cropped to the volume: nodes
outside are dropped and their children become roots of new trees, so the label covers exactly what is rendered.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...io import read_swc, sort_swc
from .geometry import swc_parent_index

__all__ = ["crop_swc", "list_swc_files", "load_swc_folder", "place_swc"]

_MIN_NODES = 10
_MIN_FRAGMENT = 3
_TRIES = 20


def list_swc_files(swc_dir: str | os.PathLike) -> list[Path]:
    """The ``*.swc`` files of ``swc_dir``, sorted by name.

    Raises:
        ValueError: the folder does not exist or holds no ``.swc`` file.
    """
    folder = Path(swc_dir).expanduser()
    if not folder.is_dir():
        raise ValueError(f"swc_dir {str(swc_dir)!r} is not a folder.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".swc" and p.is_file())
    if not files:
        raise ValueError(f"swc_dir {str(swc_dir)!r} holds no .swc file.")
    return files


@functools.lru_cache(maxsize=8)
def _load(paths: tuple[str, ...], mtimes: tuple[float, ...]) -> tuple[np.ndarray, ...]:
    trees = []
    for p in paths:
        swc = read_swc(p)
        if len(swc) < 2:
            raise ValueError(f"{p}: an SWC trace needs at least 2 nodes, got {len(swc)}.")
        trees.append(sort_swc(swc, p))
    return tuple(trees)


def load_swc_folder(swc_dir: str | os.PathLike) -> tuple[np.ndarray, ...]:
    """The traces of :func:`list_swc_files`, each sorted parents-first (cached while the files are unchanged)."""
    files = list_swc_files(swc_dir)
    return _load(tuple(str(p) for p in files), tuple(p.stat().st_mtime for p in files))


def crop_swc(swc: np.ndarray, shape: Sequence[int], min_fragment: int = _MIN_FRAGMENT) -> np.ndarray:
    """Keep the nodes inside ``[0, shape - 1]`` (voxel units); children of dropped nodes become roots.

    Fragments of fewer than ``min_fragment`` nodes are dropped too. Returns a parents-first SWC with ids ``1..N``
    (possibly empty, ``(0, 7)``).
    """
    zyx = swc[:, [4, 3, 2]]
    inside = np.all((zyx >= 0) & (zyx <= np.asarray(shape, float) - 1), axis=1)
    parent = swc_parent_index(swc)
    kept = swc[inside].copy()
    if len(kept) == 0:
        return np.zeros((0, 7))
    par_row = parent[inside]
    par_inside = (par_row >= 0) & inside[np.maximum(par_row, 0)]
    kept[:, 6] = np.where(par_inside, swc[np.maximum(par_row, 0), 0], -1)
    kept = sort_swc(kept, "cropped SWC")
    # Drop small fragments: tree sizes from the roots (rows are parents-first and trees contiguous).
    roots = np.flatnonzero(kept[:, 6] == -1)
    sizes = np.diff(np.append(roots, len(kept)))
    keep_rows = np.concatenate([np.arange(r, r + n) for r, n in zip(roots, sizes) if n >= min_fragment] or [[]])
    if len(keep_rows) == 0:
        return np.zeros((0, 7))
    return sort_swc(kept[keep_rows.astype(int)], "cropped SWC")


def place_swc(
    trees: Sequence[np.ndarray],
    shape: Sequence[int],
    rng: np.random.Generator,
    spacing: Sequence[float],
    swc_spacing: Sequence[float] | None = None,
    min_radius: float = 0.5,
) -> np.ndarray:
    """One of ``trees`` placed into a volume of ``shape`` with voxel ``spacing``, as a parents-first SWC array.

    Args:
        trees: SWC arrays in voxel units of their own stacks.
        shape: volume shape ``(D, H, W)``.
        rng: random generator (tree, angle, flips, anchor node and position).
        spacing: voxel size ``(z, y, x)`` of the volume.
        swc_spacing: voxel size ``(z, y, x)`` of the traces; defaults to ``spacing``.
        min_radius: radii below it (x voxels of the volume) are raised to it.

    Raises:
        ValueError: after several tries no placement kept at least 10 nodes inside the volume.
    """
    tgt = np.asarray(spacing, float)
    src = tgt if swc_spacing is None else np.asarray(swc_spacing, float)
    shape_arr = np.asarray(shape, float)
    best = np.zeros((0, 7))
    for _ in range(_TRIES):
        tree = trees[int(rng.integers(len(trees)))]
        phys = tree[:, [4, 3, 2]] * src  # (z, y, x) physical
        angle = rng.uniform(0.0, 2 * np.pi)
        c, s = np.cos(angle), np.sin(angle)
        y, x = phys[:, 1] * c - phys[:, 2] * s, phys[:, 1] * s + phys[:, 2] * c
        phys = np.stack([phys[:, 0], y, x], axis=1) * np.where(rng.uniform(size=3) < 0.5, -1.0, 1.0)
        vox = phys / tgt
        anchor = vox[int(rng.integers(len(vox)))]
        vox += rng.uniform(0.3, 0.7, 3) * (shape_arr - 1) - anchor
        placed = tree.copy()
        placed[:, 2], placed[:, 3], placed[:, 4] = vox[:, 2], vox[:, 1], vox[:, 0]
        placed[:, 5] = np.maximum(tree[:, 5] * src[2] / tgt[2], min_radius)
        cropped = crop_swc(placed, shape)
        if len(cropped) > len(best):
            best = cropped
        if len(best) >= _MIN_NODES:
            break
    if len(best) < _MIN_NODES:
        raise ValueError(
            f"could not place any SWC trace with at least {_MIN_NODES} nodes inside a volume of shape {tuple(shape)}."
        )
    best[:, 2:6] = np.round(best[:, 2:6], 4)
    return best
