# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""SWC geometry shared by the synthetic renderer and the SNR measure: parent rows and dense centreline samples.

SWC arrays follow the project convention: float64 ``(N, 7)`` with columns ``id, type, x, y, z, radius, parent``,
coordinates in 0-based voxel units with ``x -> W``, ``y -> H``, ``z -> D`` and radii in voxels of the x axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...io.swc import swc_parent_index
from ...utils import as_spacing

__all__ = ["spacing_ratio", "swc_parent_index", "swc_zyx", "sample_centreline"]


def spacing_ratio(spacing: Sequence[float] | None) -> np.ndarray:
    """``spacing / spacing[2]``: the voxel size ``(z, y, x)`` in units of the x voxel (ones when ``None``).

    Raises:
        ValueError: ``spacing`` is not 3 positive finite numbers.
    """
    sp = as_spacing(spacing, allow_none=True)
    return sp / sp[2]


def swc_zyx(swc: np.ndarray) -> np.ndarray:
    """Node coordinates ``(N, 3)`` in array order ``(z, y, x)``, voxel units."""
    return swc[:, [4, 3, 2]]


def sample_centreline(
    swc: np.ndarray, spacing: Sequence[float] | None = None, step: float = 0.5, skip_soma: bool = False
) -> dict[str, np.ndarray]:
    """Points spaced at most ``step`` voxels (on every axis) along every parent-child segment of ``swc``.

    Args:
        swc: ``(N, 7)`` SWC array in voxel units.
        spacing: voxel size ``(z, y, x)``; lengths are measured in x-voxel units after scaling z and y by it.
        step: largest spacing of consecutive samples along any array axis, in voxels.
        skip_soma: leave out segments whose parent is a soma node (SWC type 1); they lie inside the soma.

    Returns:
        ``zyx`` (M, 3) voxel coordinates, ``radius`` (M,), ``length`` (M,) centreline length each sample stands
        for (x-voxel units), ``child``/``parent`` (M,) row indices of the segment's nodes and ``t`` (M,) the
        position along it (0 at the parent).
    """
    if step <= 0:
        raise ValueError(f"step must be > 0, got {step}.")
    a = spacing_ratio(spacing)
    parent = swc_parent_index(swc)
    child = np.flatnonzero(parent >= 0)
    par = parent[child]
    if skip_soma:
        keep = swc[par, 1] != 1
        child, par = child[keep], par[keep]
    zyx = swc_zyx(swc)
    delta = zyx[child] - zyx[par]
    seg_len = np.linalg.norm(delta * a, axis=1)
    n = np.maximum(np.ceil(np.abs(delta).max(axis=1, initial=0.0) / step).astype(np.int64), 1)
    seg = np.repeat(np.arange(child.size), n)
    first = np.cumsum(n) - n
    t = (np.arange(seg.size) - first[seg] + 0.5) / n[seg]
    r0, r1 = swc[par, 5], swc[child, 5]
    return {
        "zyx": zyx[par][seg] + t[:, None] * delta[seg],
        "radius": r0[seg] + t * (r1 - r0)[seg],
        "length": (seg_len / n)[seg],
        "child": child[seg],
        "parent": par[seg],
        "t": t,
    }
