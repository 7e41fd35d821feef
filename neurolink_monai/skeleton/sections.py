# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Unbranched sections of a :class:`~neurolink_monai.skeleton.SkeletonGraph` (the paths between its tips and branch
points), and the two resamplings built on the graph: :func:`resample_graph` (equal spacing along each section, for
node matching) and :func:`subdivide_graph` (every edge cut into short pieces, for voxel look-ups)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neurolink_monai.utils import as_positive_float

from .adjacency import edge_lengths
from .graph import SkeletonGraph

__all__ = ["Sections", "unbranched_sections", "resample_graph", "subdivide_graph"]


@dataclass(frozen=True)
class Sections:
    """The unbranched sections of a graph: maximal paths whose end nodes have degree != 2 (tips, branch points,
    isolated nodes: the *key* nodes) and whose inner nodes have degree 2. A component that is a pure cycle gets one
    key node, its lowest-numbered node, where its one section starts and ends.

    Sections are numbered as follows: first those with inner nodes, in order of their lowest-numbered inner node,
    then the single edges between two key nodes, in the order of ``graph.edges``. Each section runs from its
    lower-numbered end node to the other (in a forest; a cycle starts along its end node's first edge).

    Attributes:
        paths: ``S`` int64 arrays, the node indices of each section from ``ends[s, 0]`` to ``ends[s, 1]``.
        ends: ``(S, 2)`` int64 end nodes of each section.
        length: ``(S,)`` float64 sum of the section's edge lengths (``graph.edge_lengths()``, in edge order).
        node_section: ``(N,)`` int64 section of each inner node, -1 for key nodes.
        is_key: ``(N,)`` bool, the key nodes.
        degree: ``(N,)`` int64 node degrees.
    """

    paths: list[np.ndarray]
    ends: np.ndarray
    length: np.ndarray
    node_section: np.ndarray
    is_key: np.ndarray
    degree: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


def _walk(graph: SkeletonGraph, is_key: np.ndarray) -> tuple[list[list[int]], list[list[int]]]:
    """Node paths and edge ids of the sections, walked from the key nodes in increasing order, each key node's
    edges in adjacency (CSR) order."""
    n, edges = graph.num_nodes, graph.edges
    heads = np.concatenate([edges[:, 0], edges[:, 1]])
    tails = np.concatenate([edges[:, 1], edges[:, 0]])
    edge_ids = np.concatenate([np.arange(len(edges)), np.arange(len(edges))])
    order = np.argsort(heads, kind="stable")
    tails, edge_ids = tails[order].tolist(), edge_ids[order].tolist()
    indptr = np.concatenate([[0], np.cumsum(np.bincount(heads, minlength=n))]).tolist()
    key_list = is_key.tolist()
    used = [False] * len(edges)
    paths, path_edges = [], []
    for start in np.flatnonzero(is_key).tolist():
        for slot in range(indptr[start], indptr[start + 1]):
            if used[edge_ids[slot]]:
                continue
            used[edge_ids[slot]] = True
            path, steps = [start, tails[slot]], [edge_ids[slot]]
            while not key_list[path[-1]]:
                cur = path[-1]
                a, b = indptr[cur], indptr[cur] + 1
                nxt_slot = b if used[edge_ids[a]] else a
                used[edge_ids[nxt_slot]] = True
                path.append(tails[nxt_slot])
                steps.append(edge_ids[nxt_slot])
            paths.append(path)
            path_edges.append(steps)
    return paths, path_edges


def unbranched_sections(graph: SkeletonGraph) -> Sections:
    """Split a graph into its unbranched sections (see :class:`Sections` for their order and direction).

    Isolated nodes belong to no section. Lengths use ``graph.spacing``.
    """
    n = graph.num_nodes
    degree = graph.degrees()
    is_key = degree != 2
    ncomp, comp = graph.components()
    has_key = np.zeros(ncomp, dtype=bool)
    has_key[comp[is_key]] = True
    _, first_node = np.unique(comp, return_index=True)
    is_key[first_node[~has_key]] = True
    walked, walked_edges = _walk(graph, is_key)
    # order: sections with inner nodes by their lowest inner node, then key-to-key edges by edge index
    sort_key = [(0, min(p[1:-1])) if len(p) > 2 else (1, e[0]) for p, e in zip(walked, walked_edges)]
    order = sorted(range(len(walked)), key=sort_key.__getitem__)
    paths = [np.asarray(walked[i], dtype=np.int64) for i in order]
    node_section = np.full(n, -1, dtype=np.int64)
    edge_section = np.zeros(len(graph.edges), dtype=np.int64)
    for s, i in enumerate(order):
        node_section[paths[s][1:-1]] = s
        edge_section[walked_edges[i]] = s
    ends = np.array([[p[0], p[-1]] for p in paths], dtype=np.int64).reshape(-1, 2)
    length = np.bincount(edge_section, weights=graph.edge_lengths(), minlength=len(paths)).astype(np.float64)
    return Sections(paths, ends, length, node_section, is_key, degree)


def resample_graph(graph: SkeletonGraph, step: float = 1.0) -> SkeletonGraph:
    """Resample every unbranched section of ``graph`` to equally spaced nodes at most ``step`` apart (arc length).

    Tips, branch points and isolated nodes keep their positions; the inner nodes of each section are replaced by
    ``ceil(L / step) - 1`` nodes evenly spaced along the section's polyline of length ``L`` (so consecutive nodes are
    between ``step / 2`` and ``step`` apart along the curve, and each coordinate changes by at most ``step`` from one
    node to the next). Distances are in the graph's grid units (``points``, not scaled by ``spacing``), which the
    result keeps.
    """
    step = as_positive_float(step, "step")
    if len(graph.edges) == 0:
        return graph
    sections = unbranched_sections(graph)
    keep = np.flatnonzero(graph.degrees() != 2)
    ends = np.unique(np.concatenate([keep, sections.ends.ravel()]))
    new_index = np.full(graph.num_nodes, -1, dtype=np.int64)
    new_index[ends] = np.arange(len(ends))
    points = [graph.points[ends].astype(np.float64)]
    next_id = len(ends)
    edges = []
    for path in sections.paths:
        pts = graph.points[path].astype(np.float64)
        seg = np.sqrt(((pts[1:] - pts[:-1]) ** 2).sum(axis=1))
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        n_int = max(1, math.ceil(arc[-1] / step - 1e-9))
        s = np.linspace(0.0, arc[-1], n_int + 1)[1:-1]
        inner = np.stack([np.interp(s, arc, pts[:, k]) for k in range(3)], axis=1)
        ids = np.concatenate([[new_index[path[0]]], np.arange(next_id, next_id + len(inner)), [new_index[path[-1]]]])
        next_id += len(inner)
        points.append(inner)
        edges.append(np.stack([ids[:-1], ids[1:]], axis=1))
    return SkeletonGraph(np.concatenate(points), np.concatenate(edges), graph.spacing)


def subdivide_graph(graph: SkeletonGraph, step: float = 1.0) -> SkeletonGraph:
    """Split every edge of length ``L`` into ``ceil(L / step)`` equal pieces, keeping all original nodes.

    Unlike :func:`resample_graph` the polyline (and so its length) is unchanged; node density is not made uniform.
    Consecutive nodes differ by at most ``step`` in each coordinate, so with ``step <= 1`` voxel every voxel that
    the polyline crosses over more than a corner is looked up by some node. Lengths are in grid units
    (``points``, not scaled by ``spacing``), which the result keeps.
    """
    step = as_positive_float(step, "step")
    if len(graph.edges) == 0:
        return graph
    a, b = graph.edges[:, 0], graph.edges[:, 1]
    pieces = np.maximum(np.ceil(edge_lengths(graph.points, graph.edges) / step - 1e-9).astype(np.int64), 1)
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
        np.concatenate([graph.points.astype(np.float64), new_points]),
        np.stack([seq[:-1][keep], seq[1:][keep]], axis=1),
        graph.spacing,
    )
