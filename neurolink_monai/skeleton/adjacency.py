# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Voxel adjacency shared by the continuity loss's centreline graph and the skeleton graph
(:class:`~neurolink_monai.skeleton.SkeletonGraph`): neighbour offsets, lookup of voxel coordinates, neighbour
tables, 26-neighbour (8 in 2D) edge lists, and the small undirected-graph helpers (canonical edge lists, degrees,
edge lengths, connected components) the graph is built on.

Every function works on integer voxel coordinates, vectorised with numpy: a voxel's neighbours are found by binary
search among the raster keys of the voxel set inside its bounding box, so no full-size lookup volume is built.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from neurolink_monai.utils import as_positive_int

__all__ = [
    "neighbour_offsets",
    "VoxelLookup",
    "neighbour_table",
    "neighbour_pairs",
    "canonical_edges",
    "node_degrees",
    "edge_lengths",
    "connected_components",
]


@functools.lru_cache(maxsize=None)
def _offsets(ndim: int, forward_only: bool) -> np.ndarray:
    origin = (0,) * ndim
    out = [o for o in itertools.product((-1, 0, 1), repeat=ndim) if o != origin and (not forward_only or o > origin)]
    arr = np.asarray(out, dtype=np.int64).reshape(-1, ndim)
    arr.setflags(write=False)
    return arr


def neighbour_offsets(ndim: int = 3, forward_only: bool = False) -> np.ndarray:
    """Offsets of the full-connectivity neighbourhood (26 in 3D, 8 in 2D), centre excluded, in
    ``itertools.product((-1, 0, 1), repeat=ndim)`` order.

    Args:
        ndim: number of spatial dimensions (>= 1).
        forward_only: only the offsets lexicographically after the origin (13 in 3D): each unordered pair of
            neighbouring voxels is then reached from exactly one of its two voxels.

    Returns:
        read-only ``(3**ndim - 1, ndim)`` int64 array, or ``((3**ndim - 1) // 2, ndim)`` with ``forward_only``.
    """
    return _offsets(as_positive_int(ndim, "ndim"), bool(forward_only))


def _as_coords(coords: np.ndarray, name: str, ndim: int | None = None) -> np.ndarray:
    arr = np.asarray(coords)
    if arr.size == 0:
        return np.zeros((0, ndim or (arr.shape[-1] if arr.ndim == 2 else 3)), dtype=np.int64)
    if arr.ndim != 2 or (ndim is not None and arr.shape[1] != ndim):
        want = "(N, ndim)" if ndim is None else f"(N, {ndim})"
        raise ValueError(f"{name} must be a {want} array of voxel coordinates, got shape {tuple(arr.shape)}.")
    if arr.dtype.kind not in "iub":
        raise TypeError(f"{name} must hold integer voxel coordinates, got dtype {arr.dtype}.")
    return arr.astype(np.int64, copy=False)


class VoxelLookup:
    """Row of given voxels in a set of distinct voxel coordinates.

    The voxels are keyed by their raster (C-order) index inside their bounding box and the keys sorted once;
    each query is then a binary search. Memory and time scale with the number of voxels, not with the volume.

    Args:
        coords: ``(N, ndim)`` integer voxel coordinates, all distinct (for a repeated voxel one of its rows is
            returned).

    Example::

        lookup = VoxelLookup(np.argwhere(skeleton))
        rows = lookup(path_voxels)  # -1 where a path voxel is not a skeleton voxel
    """

    def __init__(self, coords: np.ndarray) -> None:
        self.coords = _as_coords(coords, "coords")
        self.ndim = int(self.coords.shape[1])
        n = len(self.coords)
        if n == 0:
            self._lo = self._hi = np.zeros(self.ndim, dtype=np.int64)
            self._dims: tuple[int, ...] = (1,) * self.ndim
            self._keys = np.zeros(0, dtype=np.int64)
            self._order: np.ndarray | None = None
            return
        self._lo = self.coords.min(axis=0)
        self._hi = self.coords.max(axis=0)
        self._dims = tuple(int(d) for d in self._hi - self._lo + 1)
        keys = np.ravel_multi_index(tuple((self.coords - self._lo).T), self._dims).astype(np.int64)
        if n > 1 and not np.all(keys[1:] > keys[:-1]):  # raster-ordered input (np.argwhere) needs no sort
            self._order = np.argsort(keys, kind="stable")
            self._keys = keys[self._order]
        else:
            self._order = None
            self._keys = keys

    def __len__(self) -> int:
        return len(self.coords)

    def __call__(self, queries: np.ndarray) -> np.ndarray:
        """``(M,)`` int64 row in ``coords`` of each of the ``(M, ndim)`` query voxels, -1 for voxels not in the set."""
        q = _as_coords(queries, "queries", self.ndim)
        out = np.full(len(q), -1, dtype=np.int64)
        if len(q) == 0 or len(self._keys) == 0:
            return out
        inside = np.flatnonzero(np.all((q >= self._lo) & (q <= self._hi), axis=1))
        keys = np.ravel_multi_index(tuple((q[inside] - self._lo).T), self._dims)
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        hit = self._keys[pos] == keys
        rows = pos[hit] if self._order is None else self._order[pos[hit]]
        out[inside[hit]] = rows
        return out


def neighbour_table(coords: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """Neighbours of every voxel of a set among the voxels of the set.

    Args:
        coords: ``(N, ndim)`` distinct integer voxel coordinates.
        offsets: ``(K, ndim)`` integer offsets to look at; default :func:`neighbour_offsets` (all 26 / 8).

    Returns:
        ``(N, K)`` int64: ``table[i, k]`` is the row of the voxel ``coords[i] + offsets[k]``, or -1 when that voxel
        is not in the set.
    """
    lookup = VoxelLookup(coords)
    offs = neighbour_offsets(lookup.ndim) if offsets is None else _as_coords(offsets, "offsets", lookup.ndim)
    table = np.full((len(lookup), len(offs)), -1, dtype=np.int64)
    if len(lookup) == 0:
        return table
    for k, offset in enumerate(offs):
        table[:, k] = lookup(lookup.coords + offset)
    return table


def neighbour_pairs(coords: np.ndarray) -> np.ndarray:
    """Every pair of 26-neighbouring (8 in 2D) voxels of a set, each unordered pair once.

    Args:
        coords: ``(N, ndim)`` distinct integer voxel coordinates.

    Returns:
        ``(E, 2)`` int64 rows ``(i, j)`` with ``coords[j] - coords[i]`` one of the forward offsets
        (:func:`neighbour_offsets` with ``forward_only``), grouped by offset in that order, ``i`` ascending
        within an offset; when ``coords`` are in raster order, ``i < j`` in every row.
    """
    arr = _as_coords(coords, "coords")
    table = neighbour_table(arr, neighbour_offsets(arr.shape[1], forward_only=True))
    pairs = [np.stack([np.flatnonzero(column >= 0), column[column >= 0]], axis=1) for column in table.T]
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.concatenate(pairs, axis=0).astype(np.int64, copy=False)


def canonical_edges(edges: np.ndarray) -> np.ndarray:
    """Sort each pair, drop self-loops and duplicates, sort rows: a canonical undirected edge list ``(E, 2)``."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if len(edges) == 0:
        return edges
    edges = np.sort(edges, axis=1)
    edges = edges[edges[:, 0] != edges[:, 1]]
    return np.unique(edges, axis=0)


def node_degrees(edges: np.ndarray, n_nodes: int) -> np.ndarray:
    """``(n_nodes,)`` int64 number of edges at each node of an undirected ``(E, 2)`` edge list (each edge once)."""
    return np.bincount(np.asarray(edges, dtype=np.int64).reshape(-1), minlength=n_nodes).astype(np.int64)


def edge_lengths(
    points: np.ndarray, edges: np.ndarray, scale: Sequence[float] | np.ndarray | None = None
) -> np.ndarray:
    """``(E,)`` float64 Euclidean lengths of the edges between ``(N, ndim)`` points, each coordinate difference
    multiplied by ``scale`` (e.g. the voxel spacing) when given."""
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if len(edges) == 0:
        return np.zeros(0, dtype=np.float64)
    delta = (points[edges[:, 1]] - points[edges[:, 0]]).astype(np.float64)
    if scale is not None:
        delta *= np.asarray(scale, dtype=np.float64)
    return np.sqrt((delta * delta).sum(axis=1))


def connected_components(edges: np.ndarray, n_nodes: int) -> tuple[int, np.ndarray]:
    """Connected components of an undirected graph given by an ``(E, 2)`` edge list (either orientation, repeats
    allowed): ``(count, (n_nodes,) int64 component of each node)``."""
    if n_nodes == 0:
        return 0, np.zeros(0, dtype=np.int64)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    ones = np.ones(len(edges), dtype=np.float64)
    adjacency = sparse.csr_matrix((ones, (edges[:, 0], edges[:, 1])), shape=(n_nodes, n_nodes))
    count, labels = csgraph.connected_components(adjacency, directed=False)
    return int(count), labels.astype(np.int64)
