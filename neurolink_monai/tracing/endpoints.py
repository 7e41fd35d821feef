# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Skeleton endpoints: their outward directions, and extending them to the tip of the neurite."""

from __future__ import annotations

import numpy as np
from scipy.sparse import csgraph

from ..skeleton import SkeletonGraph, add_paths

__all__ = ["endpoint_directions", "extend_tips"]


def endpoint_directions(
    graph: SkeletonGraph,
    endpoints: np.ndarray,
    window: float,
    direction: np.ndarray | None = None,
    return_support: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Outward unit direction at each endpoint, ``(z, y, x)`` components in the graph's scaled units.

    The skeleton estimate points from the mean of the skeleton voxels within ``window`` steps along the graph to
    the endpoint. With a direction map (sign-free tangents), the principal axis of the tangents sampled on those
    voxels (the top eigenvector of the sum of their outer products, which ignores their signs) is used instead,
    signed to point away from the endpoint's own chain; where the map is zero there the skeleton estimate is kept.

    Args:
        graph: the skeleton graph.
        endpoints: (E,) node indices.
        window: geodesic neighbourhood radius in voxel steps (>= 1).
        direction: optional (3, D, H, W) tangent field, components ``(z, y, x)`` in voxel index space (as
            :class:`~neurolink_monai.transforms.DirectionMap` makes them); rescaled by ``graph.spacing`` here.
        return_support: also return how many skeleton voxels each estimate rests on.

    Returns:
        (E, 3) float64 unit vectors, all zero where no direction could be estimated; with ``return_support``,
        also the (E,) int64 voxel counts.
    """
    endpoints = np.asarray(endpoints, dtype=np.int64)
    n_end = len(endpoints)
    out = np.zeros((n_end, 3), dtype=np.float64)
    support = np.zeros(n_end, dtype=np.int64)
    if n_end == 0 or len(graph.edges) == 0:
        return (out, support) if return_support else out
    dist, _, src = csgraph.dijkstra(
        graph.adjacency(),
        directed=False,
        indices=endpoints,
        min_only=True,
        return_predecessors=True,
        limit=float(window),
    )
    near = np.flatnonzero(np.isfinite(dist))
    which = np.full(graph.num_nodes, -1, dtype=np.int64)
    which[endpoints] = np.arange(n_end)
    group = which[src[near]]
    pos = graph.positions()[near]
    support = np.bincount(group, minlength=n_end).astype(np.int64)
    counts = support.astype(np.float64)
    mean = np.stack([np.bincount(group, weights=pos[:, k], minlength=n_end) for k in range(3)], axis=1)
    mean /= np.maximum(counts, 1.0)[:, None]
    skel = graph.positions()[endpoints] - mean
    norm = np.linalg.norm(skel, axis=1)
    ok = norm > 1e-6
    out[ok] = skel[ok] / norm[ok, None]
    if direction is None:
        return (out, support) if return_support else out

    z, y, x = graph.points[near].T
    t = direction[:, z, y, x].T.astype(np.float64)  # (M, 3)
    if graph.spacing is not None:
        t *= graph.spacing
    tensor = np.zeros((n_end, 3, 3), dtype=np.float64)
    for i in range(3):
        for j in range(i, 3):
            s = np.bincount(group, weights=t[:, i] * t[:, j], minlength=n_end)
            tensor[:, i, j] = s
            tensor[:, j, i] = s
    use = np.trace(tensor, axis1=1, axis2=2) > 1e-8
    if not use.any():
        return (out, support) if return_support else out
    _, vecs = np.linalg.eigh(tensor[use])
    principal = vecs[:, :, -1]
    sign = np.sign((principal * out[use]).sum(axis=1))
    sign[sign == 0] = 1.0
    out[use] = principal * sign[:, None]
    return (out, support) if return_support else out


def extend_tips(
    graph: SkeletonGraph,
    radius: np.ndarray,
    mask: np.ndarray,
    window: float,
    direction: np.ndarray | None = None,
    reach: float = 3.0,
    min_support: int = 3,
) -> tuple[SkeletonGraph, np.ndarray]:
    """Extend every endpoint straight along its outward direction while the voxels stay in the foreground.

    Thinning stops a skeleton short of a neurite's tip (by about a radius, more for thick oblique tubes); this
    walks each endpoint on in whole-voxel steps along its dominant axis until the next voxel is background, leaves
    the volume, meets an existing skeleton voxel, or the walk exceeds ``reach`` times the endpoint radius plus 2
    (in the graph's scaled units).

    Args:
        graph: the skeleton graph.
        radius: (N,) radius per node, voxels.
        mask: (D, H, W) bool foreground.
        window: geodesic window for the endpoint directions.
        direction: optional (3, D, H, W) tangent field, components ``(z, y, x)``.
        reach: longest walk in endpoint radii (plus 2 voxels).
        min_support: only endpoints whose direction rests on this many skeleton voxels are walked (the ends of
            one- or two-voxel pieces have no reliable direction).

    Returns:
        ``(graph, radius)`` with the new tip voxels appended; they carry their endpoint's radius.
    """
    endpoints = np.flatnonzero(graph.degrees() == 1)
    if len(endpoints) == 0:
        return graph, radius
    dirs, support = endpoint_directions(graph, endpoints, window, direction, return_support=True)
    ok = (np.abs(dirs).max(axis=1) > 0) & (support >= min_support)
    endpoints, dirs = endpoints[ok], dirs[ok]
    if len(endpoints) == 0:
        return graph, radius
    scale = np.ones(3) if graph.spacing is None else np.asarray(graph.spacing, dtype=np.float64)
    step = dirs / scale  # the direction in voxel index space
    step /= np.abs(step).max(axis=1, keepdims=True)  # one voxel along the dominant axis: rounded steps are adjacent
    step_len = np.linalg.norm(step * scale, axis=1)
    limit = reach * radius[endpoints] + 2.0
    n_steps = int(np.ceil((limit / step_len).max()))
    t = np.arange(1, n_steps + 1, dtype=np.float64)
    start = graph.points[endpoints].astype(np.float64)
    walk = np.rint(start[:, None, :] + t[None, :, None] * step[:, None, :]).astype(np.int64)  # (E, T, 3)
    shape = np.asarray(mask.shape)
    inside = ((walk >= 0) & (walk < shape)).all(axis=2)
    clipped = np.clip(walk, 0, shape - 1)
    good = inside & mask[clipped[..., 0], clipped[..., 1], clipped[..., 2]]
    good &= t[None, :] * step_len[:, None] <= limit[:, None]
    occupied = np.zeros(mask.shape, dtype=bool)
    occupied[tuple(graph.points.T)] = True
    good &= ~occupied[clipped[..., 0], clipped[..., 1], clipped[..., 2]]
    run = np.cumprod(good, axis=1).sum(axis=1)
    grow = np.flatnonzero(run > 0)
    if len(grow) == 0:
        return graph, radius
    paths = [np.concatenate([graph.points[endpoints[e]][None], walk[e, : run[e]]], axis=0) for e in grow.tolist()]
    merged, ids = add_paths(graph, paths)
    new_radius = np.zeros(merged.num_nodes - graph.num_nodes, dtype=np.float64)
    for e, pid in zip(grow.tolist(), ids):
        fresh = pid >= graph.num_nodes
        new_radius[pid[fresh] - graph.num_nodes] = radius[endpoints[e]]
    return merged, np.concatenate([radius, new_radius])
