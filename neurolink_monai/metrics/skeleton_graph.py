# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""A minimal undirected skeleton graph used by the tree metrics: building it from SWC arrays and voxel skeletons,
and resampling it to a fixed step along its unbranched sections."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from neurolink_monai.metrics._validation import as_binary_mask
from neurolink_monai.skeleton import connected_components, edge_lengths, neighbour_pairs, node_degrees, thin_curves
from neurolink_monai.utils import as_positive_float, as_spacing, to_numpy

__all__ = ["SkeletonGraph", "swc_to_graph", "mask_skeleton", "skeleton_to_graph", "resample_graph", "subdivide_graph"]


@dataclass(frozen=True)
class SkeletonGraph:
    """An undirected graph of 3D points.

    Attributes:
        points: (N, 3) float64 node coordinates in array order (z, y, x), voxel units unless scaled.
        edges: (E, 2) int64 node-index pairs, each undirected edge stored once (in its first given orientation,
            child -> parent for SWC input), no self loops.
    """

    points: np.ndarray
    edges: np.ndarray

    def __post_init__(self) -> None:
        points = np.ascontiguousarray(self.points, dtype=np.float64).reshape(-1, 3)
        edges = np.asarray(self.edges, dtype=np.int64).reshape(-1, 2)
        if edges.size and (edges.min() < 0 or edges.max() >= len(points)):
            raise ValueError(f"edges refer to nodes outside 0..{len(points) - 1}.")
        edges = edges[edges[:, 0] != edges[:, 1]]
        if len(edges):
            # drop repeated pairs in either orientation, keeping the first occurrence and its direction
            _, first = np.unique(np.sort(edges, axis=1), axis=0, return_index=True)
            edges = edges[np.sort(first)]
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "edges", edges)

    @property
    def num_nodes(self) -> int:
        return len(self.points)

    def scaled(self, spacing: Sequence[float] | None) -> SkeletonGraph:
        """The same graph with coordinates multiplied by ``spacing`` (z, y, x), e.g. voxel -> micrometre."""
        if spacing is None:
            return self
        return SkeletonGraph(self.points * as_spacing(spacing), self.edges)

    def edge_lengths(self, spacing: Sequence[float] | None = None) -> np.ndarray:
        """(E,) Euclidean edge lengths, in physical units when ``spacing`` (z, y, x) is given."""
        return edge_lengths(self.points, self.edges, None if spacing is None else as_spacing(spacing))

    def degrees(self) -> np.ndarray:
        """(N,) number of edges at each node."""
        return node_degrees(self.edges, self.num_nodes)

    def components(self) -> tuple[int, np.ndarray]:
        """Connected components: ``(count, (N,) component index per node)``."""
        return connected_components(self.edges, self.num_nodes)


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


def swc_to_graph(swc: Any, name: str = "swc") -> SkeletonGraph:
    """Convert an SWC array into a :class:`SkeletonGraph` with points in (z, y, x) order, edges child-parent.

    Args:
        swc: (N, 7) array, columns id, type, x, y, z, radius, parent (parent < 0 marks a root), or a path to an
            ``.swc`` file (read with :func:`neurolink_monai.io.read_swc`). Nodes may come in any order.
        name: the argument name, used in error messages.

    Raises:
        ValueError: for a wrong shape, non-finite coordinates, non-integer or duplicate ids, a node that is its own
            parent, or a parent id that no node has (Vaa3D silently links such nodes to the first node instead).
    """
    arr = _load_swc(swc, name)
    ids, parents, xyz = arr[:, 0], arr[:, 6], arr[:, 2:5]
    bad_rows = np.flatnonzero(~np.isfinite(arr[:, [0, 2, 3, 4, 6]]).all(axis=1))
    if bad_rows.size:
        raise ValueError(f"{name} has non-finite id, coordinate or parent values in rows {bad_rows[:5].tolist()}.")
    for col, label in ((ids, "ids"), (parents, "parent ids")):
        frac = np.flatnonzero(col != np.round(col))
        if frac.size:
            raise ValueError(f"{name} has non-integer {label}, e.g. {col[frac[0]]!r} in row {int(frac[0])}.")
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
    return SkeletonGraph(points=xyz[:, ::-1].copy(), edges=np.stack([child, parent_idx], axis=1))


def mask_skeleton(mask: np.ndarray) -> np.ndarray:
    """Bool skeleton of a bool (H, W) or (D, H, W) mask: its topology-preserving curve thinning
    (:func:`neurolink_monai.skeleton.thin_curves`), one voxel wide, with one connected piece per connected
    component of the mask, so a non-empty mask always has a non-empty skeleton and no neurite loses its centreline
    (scikit-image's 3D ``skeletonize`` can delete even-width neurites and small blobs entirely)."""
    return thin_curves(mask)


def skeleton_to_graph(skeleton: Any, spacing: Sequence[float] | None = None) -> SkeletonGraph:
    """Turn a one-voxel-thin 3D skeleton mask into a forest of voxel-centre nodes.

    Every foreground voxel becomes a node at its index (z, y, x); 26-neighbouring voxels are joined, then a minimum
    spanning forest (edge weights = physical lengths when ``spacing`` is given) drops the redundant short-cut edges
    that 26-adjacency creates at corners and junctions, so edge lengths sum to the skeleton length. A true loop of
    the skeleton loses one edge, so the result is always a forest.

    Args:
        skeleton: (D, H, W) binary skeleton, e.g. from :func:`mask_skeleton`.
        spacing: voxel size (z, y, x) used for the edge weights; ``None`` for isotropic voxels.
    """
    mask = as_binary_mask(skeleton, "skeleton", ndims=(3,))
    coords = np.argwhere(mask).astype(np.int64)
    pairs = neighbour_pairs(coords)
    n = len(coords)
    if len(pairs) == 0:
        return SkeletonGraph(points=coords.astype(np.float64), edges=np.empty((0, 2), np.int64))
    w = edge_lengths(coords, pairs, as_spacing(spacing, allow_none=True))
    mst = csgraph.minimum_spanning_tree(sparse.csr_matrix((w, (pairs[:, 0], pairs[:, 1])), shape=(n, n))).tocoo()
    return SkeletonGraph(points=coords.astype(np.float64), edges=np.stack([mst.row, mst.col], axis=1))


def _sections(graph: SkeletonGraph) -> list[np.ndarray]:
    """Split a graph into unbranched sections: node paths whose end nodes have degree != 2 (tips, branch points)
    and whose inner nodes have degree 2. A component that is a pure cycle starts and ends at one chosen node."""
    n, edges = graph.num_nodes, graph.edges
    deg = graph.degrees()
    key = deg != 2
    ncomp, comp = graph.components()
    has_key = np.zeros(ncomp, dtype=bool)
    has_key[comp[key]] = True
    _, first_node = np.unique(comp, return_index=True)
    key[first_node[~has_key]] = True
    # adjacency in CSR form with the undirected edge id of every slot
    heads = np.concatenate([edges[:, 0], edges[:, 1]])
    tails = np.concatenate([edges[:, 1], edges[:, 0]])
    edge_ids = np.concatenate([np.arange(len(edges)), np.arange(len(edges))])
    order = np.argsort(heads, kind="stable")
    tails, edge_ids = tails[order].tolist(), edge_ids[order].tolist()
    indptr = np.concatenate([[0], np.cumsum(np.bincount(heads, minlength=n))]).tolist()
    key_list = key.tolist()
    used = [False] * len(edges)
    sections = []
    for start in np.flatnonzero(key).tolist():
        for slot in range(indptr[start], indptr[start + 1]):
            if used[edge_ids[slot]]:
                continue
            used[edge_ids[slot]] = True
            path = [start, tails[slot]]
            while not key_list[path[-1]]:
                cur = path[-1]
                a, b = indptr[cur], indptr[cur] + 1
                nxt_slot = b if used[edge_ids[a]] else a
                used[edge_ids[nxt_slot]] = True
                path.append(tails[nxt_slot])
            sections.append(np.asarray(path, dtype=np.int64))
    return sections


def resample_graph(graph: SkeletonGraph, step: float = 1.0) -> SkeletonGraph:
    """Resample every unbranched section of ``graph`` to equally spaced nodes at most ``step`` apart (arc length).

    Tips, branch points and isolated nodes keep their positions; the inner nodes of each section are replaced by
    ``ceil(L / step) - 1`` nodes evenly spaced along the section's polyline of length ``L`` (so consecutive nodes are
    between ``step / 2`` and ``step`` apart along the curve, and each coordinate changes by at most ``step`` from one
    node to the next). Distances are in the graph's own units (voxels unless the graph was scaled).
    """
    step = as_positive_float(step, "step")
    if len(graph.edges) == 0:
        return graph
    sections = _sections(graph)
    keep = np.flatnonzero(graph.degrees() != 2)
    ends = np.unique(np.concatenate([keep] + [s[[0, -1]] for s in sections]))
    new_index = np.full(graph.num_nodes, -1, dtype=np.int64)
    new_index[ends] = np.arange(len(ends))
    points = [graph.points[ends]]
    next_id = len(ends)
    edges = []
    for path in sections:
        pts = graph.points[path]
        seg = np.sqrt(((pts[1:] - pts[:-1]) ** 2).sum(axis=1))
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        n_int = max(1, math.ceil(arc[-1] / step - 1e-9))
        s = np.linspace(0.0, arc[-1], n_int + 1)[1:-1]
        inner = np.stack([np.interp(s, arc, pts[:, k]) for k in range(3)], axis=1)
        ids = np.concatenate([[new_index[path[0]]], np.arange(next_id, next_id + len(inner)), [new_index[path[-1]]]])
        next_id += len(inner)
        points.append(inner)
        edges.append(np.stack([ids[:-1], ids[1:]], axis=1))
    return SkeletonGraph(points=np.concatenate(points), edges=np.concatenate(edges))


def subdivide_graph(graph: SkeletonGraph, step: float = 1.0) -> SkeletonGraph:
    """Split every edge of length ``L`` into ``ceil(L / step)`` equal pieces, keeping all original nodes.

    Unlike :func:`resample_graph` the polyline (and so its length) is unchanged; node density is not made uniform.
    Consecutive nodes differ by at most ``step`` in each coordinate, so with ``step <= 1`` voxel every voxel that
    the polyline crosses over more than a corner is looked up by some node.
    """
    step = as_positive_float(step, "step")
    if len(graph.edges) == 0:
        return graph
    a, b = graph.edges[:, 0], graph.edges[:, 1]
    pieces = np.maximum(np.ceil(graph.edge_lengths() / step - 1e-9).astype(np.int64), 1)
    n_new = pieces - 1
    edge_of_new = np.repeat(np.arange(len(pieces)), n_new)
    j = np.arange(len(edge_of_new)) - np.repeat(np.cumsum(n_new) - n_new, n_new) + 1
    t = j / pieces[edge_of_new]
    pa, pb = graph.points[a[edge_of_new]], graph.points[b[edge_of_new]]
    new_points = pa + t[:, None] * (pb - pa)
    # node sequence of every edge: a, its new nodes in order, b; consecutive entries of one edge are joined
    seq_len = pieces + 1
    seq_start = np.cumsum(seq_len) - seq_len
    seq = np.empty(int(seq_len.sum()), dtype=np.int64)
    inner = np.ones(len(seq), dtype=bool)
    inner[seq_start] = False
    inner[seq_start + pieces] = False
    seq[seq_start] = a
    seq[seq_start + pieces] = b
    seq[inner] = graph.num_nodes + np.arange(len(new_points))
    last = np.zeros(len(seq), dtype=bool)
    last[seq_start + pieces] = True
    keep = ~last[:-1]
    return SkeletonGraph(
        points=np.concatenate([graph.points, new_points]), edges=np.stack([seq[:-1][keep], seq[1:][keep]], axis=1)
    )
