# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Spur pruning: remove the short terminal branches that thinning grows from bumps on a neurite's surface."""

from __future__ import annotations

import numpy as np

from .skeleton_graph import VoxelGraph, decompose_segments

__all__ = ["prune_spurs"]


def prune_spurs(forest: VoxelGraph, min_spur_length: float, radius: np.ndarray | None = None) -> np.ndarray:
    """Which nodes survive spur pruning.

    A spur is a segment from an endpoint (degree 1) to a branch node (degree >= 3). It is removed when its length,
    less the radius at its branch node (the part hidden inside the parent neurite), is below ``min_spur_length``.
    Spurs are removed shortest first, and a branch node always keeps at least two of its segments, so the longest
    of several short forks at a neurite's tip survives as its continuation. When a branch node drops to degree 2,
    its two remaining segments merge and may become a (longer) spur in the next pass; passes repeat until
    nothing changes. Isolated chains (endpoint to endpoint) are never removed here.

    Args:
        forest: an acyclic :class:`VoxelGraph`.
        min_spur_length: visible spur length below which a spur is removed, in voxel steps.
        radius: optional (N,) radius per node (voxels); zero when omitted.

    Returns:
        (N,) bool mask of the nodes to keep.
    """
    keep = np.ones(forest.n_nodes, dtype=bool)
    if min_spur_length <= 0 or len(forest.edges) == 0:
        return keep
    seg = decompose_segments(forest)
    rad = np.zeros(forest.n_nodes) if radius is None else np.asarray(radius, dtype=np.float64)
    ends = np.unique(seg.ends)  # key nodes on some segment (isolated voxels play no part)
    deg = dict(zip(ends.tolist(), seg.degree[ends].tolist()))
    # Merged segments are "groups": [end_a, end_b, length, member segments, absorbed former branch nodes].
    groups: dict[int, list] = {}
    incident: dict[int, list[int]] = {k: [] for k in deg}
    for s, ((a, b), length) in enumerate(zip(seg.ends.tolist(), seg.length.tolist())):
        groups[s] = [a, b, length, [s], []]
        incident[a].append(s)
        incident[b].append(s)
    next_gid = len(groups)
    removed_segments: list[int] = []
    removed_nodes: list[int] = []

    def spur_ends(g: list) -> tuple[int, int] | None:
        a, b = g[0], g[1]
        if deg[a] == 1 and deg[b] >= 3:
            return a, b
        if deg[b] == 1 and deg[a] >= 3:
            return b, a
        return None

    changed = True
    while changed:
        changed = False
        candidates = []
        for gid, g in groups.items():
            ends = spur_ends(g)
            if ends is not None and g[2] - rad[ends[1]] < min_spur_length:
                candidates.append((g[2], gid))
        for _, gid in sorted(candidates):
            g = groups.get(gid)
            if g is None:
                continue
            ends = spur_ends(g)
            if ends is None or g[2] - rad[ends[1]] >= min_spur_length:
                continue
            leaf, branch = ends
            removed_segments.extend(g[3])
            removed_nodes.extend(g[4])
            removed_nodes.append(leaf)
            del groups[gid]
            incident[branch].remove(gid)
            deg[branch] -= 1
            deg[leaf] = 0
            changed = True
            if deg[branch] == 2:
                g1, g2 = (groups[i] for i in incident[branch])
                far1 = g1[1] if g1[0] == branch else g1[0]
                far2 = g2[1] if g2[0] == branch else g2[0]
                merged = [far1, far2, g1[2] + g2[2], g1[3] + g2[3], g1[4] + g2[4] + [branch]]
                for old in incident[branch]:
                    del groups[old]
                    for far in (far1, far2):
                        if old in incident[far]:
                            incident[far].remove(old)
                incident[branch] = []
                groups[next_gid] = merged
                incident[far1].append(next_gid)
                incident[far2].append(next_gid)
                next_gid += 1
    if removed_segments:
        keep[np.isin(seg.node_segment, np.asarray(removed_segments, dtype=np.int64))] = False
    if removed_nodes:
        keep[np.asarray(removed_nodes, dtype=np.int64)] = False
    return keep
