# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The skeleton graph of the package, shared by the metrics and the tracer: :class:`SkeletonGraph` (points joined by
undirected edges), its construction from SWC arrays (:func:`swc_to_graph`) and from skeleton voxels
(:func:`voxel_graph`, then :func:`spanning_forest`), and :func:`add_paths`, which grows a graph along voxel paths.

A skeleton of 26-connected voxels becomes a forest in two steps: :func:`voxel_graph` joins every pair of
26-neighbours, and :func:`spanning_forest` keeps the minimum spanning forest by edge length, which drops the
redundant diagonal of every small clique (junction clusters collapse to single branch voxels) and breaks true
loops, so that edge lengths sum to the skeleton length.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from neurolink_monai.utils import as_spacing, to_numpy

from .adjacency import VoxelLookup, canonical_edges, connected_components, edge_lengths, neighbour_pairs, node_degrees

__all__ = ["SkeletonGraph", "swc_to_graph", "voxel_graph", "spanning_forest", "add_paths"]


def _is_canonical(edges: np.ndarray, num_nodes: int) -> bool:
    """Whether an ``(E, 2)`` edge list already has ``a < b`` in every row and strictly increasing rows."""
    if len(edges) == 0:
        return True
    keys = edges[:, 0] * num_nodes + edges[:, 1]
    return bool(np.all(edges[:, 0] < edges[:, 1]) and np.all(keys[1:] > keys[:-1]))


@dataclass(frozen=True)
class SkeletonGraph:
    """An undirected graph of 3D points: a skeleton, a neuron reconstruction, or any forest of voxels.

    Attributes:
        points: ``(N, 3)`` node coordinates in array order ``(z, y, x)``, in grid units: int64 voxel indices for
            graphs of skeleton voxels (as the tracer indexes volumes with them), float64 otherwise (SWC nodes,
            resampled points).
        edges: ``(E, 2)`` int64 node-index pairs, each undirected edge once, no self loops. Repeated pairs (in
            either orientation) are dropped on construction, the first occurrence and its orientation kept
            (child -> parent for SWC input; ``a < b`` in lexicographic row order for voxel graphs).
        spacing: ``(3,)`` float64 length of one grid unit along ``(z, y, x)`` (a voxel size in micrometres, or the
            tracer's ``spacing / spacing[2]`` to measure in in-plane voxels); ``None`` for unit steps. Edge lengths,
            positions and spanning forests use it.

    Raises:
        ValueError: for points that are not ``(N, 3)``, edges that name nodes outside ``0 .. N - 1``, or a
            spacing that is not three positive numbers.
    """

    points: np.ndarray
    edges: np.ndarray
    spacing: np.ndarray | None = None

    def __post_init__(self) -> None:
        points = np.asarray(self.points)
        if points.size == 0:
            points = points.reshape(0, 3)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must be an (N, 3) array (z, y, x), got shape {tuple(points.shape)}.")
        dtype = np.int64 if points.dtype.kind in "iub" else np.float64
        points = np.ascontiguousarray(points, dtype=dtype)
        edges = np.asarray(self.edges, dtype=np.int64).reshape(-1, 2)
        if edges.size and (edges.min() < 0 or edges.max() >= len(points)):
            raise ValueError(f"edges refer to nodes outside 0..{len(points) - 1}: {edges.min()}..{edges.max()}.")
        if not _is_canonical(edges, len(points)):
            edges = edges[edges[:, 0] != edges[:, 1]]
            if len(edges):
                # drop repeated pairs in either orientation, keeping the first occurrence and its direction
                _, first = np.unique(np.sort(edges, axis=1), axis=0, return_index=True)
                edges = edges[np.sort(first)]
        spacing = None if self.spacing is None else as_spacing(self.spacing)
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "spacing", spacing)

    @property
    def num_nodes(self) -> int:
        return int(self.points.shape[0])

    def positions(self) -> np.ndarray:
        """``(N, 3)`` float64 node positions: ``points`` times ``spacing``."""
        pts = self.points.astype(np.float64)
        return pts if self.spacing is None else pts * self.spacing

    def scaled(self) -> SkeletonGraph:
        """The same graph with ``points`` in the units of ``spacing`` (e.g. voxel -> micrometre), spacing ``None``."""
        return self if self.spacing is None else SkeletonGraph(self.positions(), self.edges)

    def edge_lengths(self) -> np.ndarray:
        """``(E,)`` float64 Euclidean edge lengths, each coordinate difference multiplied by ``spacing``."""
        return edge_lengths(self.points, self.edges, self.spacing)

    def degrees(self) -> np.ndarray:
        """``(N,)`` int64 number of edges at each node."""
        return node_degrees(self.edges, self.num_nodes)

    def components(self) -> tuple[int, np.ndarray]:
        """Connected components: ``(count, (N,) component index per node)``."""
        return connected_components(self.edges, self.num_nodes)

    def adjacency(self) -> sparse.csr_matrix:
        """Symmetric ``(N, N)`` CSR matrix of edge lengths (all positive, so no edge is an explicit zero)."""
        n = self.num_nodes
        w = self.edge_lengths()
        rows = np.concatenate([self.edges[:, 0], self.edges[:, 1]])
        cols = np.concatenate([self.edges[:, 1], self.edges[:, 0]])
        return sparse.csr_matrix((np.concatenate([w, w]), (rows, cols)), shape=(n, n))

    def subgraph(self, keep: np.ndarray) -> SkeletonGraph:
        """The graph induced by the nodes where the ``(N,)`` bool ``keep`` is true (node order preserved; edges
        in canonical order, see :func:`~neurolink_monai.skeleton.canonical_edges`)."""
        keep = np.asarray(keep, dtype=bool)
        new_id = np.full(self.num_nodes, -1, dtype=np.int64)
        new_id[keep] = np.arange(int(keep.sum()))
        e = new_id[self.edges] if len(self.edges) else np.zeros((0, 2), dtype=np.int64)
        e = e[(e >= 0).all(axis=1)] if len(e) else e
        return SkeletonGraph(self.points[keep], canonical_edges(e), self.spacing)


def voxel_graph(coords: np.ndarray, spacing: Sequence[float] | np.ndarray | None = None) -> SkeletonGraph:
    """The graph of a set of voxels in which every pair of 26-neighbours is joined.

    Args:
        coords: ``(N, 3)`` distinct integer voxel coordinates ``(z, y, x)``, e.g. from
            :func:`~neurolink_monai.skeleton.thin_curves` with ``return_coords=True``.
        spacing: voxel size ``(z, y, x)`` (see :class:`SkeletonGraph`); ``None`` for isotropic unit voxels.

    Returns:
        a :class:`SkeletonGraph` with int64 points ``coords`` and canonical edges (``a < b``, rows sorted).
    """
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 3)
    edges = canonical_edges(neighbour_pairs(coords)) if len(coords) > 1 else np.zeros((0, 2), dtype=np.int64)
    return SkeletonGraph(coords, edges, spacing)


def spanning_forest(graph: SkeletonGraph) -> SkeletonGraph:
    """Minimum spanning forest of a graph by Euclidean edge length (scaled by ``graph.spacing``).

    On a 26-connected skeleton (:func:`voxel_graph`) this removes the redundant diagonal of every small clique (a
    diagonal step next to two face steps), so junction clusters collapse to single branch voxels; it also breaks
    true loops. Among edges of equal length the one listed first is preferred (a tie-break of ``1e-9 / E`` per
    position in ``graph.edges``), so the forest does not depend on scipy's internal sort.

    Returns:
        a :class:`SkeletonGraph` on the same points and spacing with canonical edges.
    """
    if len(graph.edges) == 0:
        return graph
    n = graph.num_nodes
    w = graph.edge_lengths()
    w = w + np.arange(len(w), dtype=np.float64) * (1e-9 / max(len(w), 1))
    mat = sparse.csr_matrix((w, (graph.edges[:, 0], graph.edges[:, 1])), shape=(n, n))
    mst = csgraph.minimum_spanning_tree(mat).tocoo()
    return SkeletonGraph(graph.points, canonical_edges(np.stack([mst.row, mst.col], axis=1)), graph.spacing)


def add_paths(graph: SkeletonGraph, paths: list[np.ndarray]) -> tuple[SkeletonGraph, list[np.ndarray]]:
    """Add voxel paths to a graph of voxels, joining consecutive path voxels by edges.

    Path voxels already in the graph are reused; the others become new nodes, numbered after the existing ones
    in order of first appearance, shared between paths that cross.

    Args:
        graph: the graph to extend (int64 voxel points).
        paths: ``(L_i, 3)`` int voxel paths ``(z, y, x)``, consecutive voxels 26-adjacent.

    Returns:
        ``(graph, ids)``: the extended graph (canonical edges) and, per path, the ``(L_i,)`` node index of each of
        its voxels.
    """
    paths = [np.asarray(p, dtype=np.int64).reshape(-1, 3) for p in paths]
    if not paths or sum(len(p) for p in paths) == 0:
        return graph, [np.zeros(0, dtype=np.int64) for _ in paths]
    coords, n = graph.points, graph.num_nodes
    pts = np.concatenate(paths, axis=0)
    ids = VoxelLookup(coords.reshape(-1, 3))(pts)
    fresh = ids < 0
    # new voxels, each once (lexicographic order), then numbered by first appearance along the paths
    new_voxels, first, inverse = np.unique(pts[fresh], axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(new_voxels), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(new_voxels))
    ids[fresh] = n + rank[inverse.ravel()]
    new_coords = np.empty((len(new_voxels), 3), dtype=np.int64)
    new_coords[rank] = new_voxels
    per_path = np.split(ids, np.cumsum([len(p) for p in paths])[:-1])
    new_edges = [np.stack([pid[:-1], pid[1:]], axis=1) for pid in per_path if len(pid) > 1]
    edges = canonical_edges(np.concatenate([graph.edges, *new_edges], axis=0))
    return SkeletonGraph(np.concatenate([coords, new_coords], axis=0), edges, graph.spacing), per_path


def _load_swc(swc: Any, name: str) -> np.ndarray:
    if isinstance(swc, (str, os.PathLike)):
        from neurolink_monai.io import read_swc  # local import: io is optional for array inputs

        swc = read_swc(swc)
    try:
        arr = to_numpy(swc).astype(np.float64, copy=False)
    except (TypeError, ValueError) as e:
        raise TypeError(
            f"{name} must be an (N, 7) SWC array or a path to an .swc file, got {type(swc).__name__}."
        ) from e
    if arr.ndim != 2 or arr.shape[1] != 7:
        raise ValueError(
            f"{name} must be an SWC array of shape (N, 7) with columns id, type, x, y, z, radius, parent; "
            f"got shape {tuple(arr.shape)}."
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name} has no nodes.")
    return arr


def _check_ids(arr: np.ndarray, name: str) -> None:
    bad_rows = np.flatnonzero(~np.isfinite(arr[:, [0, 2, 3, 4, 6]]).all(axis=1))
    if bad_rows.size:
        raise ValueError(f"{name} has non-finite id, coordinate or parent values in rows {bad_rows[:5].tolist()}.")
    for col, label in ((arr[:, 0], "ids"), (arr[:, 6], "parent ids")):
        frac = np.flatnonzero(col != np.round(col))
        if frac.size:
            raise ValueError(f"{name} has non-integer {label}, e.g. {col[frac[0]]!r} in row {int(frac[0])}.")


def swc_to_graph(swc: Any, name: str = "swc", spacing: Sequence[float] | None = None) -> SkeletonGraph:
    """Convert an SWC array into a :class:`SkeletonGraph` with points in (z, y, x) order, edges child-parent.

    Args:
        swc: (N, 7) array, columns id, type, x, y, z, radius, parent (parent < 0 marks a root), or a path to an
            ``.swc`` file (read with :func:`neurolink_monai.io.read_swc`). Nodes may come in any order.
        name: the argument name, used in error messages.
        spacing: the graph's ``spacing`` ``(z, y, x)``: the size of one SWC coordinate unit; ``None`` for 1.

    Raises:
        ValueError: for a wrong shape, non-finite coordinates, non-integer or duplicate ids, a node that is its own
            parent, or a parent id that no node has (Vaa3D silently links such nodes to the first node instead).
    """
    arr = _load_swc(swc, name)
    _check_ids(arr, name)
    ids, parents, xyz = arr[:, 0], arr[:, 6], arr[:, 2:5]
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if dup.size:
        raise ValueError(f"{name} has duplicate node ids, e.g. {int(sorted_ids[dup[0]])}.")
    child = np.flatnonzero(parents >= 0)
    pos = np.searchsorted(sorted_ids, parents[child])
    pos_clipped = np.minimum(pos, len(ids) - 1)
    missing = sorted_ids[pos_clipped] != parents[child]
    if missing.any():
        first = child[np.flatnonzero(missing)[0]]
        raise ValueError(
            f"{name}: node {int(ids[first])} has parent {int(parents[first])}, which is not a node id "
            f"({int(missing.sum())} node(s) with a missing parent)."
        )
    parent_idx = order[pos_clipped]
    self_loop = np.flatnonzero(parent_idx == child)
    if self_loop.size:
        raise ValueError(f"{name}: node {int(ids[child[self_loop[0]]])} is its own parent.")
    return SkeletonGraph(xyz[:, ::-1].copy(), np.stack([child, parent_idx], axis=1), spacing)
