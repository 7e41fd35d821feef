# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""From a skeleton graph to SWC trees: node radii, one rooted tree per connected neuron, depth-first order."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

from ..skeleton import SkeletonGraph, spanning_forest, unbranched_sections
from ..transforms.distance import boundary_background
from ..utils import as_float_in_range
from .linking import piece_lengths, piece_weights

__all__ = ["skeleton_radius", "choose_roots", "brightest_entry_tree", "forest_to_swc"]

# nodes from a tip over which its image level is taken (its first ~15 voxels)
_TIP_NODES = 16
# trees of at least this share of the heaviest tree's weight compete as the main tree by the brightness of their entry
_MAIN_TREE_SHARE = 0.25


def skeleton_radius(
    coords: np.ndarray, mask: np.ndarray, distance: np.ndarray | None = None, scale: np.ndarray | None = None
) -> np.ndarray:
    """Radius (voxels) at skeleton voxels.

    With a distance map (the EDT of the neurite mask in voxels, as regressed by NeuroLink's distance head) the
    radius is its value at the voxel. Without one it is the exact Euclidean distance from the voxel to the nearest
    background voxel of ``mask`` (the EDT), found with a k-d tree over the background voxels that touch the
    foreground, which is far cheaper than a full EDT of a sparse neurite volume. Voxels outside the volume do
    not count as background.

    Args:
        coords: (N, 3) int voxel coordinates ``(z, y, x)``.
        mask: (D, H, W) bool foreground.
        distance: optional (D, H, W) distance map.
        scale: (3,) voxel step lengths ``(z, y, x)`` in in-plane voxels for the EDT fallback; None: isotropic.

    Returns:
        (N,) float64 radii.
    """
    coords = np.asarray(coords, dtype=np.int64)
    if len(coords) == 0:
        return np.zeros(0, dtype=np.float64)
    if distance is not None:
        return distance[tuple(coords.T)].astype(np.float64)
    shell = boundary_background(mask)
    if len(shell) == 0:
        return np.full(len(coords), float(max(mask.shape)), dtype=np.float64)
    sc = np.ones(3) if scale is None else np.asarray(scale, dtype=np.float64)
    dist, _ = cKDTree(shell * sc).query(coords * sc)
    return np.asarray(dist, dtype=np.float64)


def _on_border(points: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """(N,) bool: the ``(N, 3)`` voxels within one voxel of the volume's faces across ``axes``."""
    pts = np.asarray(points)[:, list(axes)]
    return ((pts <= 1) | (pts >= np.asarray(shape)[list(axes)] - 2)).any(axis=1)


def _first_per_group(groups: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Row index of the smallest element per group, ordered by ``keys`` (last key most significant)."""
    order = np.lexsort((*keys, groups))
    g = groups[order]
    first = np.ones(len(g), dtype=bool)
    first[1:] = g[1:] != g[:-1]
    out = np.full(int(groups.max()) + 1, -1, dtype=np.int64)
    out[g[first]] = order[first]
    return out


def _tip_levels(forest: SkeletonGraph, level: np.ndarray, nodes: int = _TIP_NODES) -> np.ndarray:
    """Median of ``level`` over the first ``nodes`` nodes of each tip's unbranched section, ``(N,)`` float64; ``-inf``
    at nodes that are not tips (degree != 1)."""
    out = np.full(forest.num_nodes, -np.inf)
    if len(forest.edges) == 0:
        return out
    sections = unbranched_sections(forest)
    for path in sections.paths:
        for run in (path, path[::-1]):
            if sections.degree[run[0]] == 1:
                out[run[0]] = float(np.median(level[run[:nodes]]))
    return out


def choose_roots(
    forest: SkeletonGraph,
    labels: np.ndarray,
    radius: np.ndarray,
    soma_ratio: float,
    shape: tuple[int, ...] | None = None,
    level: np.ndarray | None = None,
    level_tolerance: float = 0.0,
    toward_entries: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Root of each connected component.

    A component whose largest radius is at least ``soma_ratio`` times its median radius has a soma: it is rooted
    at its thickest node. Otherwise (an axon or dendrite cut by the field of view) it is rooted at an endpoint:
    one on the volume's border when there is one (where the neurite enters the stack, as manual traces of axon
    stacks such as DIADEM's are rooted), the thickest such. With an image ``level`` the thickest is the brightest
    (the median level over the endpoint's first :data:`_TIP_NODES` nodes), since the caliber of a thin neurite,
    a voxel or two, shows in its brightness rather than in its mask's radius; endpoints within ``level_tolerance``
    of the brightest count as equally bright (so that noise does not pick the root), and their ties go to the
    larger radius. A thick candidate soma on a component that enters the volume through an endpoint at least half
    as thick is taken for a varicosity, and the component is rooted at that endpoint. ``soma_ratio`` ``inf`` takes
    no node for a soma (stacks of axons whose somata lie outside the view). With ``toward_entries`` (for such stacks),
    a component without a soma that does not reach the border is rooted at its endpoint nearest to a component that
    does (its neurite, broken off by a gap, continues the one that enters there), when there is one. Remaining ties
    go to the lowest node index (raster order of the skeleton), so the choice is deterministic.

    Args:
        forest: the spanning forest.
        labels: (N,) component label per node.
        radius: (N,) radius per node.
        soma_ratio: see above.
        shape: the volume ``(D, H, W)``, for the border preference (none without it).
        level: optional (N,) image level per node (background removed), to rank the endpoints.
        level_tolerance: the difference of endpoint levels that counts as a tie (e.g. two noise sigmas).
        toward_entries: root the components that do not reach the border toward those that do (needs ``shape``).

    Returns:
        ``(roots, is_soma)``: (C,) node index and (C,) bool per component.
    """
    n = forest.num_nodes
    idx = np.arange(n)
    deg = forest.degrees()
    thickest = _first_per_group(labels, idx, -radius)
    r_max = radius[thickest]
    order = np.lexsort((radius, labels))  # radii sorted within each component: the median is the middle one
    counts = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    r_med = radius[order[starts + (counts - 1) // 2]]
    is_soma = (r_max > 0) & (counts >= 3)
    is_soma &= (r_max >= soma_ratio * r_med) if np.isfinite(soma_ratio) else False
    tip = np.where(deg <= 1, 0, 2)
    if shape is not None:
        on_border = _on_border(forest.points, shape)
        tip = tip + np.where(on_border, 0, 1)
    bright = np.zeros(n, dtype=bool)
    if level is not None:
        brightness = _tip_levels(forest, np.asarray(level, dtype=np.float64))
        # the brightest endpoints of each component's best endpoint class (border tips first), within the tolerance
        best_class = np.full(len(counts), np.iinfo(np.int64).max)
        np.minimum.at(best_class, labels, tip)
        candidate = (tip == best_class[labels]) & np.isfinite(brightness)
        top = np.full(len(counts), -np.inf)
        np.maximum.at(top, labels[candidate], brightness[candidate])
        bright = candidate & (brightness >= top[labels] - level_tolerance)
    tip_root = _first_per_group(labels, idx, -radius, ~bright, tip)
    if shape is not None:
        # a neurite entering the view as thick as half the candidate soma is an axon or dendrite cut by the field
        # of view, and the candidate a varicosity on it: root at the border, where manual traces start
        enters = on_border[tip_root] & (deg[tip_root] <= 1)
        is_soma &= ~(enters & (2.0 * radius[tip_root] >= r_max))
    roots = np.where(is_soma, thickest, tip_root)
    if toward_entries and shape is not None:
        roots = _roots_toward_entries(forest, labels, roots, is_soma, deg, on_border & (deg <= 1))
    return roots, is_soma


def brightest_entry_tree(
    graph: SkeletonGraph, level: np.ndarray, shape: tuple[int, ...], min_share: float = _MAIN_TREE_SHARE
) -> int:
    """A node of the tree whose neurite enters the stack brightest, among the trees that weigh at least
    ``min_share`` of the heaviest one; -1 when no such tree enters.

    On a stack of axons whose somata lie outside the view, the neuron a user traces is the brightly labelled one
    that enters the stack: a second, dimmer neuron may spread over more of the stack (DIADEM OP_2: its arbor outweighs
    the traced axon's tree), so the heaviest tree is not the one to list first. The weight of a tree is
    its length times the mean of its nodes' ``level`` (negative levels count 0); a tree enters through an endpoint
    on the y-x border, and its entry level is the brightest such endpoint's (the median ``level`` over its first
    :data:`_TIP_NODES` nodes, as :func:`choose_roots` ranks them).

    Args:
        graph: the traced graph (trees may hold loops; each is spanned first).
        level: (N,) image level per node above the local background.
        shape: the volume ``(D, H, W)``.
        min_share: in (0, 1].

    Returns:
        a node index of the chosen tree, or -1.

    Raises:
        ValueError: ``min_share`` outside (0, 1].
    """
    as_float_in_range(min_share, "min_share", 0.0, 1.0, low_open=True)
    if graph.num_nodes == 0:
        return -1
    forest = spanning_forest(graph)
    labels, length = piece_lengths(forest)
    level = np.asarray(level, dtype=np.float64)
    weight = piece_weights(labels, length, np.maximum(level, 0.0))
    tip_level = _tip_levels(forest, level)
    on_border = _on_border(forest.points, shape, axes=(1, 2)) & np.isfinite(tip_level)
    entry = np.full(len(length), -np.inf)
    np.maximum.at(entry, labels[on_border], tip_level[on_border])
    candidates = np.flatnonzero((weight >= min_share * weight.max()) & np.isfinite(entry))
    if len(candidates) == 0:
        return -1
    best = candidates[np.argmax(entry[candidates])]
    return int(np.flatnonzero(labels == best)[0])


def _roots_toward_entries(
    forest: SkeletonGraph,
    labels: np.ndarray,
    roots: np.ndarray,
    is_soma: np.ndarray,
    degree: np.ndarray,
    entry: np.ndarray,
) -> np.ndarray:
    """``roots`` with every component that has no soma and is not rooted at an ``entry`` (an endpoint on the border)
    rooted instead at its endpoint (``degree`` <= 1) nearest to a component that is; unchanged when no component
    enters."""
    enters = entry[roots]
    loose = ~enters & ~is_soma
    if not enters.any() or not loose.any():
        return roots
    positions = forest.positions()
    tips = np.flatnonzero((degree <= 1) & loose[labels])
    gap, _ = cKDTree(positions[enters[labels]]).query(positions[tips])
    nearest = _first_per_group(labels[tips], tips, gap)
    out = roots.copy()
    found = nearest >= 0
    out[np.flatnonzero(found)] = tips[nearest[found]]
    return out


def _depth_first(forest: SkeletonGraph, roots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth-first (pre-order) node list of every tree from its root, and each node's parent (-1 for roots).

    One traversal from a virtual node joined to all roots; children are visited in node-index order.
    """
    n = forest.num_nodes
    virtual = n
    edges = np.concatenate([forest.edges, np.stack([roots, np.full(len(roots), virtual)], axis=1)])
    rows = np.concatenate([edges[:, 0], edges[:, 1]])
    cols = np.concatenate([edges[:, 1], edges[:, 0]])
    adj = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n + 1, n + 1))
    order, pred = csgraph.depth_first_order(adj, virtual, directed=False, return_predecessors=True)
    order = order[1:]  # drop the virtual node
    parents = pred[order]
    parents[parents == virtual] = -1
    return order.astype(np.int64), parents.astype(np.int64)


def forest_to_swc(
    graph: SkeletonGraph,
    radius: np.ndarray,
    root: np.ndarray | None = None,
    soma_ratio: float = 2.0,
    min_component_length: float = 0.0,
    single_tree: bool = False,
    node_type: int = 3,
    shape: tuple[int, ...] | None = None,
    first_node: int | None = None,
    level: np.ndarray | None = None,
    level_tolerance: float = 0.0,
    toward_entries: bool = False,
) -> np.ndarray:
    """Turn a skeleton graph into an SWC forest: one tree per connected component, in voxel units.

    Cycles (from crossings or bridges) are cut by a minimum spanning forest. Components shorter than
    ``min_component_length`` (total edge length) are dropped, except the one holding a user root. Each tree is
    rooted at the user root (for the component nearest to it) or as in :func:`choose_roots`, and listed
    depth-first from its root, so parents precede children; the user's tree comes first, then the others by
    decreasing size (ties by root index). A soma root gets SWC type 1, every other node ``node_type``.

    Args:
        graph: skeleton graph; ``coords`` are ``(z, y, x)`` voxels.
        radius: (N,) radius per node.
        root: optional ``(z, y, x)`` point; the nearest node becomes the root of its component.
        soma_ratio: see :func:`choose_roots`; ``inf``: no soma, every tree is rooted at an endpoint.
        min_component_length: shortest component kept, voxel steps.
        single_tree: keep only the first tree (the user's, else the largest).
        node_type: SWC type of non-soma nodes.
        shape: the volume ``(D, H, W)``; lets :func:`choose_roots` prefer endpoints on its border.
        first_node: without a user root, the tree holding this node (e.g. the main tree of
            :func:`~neurolink_monai.tracing.linking.link_pieces`) is listed first and always kept.
        level: optional (N,) image level per node (background removed); ranks the endpoints that may become
            roots (see :func:`choose_roots`), with ``level_tolerance`` the difference that counts as a tie.
        toward_entries: see :func:`choose_roots` (for stacks whose somata lie outside the view).

    Returns:
        (M, 7) float64 SWC array, ids 1..M, columns id, type, x, y, z, radius, parent.
    """
    if graph.num_nodes == 0:
        return np.zeros((0, 7), dtype=np.float64)
    forest = spanning_forest(graph)
    n_comp, labels = forest.components()
    comp_len = np.bincount(labels[forest.edges[:, 0]], weights=forest.edge_lengths(), minlength=n_comp)
    user_node = -1
    if root is not None:
        scale = np.ones(3) if forest.spacing is None else forest.spacing
        _, user_node = cKDTree(forest.positions()).query(np.asarray(root, dtype=np.float64) * scale)
        user_node = int(user_node)
    keep_comp = comp_len >= min_component_length
    lead_node = user_node if user_node >= 0 else (-1 if first_node is None else int(first_node))
    if lead_node >= 0:
        keep_comp[labels[lead_node]] = True
    if not keep_comp.any():
        return np.zeros((0, 7), dtype=np.float64)
    keep = keep_comp[labels]
    if not keep.all():
        new_id = np.cumsum(keep) - 1
        user_node = int(new_id[user_node]) if user_node >= 0 else -1
        lead_node = int(new_id[lead_node]) if lead_node >= 0 else -1
        forest = forest.subgraph(keep)
        radius = radius[keep]
        level = None if level is None else level[keep]
        n_comp, labels = forest.components()
    roots, is_soma = choose_roots(forest, labels, radius, soma_ratio, shape, level, level_tolerance, toward_entries)
    if user_node >= 0:
        roots[labels[user_node]] = user_node
        is_soma[labels[user_node]] = False
    sizes = np.bincount(labels, minlength=n_comp)
    first = np.zeros(n_comp, dtype=np.int64)
    if lead_node >= 0:
        first[labels[lead_node]] = -1
    comp_order = np.lexsort((roots, -sizes, first))
    if single_tree:
        comp_order = comp_order[:1]

    nodes, parents = _depth_first(forest, roots[comp_order])
    rank = np.empty(n_comp, dtype=np.int64)
    rank[comp_order] = np.arange(len(comp_order))
    tree_order = np.argsort(rank[labels[nodes]], kind="stable")  # each tree's depth-first run stays intact
    nodes, parents = nodes[tree_order], parents[tree_order]
    row_of = np.full(forest.num_nodes, -1, dtype=np.int64)
    row_of[nodes] = np.arange(len(nodes))
    swc = np.empty((len(nodes), 7), dtype=np.float64)
    swc[:, 0] = np.arange(1, len(nodes) + 1)
    swc[:, 1] = node_type
    swc[:, 2] = forest.points[nodes, 2]
    swc[:, 3] = forest.points[nodes, 1]
    swc[:, 4] = forest.points[nodes, 0]
    swc[:, 5] = radius[nodes]
    swc[:, 6] = np.where(parents >= 0, row_of[np.maximum(parents, 0)] + 1, -1)
    soma_roots = roots[comp_order][is_soma[comp_order]]
    if len(soma_roots):
        swc[row_of[soma_roots], 1] = 1
    return swc
