# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Gap bridging: join skeleton endpoints that face each other across a weak stretch of signal.

NeuroLink (Yan et al., MICCAI 2024) learns the neurite direction so that weak, broken stretches of a neurite can
be followed; here the direction at each skeleton endpoint decides which pieces continue each other, and the
cheapest path through the probability map decides where the joining stretch runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from skimage.graph import MCP_Geometric

from ..skeleton import SkeletonGraph, add_paths
from ..utils import as_float_in_range, as_positive_int
from .endpoints import endpoint_directions

__all__ = ["Bridge", "BridgeParams", "BridgeResult", "bridge_gaps"]

# cost = 1 / (prob + eps): one voxel of background costs about 20 voxels of confident foreground
_COST_EPS = 0.05
# an endpoint whose direction window holds fewer skeleton voxels (a piece of one or two voxels) has no reliable
# outward side
_MIN_SUPPORT = 3
_PAIR, _SIDE = 0, 1


@dataclass(frozen=True)
class BridgeParams:
    """Parameters of :func:`bridge_gaps`; lengths in the graph's units (voxels, or in-plane voxels when scaled).
    The tracer keeps them as :attr:`TraceConfig.bridge <neurolink_monai.tracing.TraceConfig>`.

    Attributes:
        max_gap: longest stretch below the threshold a bridge may cross (0 disables bridging).
        min_facing_cos: cosine each outward direction must exceed with the vector to its partner.
        window: geodesic window (along the skeleton) for the endpoint directions.
        to_side: also join an endpoint to the side of another piece on its line of travel (a lost branch point).
        anchor_length: every bridge needs a piece at least this long on one side (the side bridge on its
            endpoint's side), so that specks of noise do not join each other.
        stub_gap: most background voxels (counted along the path, whatever the spacing) in a gap to a stub (a
            piece of one or two skeleton voxels) whose axis is unknown, i.e. where there is no direction map.
        max_rounds: bridging rounds; each one re-reads the endpoints, so chains of fragments are followed.
        max_tries: most candidates tried per end and round (each try is a path search).
    """

    max_gap: float = 15.0
    min_facing_cos: float = 0.6
    window: float = 6.0
    to_side: bool = True
    anchor_length: float = 6.0
    stub_gap: int = 2
    max_rounds: int = 12
    max_tries: int = 6

    def __post_init__(self) -> None:
        as_float_in_range(self.max_gap, "max_gap", 0.0)
        as_float_in_range(self.min_facing_cos, "min_facing_cos", -1.0, 1.0)
        as_float_in_range(self.window, "window", 1.0)
        if not isinstance(self.to_side, (bool, np.bool_)):
            raise TypeError(f"to_side must be a bool, got {self.to_side!r}.")
        as_float_in_range(self.anchor_length, "anchor_length", 0.0)
        for name in ("stub_gap", "max_rounds", "max_tries"):
            as_positive_int(getattr(self, name), name, allow_zero=True)


@dataclass(frozen=True)
class Bridge:
    """One accepted bridge between node ``a`` (an endpoint) and node ``b`` of the graph it was made on."""

    a: int
    b: int
    path: np.ndarray = field(repr=False)  # (L, 3) int64 voxels (z, y, x) from a to b
    gap_length: float  # length of the path through voxels below the threshold
    cos_a: float
    cos_b: float
    to_side: bool = False


@dataclass
class BridgeResult:
    """The bridged graph (input nodes first, then the new path voxels), its node radii and the bridges made."""

    graph: SkeletonGraph
    radius: np.ndarray
    bridges: list[Bridge]


def _find(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _cheapest_path(
    prob: np.ndarray, start: np.ndarray, end: np.ndarray, margin: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Cheapest 26-connected voxel path from ``start`` to ``end`` through ``1 / (prob + eps)`` inside their box.

    Returns the (L, 3) path and the probability along it, or None when start and end coincide.
    """
    lo = np.maximum(np.minimum(start, end) - margin, 0)
    hi = np.minimum(np.maximum(start, end) + margin + 1, prob.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    crop = prob[box]
    cost = 1.0 / (crop.astype(np.float64) + _COST_EPS)
    mcp = MCP_Geometric(cost, fully_connected=True, sampling=tuple(float(s) for s in scale))
    goal = tuple(int(v) for v in end - lo)
    mcp.find_costs([tuple(int(v) for v in start - lo)], [goal])
    path = np.asarray(mcp.traceback(goal), dtype=np.int64)
    if len(path) < 2:
        return None
    return path + lo, crop[tuple(path.T)]


def _axes_at(graph: SkeletonGraph, nodes: np.ndarray, direction: np.ndarray | None) -> np.ndarray:
    """Sign-free unit axis at nodes from the direction map (scaled units); zero where unknown."""
    axes = np.zeros((len(nodes), 3), dtype=np.float64)
    if direction is None or len(nodes) == 0:
        return axes
    z, y, x = graph.points[nodes].T
    v = direction[:, z, y, x].T.astype(np.float64)
    if graph.spacing is not None:
        v *= graph.spacing
    norm = np.linalg.norm(v, axis=1)
    ok = norm > 1e-6
    axes[ok] = v[ok] / norm[ok, None]
    return axes


def _candidates(
    graph: SkeletonGraph,
    radius: np.ndarray,
    labels: np.ndarray,
    piece_length: np.ndarray,
    params: BridgeParams,
    direction: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Candidate bridges as arrays ``a, b, dist, cos_a, cos_b, voxels, kind`` (node indices; ``voxels`` caps the
    background voxels of the gap), unsorted."""
    deg = graph.degrees()
    ends = np.flatnonzero(deg == 1)
    dots = np.flatnonzero(deg == 0)
    nodes = np.concatenate([ends, dots])
    parts: list[tuple[np.ndarray, ...]] = []
    if len(nodes) == 0:
        return _stack(parts)
    end_dirs, support = endpoint_directions(graph, ends, params.window, direction, return_support=True)
    stub = np.concatenate([support < _MIN_SUPPORT, np.ones(len(dots), bool)])
    dirs = np.concatenate([end_dirs, np.zeros((len(dots), 3))])
    dirs[stub] = _axes_at(graph, nodes[stub], direction)  # stubs: a sign-free axis at best
    known = np.abs(dirs).sum(axis=1) > 0
    reliable = ~stub & known
    anchor = piece_length[labels[nodes]] >= params.anchor_length
    points = graph.positions()
    pts = points[nodes]
    r_end = radius[nodes]

    # end-to-end: only ends with a direction search; an end without one pairs only with a reliable endpoint
    searching = np.flatnonzero(known)
    if len(searching):
        reach = params.max_gap + 2.0 * float(r_end.max()) + 1.0
        rec = cKDTree(pts[searching]).sparse_distance_matrix(cKDTree(pts), reach, output_type="ndarray")
        ia, ib = searching[rec["i"]], rec["j"].astype(np.int64)
        keep = (ia != ib) & np.where(known[ib], ia < ib, reliable[ia])  # each informed pair once
        ia, ib = ia[keep], ib[keep]
        gap = pts[ib] - pts[ia]
        dist = np.linalg.norm(gap, axis=1)
        unit = gap / np.maximum(dist, 1e-12)[:, None]
        cos_a = (dirs[ia] * unit).sum(axis=1)
        cos_b = -(dirs[ib] * unit).sum(axis=1)
        # a stub has an axis but no outward side (either sign will do); without an axis only its partner decides
        cos_a = np.where(stub[ia], np.where(known[ia], np.abs(cos_a), params.min_facing_cos), cos_a)
        cos_b = np.where(stub[ib], np.where(known[ib], np.abs(cos_b), params.min_facing_cos), cos_b)
        blind = ~known[ia] | ~known[ib]
        longest_step = 1.0 if graph.spacing is None else float(np.max(graph.spacing))
        reach_limit = np.where(blind, min(params.stub_gap * longest_step, params.max_gap), params.max_gap)
        ok = (
            (labels[nodes[ia]] != labels[nodes[ib]])
            & (anchor[ia] | anchor[ib])
            & (dist <= reach_limit + r_end[ia] + r_end[ib] + 1.0)
            & (~known[ia] | (cos_a > params.min_facing_cos))
            & (~known[ib] | (cos_b > params.min_facing_cos))
        )
        voxels = np.where(blind, params.stub_gap, np.iinfo(np.int64).max)
        parts.append(
            (nodes[ia[ok]], nodes[ib[ok]], dist[ok], cos_a[ok], cos_b[ok], voxels[ok], np.full(int(ok.sum()), _PAIR))
        )

    source = np.flatnonzero(reliable & anchor)
    body = np.flatnonzero(deg >= 2)
    if params.to_side and len(source) and len(body):
        reach = params.max_gap + float(r_end[source].max() + radius[body].max()) + 1.0
        rec = cKDTree(pts[source]).sparse_distance_matrix(cKDTree(points[body]), reach, output_type="ndarray")
        ia, ib = source[rec["i"]], body[rec["j"]]
        gap = points[ib] - pts[ia]
        dist = np.linalg.norm(gap, axis=1)
        cos_a = (dirs[ia] * gap).sum(axis=1) / np.maximum(dist, 1e-12)
        # the target must lie on the endpoint's line of travel, not merely in front of it: this keeps an ending
        # neurite off a parallel neighbour
        lateral = dist * np.sqrt(np.clip(1.0 - cos_a**2, 0.0, None))
        ok = (
            (labels[nodes[ia]] != labels[ib])
            & (dist <= params.max_gap + r_end[ia] + radius[ib] + 1.0)
            & (cos_a > params.min_facing_cos)
            & (lateral <= r_end[ia] + radius[ib] + 1.0)
        )
        ia, ib, dist, cos_a = ia[ok], ib[ok], dist[ok], cos_a[ok]
        # the best target per (endpoint, piece): the side bridge lands where the endpoint points
        order = np.lexsort((ib, dist / cos_a, labels[ib], ia))
        ia, ib, dist, cos_a = ia[order], ib[order], dist[order], cos_a[order]
        first = np.ones(len(ia), dtype=bool)
        first[1:] = (ia[1:] != ia[:-1]) | (labels[ib[1:]] != labels[ib[:-1]])
        ia, ib, dist, cos_a = ia[first], ib[first], dist[first], cos_a[first]
        n = len(ia)
        no_cap = np.full(n, np.iinfo(np.int64).max)
        parts.append((nodes[ia], ib, dist, cos_a, np.full(n, params.min_facing_cos), no_cap, np.full(n, _SIDE)))
    return _stack(parts)


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """Position of each element among the earlier elements with the same key (0 for the first of each key)."""
    n = len(keys)
    s = np.argsort(keys, kind="stable")
    ks = keys[s]
    start = np.concatenate([[0], np.flatnonzero(ks[1:] != ks[:-1]) + 1])
    sizes = np.diff(np.concatenate([start, [n]]))
    rank = np.empty(n, dtype=np.int64)
    rank[s] = np.arange(n) - np.repeat(start, sizes)
    return rank


def _stack(parts: list[tuple[np.ndarray, ...]]) -> dict[str, np.ndarray]:
    names = ("a", "b", "dist", "cos_a", "cos_b", "voxels", "kind")
    if not parts:
        return {k: np.zeros(0, dtype=np.int64 if k in ("a", "b", "voxels", "kind") else np.float64) for k in names}
    return {k: np.concatenate(v) for k, v in zip(names, zip(*parts))}


def _bridge_round(
    graph: SkeletonGraph,
    radius: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    params: BridgeParams,
    direction: np.ndarray | None,
    rejected: set,
) -> list[Bridge]:
    """One greedy pass over the current candidates, best first; see :func:`bridge_gaps`."""
    if graph.num_nodes < 2:
        return []
    n_comp, labels = graph.components()
    piece_length = np.bincount(labels[graph.edges[:, 0]], weights=graph.edge_lengths(), minlength=n_comp)
    c = _candidates(graph, radius, labels, piece_length, params, direction)
    if len(c["a"]) == 0:
        return []
    score = c["dist"] / np.maximum(0.5 * (c["cos_a"] + c["cos_b"]), 1e-3)
    order = np.lexsort((c["b"], c["a"], score, c["kind"]))  # end-to-end pairs first, then end-to-side
    order = order[(_rank_within(c["a"][order]) < params.max_tries) & (_rank_within(c["b"][order]) < params.max_tries)]
    scale = np.ones(3) if graph.spacing is None else np.asarray(graph.spacing, dtype=np.float64)
    comp_parent = np.arange(n_comp)
    used = np.zeros(graph.num_nodes, dtype=bool)
    bridges: list[Bridge] = []
    for k in order.tolist():
        a, b = int(c["a"][k]), int(c["b"][k])
        if used[a] or used[b]:
            continue
        ca, cb = _find(comp_parent, int(labels[a])), _find(comp_parent, int(labels[b]))
        if ca == cb:
            continue
        pa, pb = graph.points[a], graph.points[b]
        key = (min(tuple(pa), tuple(pb)), max(tuple(pa), tuple(pb)), int(c["voxels"][k]))
        if key in rejected:
            continue
        margin = np.maximum(2, np.ceil(c["dist"][k] / 2.0 / scale)).astype(np.int64)
        found = _cheapest_path(prob, pa, pb, margin, scale)
        if found is None:
            rejected.add(key)
            continue
        path, p = found
        steps = np.sqrt(((np.diff(path, axis=0) * scale) ** 2).sum(axis=1))
        weak = p[1:] < threshold
        gap_length = float(steps[weak].sum())
        if gap_length > params.max_gap or int(weak.sum()) > c["voxels"][k]:
            rejected.add(key)
            continue
        used[a] = used[b] = True
        comp_parent[cb] = ca
        bridges.append(
            Bridge(a, b, path, gap_length, float(c["cos_a"][k]), float(c["cos_b"][k]), bool(c["kind"][k] == _SIDE))
        )
    return bridges


def bridge_gaps(
    graph: SkeletonGraph,
    radius: np.ndarray,
    prob: np.ndarray,
    threshold: float,
    params: BridgeParams | None = None,
    direction: np.ndarray | None = None,
) -> BridgeResult:
    """Join pieces of the skeleton whose ends face each other across a gap of at most ``params.max_gap``.

    Candidates join two ends (endpoints, degree 1, or stubs: isolated voxels and two-voxel pieces, e.g. the
    slice-by-slice fragments of a thin steep neurite) of different connected pieces, closer than ``max_gap`` plus
    both radii plus 1 (a skeleton stops about a radius short of its neurite's tip), whose outward directions line
    up with the vector joining them: ``cos(dir_a, p_b - p_a) > min_facing_cos`` and
    ``cos(dir_b, p_a - p_b) > min_facing_cos``. Endpoint directions come from the direction map when given, else
    from the skeleton (:func:`~neurolink_monai.tracing.endpoints.endpoint_directions`). A stub has at best a
    sign-free axis (from the direction map), which must line up either way; a stub without one is joined only to
    a reliable endpoint that faces it, across at most ``stub_gap`` background voxels. With ``to_side``, an
    endpoint may also join the side of another piece (its best voxel) lying on the endpoint's line of travel (off
    the line by at most the two radii plus 1): a branch point lost in a weak stretch. Every bridge needs an
    anchor, a piece at least ``anchor_length`` long, on one side (for side bridges: the endpoint's side).

    Candidates are tried best first (end-to-end before end-to-side, then by distance over mean cosine, then by
    node index), at most ``max_tries`` per end and round. Each is joined along the cheapest 26-connected path
    through the cost ``1 / (prob + 0.05)`` inside the box spanned by its two ends (plus a margin), and accepted
    when that path's length through voxels below ``threshold`` (the gap proper) is at most ``max_gap`` (and, for
    a stub without an axis, the path crosses at most ``stub_gap`` such voxels). Each end takes part in one
    bridge per round and pieces merged by a bridge count as one, so bridging never closes a loop. Rounds repeat
    (up to ``max_rounds``) with the new ends, so chains of fragments are followed piece by piece.

    Args:
        graph: skeleton forest (after spur pruning).
        radius: (N,) radius per node in the graph's units.
        prob: (D, H, W) probability in [0, 1].
        threshold: foreground threshold used for the mask.
        params: :class:`BridgeParams` (defaults when None).
        direction: optional (3, D, H, W) tangent field, components ``(z, y, x)`` in voxel index space.

    Returns:
        a :class:`BridgeResult`; the radius of new path voxels is interpolated between the two ends.
    """
    params = BridgeParams() if params is None else params
    radius = np.asarray(radius, dtype=np.float64)
    bridges: list[Bridge] = []
    if params.max_gap <= 0:
        return BridgeResult(graph, radius, bridges)
    rejected: set = set()
    for _ in range(params.max_rounds):
        new = _bridge_round(graph, radius, prob, threshold, params, direction, rejected)
        if not new:
            break
        merged, ids = add_paths(graph, [br.path for br in new])
        new_radius = np.zeros(merged.num_nodes - graph.num_nodes, dtype=np.float64)
        for br, pid in zip(new, ids):
            # the weak stretch has no trustworthy radius of its own: interpolate between the two ends
            t = np.linspace(0.0, 1.0, len(pid))
            fresh = pid >= graph.num_nodes
            new_radius[pid[fresh] - graph.num_nodes] = ((1.0 - t) * radius[br.a] + t * radius[br.b])[fresh]
        graph, radius = merged, np.concatenate([radius, new_radius])
        bridges.extend(new)
    return BridgeResult(graph, radius, bridges)
