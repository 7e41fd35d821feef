# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""neurolink_monai.skeleton: the voxel adjacency the losses, metrics and tracing share, and the one skeleton graph
(construction from SWC arrays and voxels, spanning forest, unbranched sections, resampling)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from neurolink_monai.losses import build_centreline_graph
from neurolink_monai.skeleton import (
    SkeletonGraph,
    VoxelLookup,
    add_paths,
    canonical_edges,
    connected_components,
    edge_lengths,
    neighbour_offsets,
    neighbour_pairs,
    neighbour_table,
    node_degrees,
    resample_graph,
    spanning_forest,
    subdivide_graph,
    swc_to_graph,
    unbranched_sections,
    voxel_graph,
)

from helpers import chain_swc


def skeleton_forest(mask: np.ndarray, spacing=None) -> SkeletonGraph:
    """The forest the metrics build from a gold skeleton: spanning forest of the 26-neighbour graph."""
    return spanning_forest(voxel_graph(np.argwhere(mask), spacing))


def brute_force_pairs(coords: np.ndarray) -> set[tuple[int, int]]:
    diff = np.abs(coords[:, None, :] - coords[None, :, :]).max(axis=2)
    i, j = np.nonzero((diff == 1) & (np.arange(len(coords))[:, None] < np.arange(len(coords))[None, :]))
    return set(zip(i.tolist(), j.tolist()))


def test_offsets():
    full = neighbour_offsets(3)
    assert full.shape == (26, 3) and not full.flags.writeable
    assert [tuple(o) for o in full] == [o for o in itertools.product((-1, 0, 1), repeat=3) if any(o)]
    forward = neighbour_offsets(3, forward_only=True)
    assert len(forward) == 13 and all(tuple(o) > (0, 0, 0) for o in forward)
    # each unordered pair once: the forward offsets and their negatives make up the full neighbourhood
    assert {tuple(o) for o in forward} | {tuple(-o) for o in forward} == {tuple(o) for o in full}
    assert neighbour_offsets(2).shape == (8, 2)
    with pytest.raises(ValueError, match="ndim must be a positive int, got 0"):
        neighbour_offsets(0)


def test_lookup_finds_rows_in_any_order_and_misses_outside():
    rng = np.random.default_rng(0)
    coords = np.unique(rng.integers(-5, 20, size=(200, 3)), axis=0)
    rng.shuffle(coords)
    lookup = VoxelLookup(coords)
    np.testing.assert_array_equal(lookup(coords), np.arange(len(coords)))
    absent = np.array([[100, 0, 0], [-50, 3, 3]] + [c for c in itertools.product(range(-5, 20), repeat=3)][:400])
    rows = lookup(absent)
    known = {tuple(c): i for i, c in enumerate(coords.tolist())}
    assert rows.tolist() == [known.get(tuple(c), -1) for c in absent.tolist()]
    assert VoxelLookup(np.zeros((0, 3), int))(coords).tolist() == [-1] * len(coords)
    with pytest.raises(TypeError, match="integer voxel coordinates, got dtype float64"):
        VoxelLookup(np.zeros((2, 3)) + 0.5)
    with pytest.raises(ValueError, match=r"\(N, 3\).*\(4,\)"):
        lookup(np.zeros(4, int))


@pytest.mark.parametrize("ndim", [2, 3])
def test_pairs_and_table_match_brute_force(ndim):
    rng = np.random.default_rng(ndim)
    mask = rng.random((9,) * ndim) < 0.35
    coords = np.argwhere(mask)
    pairs = neighbour_pairs(coords)
    assert (pairs[:, 0] < pairs[:, 1]).all()  # raster-ordered input
    assert set(map(tuple, pairs.tolist())) == brute_force_pairs(coords) and len(pairs) == len(brute_force_pairs(coords))
    table = neighbour_table(coords)
    offsets = neighbour_offsets(ndim)
    for i, k in zip(*np.nonzero(table >= 0)):
        np.testing.assert_array_equal(coords[table[i, k]], coords[i] + offsets[k])
    assert (table >= 0).sum() == 2 * len(pairs)
    # shuffled input: the same unordered pairs
    perm = rng.permutation(len(coords))
    shuffled = neighbour_pairs(coords[perm])
    assert set(map(tuple, np.sort(perm[shuffled], axis=1).tolist())) == brute_force_pairs(coords)


def test_graph_helpers():
    edges = np.array([[1, 0], [0, 1], [2, 2], [3, 2]])
    np.testing.assert_array_equal(canonical_edges(edges), [[0, 1], [2, 3]])
    np.testing.assert_array_equal(node_degrees(canonical_edges(edges), 5), [1, 1, 1, 1, 0])
    count, labels = connected_components(edges, 5)
    assert count == 3 and labels[0] == labels[1] and labels[2] == labels[3] and len(set(labels.tolist())) == 3
    assert connected_components(np.zeros((0, 2), int), 0)[0] == 0
    pts = np.array([[0, 0, 0], [1, 1, 0]])
    np.testing.assert_allclose(edge_lengths(pts, [[0, 1]]), [np.sqrt(2)])
    np.testing.assert_allclose(edge_lengths(pts, [[0, 1]], scale=(3.0, 4.0, 1.0)), [5.0])
    assert edge_lengths(pts, np.zeros((0, 2), int)).shape == (0,)


def test_losses_metrics_and_tracing_see_the_same_adjacency():
    rng = np.random.default_rng(5)
    mask = rng.random((8, 10, 12)) < 0.3
    coords = np.argwhere(mask)
    expected = brute_force_pairs(coords)
    assert set(map(tuple, voxel_graph(coords).edges.tolist())) == expected
    cg = build_centreline_graph(None, centreline=mask[None])
    k = cg.num_centreline
    losses_pairs = {(min(i, j), max(i, j)) for i, row in enumerate(cg.neighbours.tolist()) for j in row if j < k}
    assert losses_pairs == expected
    # metrics and tracing use its spanning forest: same components, one edge fewer per piece
    graph = skeleton_forest(mask)
    n_comp, _ = connected_components(np.array(sorted(expected)).reshape(-1, 2), len(coords))
    assert graph.components()[0] == n_comp and len(graph.edges) == len(coords) - n_comp
    assert {tuple(sorted(e)) for e in graph.edges.tolist()} <= expected


def test_swc_to_graph_order_and_axes():
    swc = chain_swc([(1, 2, 3), (4, 5, 6), (7, 8, 9)], parents=[-1, 1, 2])[::-1].copy()  # children listed first
    g = swc_to_graph(swc)
    assert g.points[0].tolist() == [9, 8, 7]  # (z, y, x)
    assert sorted(map(tuple, np.sort(g.edges, axis=1).tolist())) == [(0, 1), (1, 2)]
    assert g.edge_lengths().sum() == pytest.approx(2 * math.sqrt(27))
    assert g.points.dtype == np.float64 and g.spacing is None
    scaled = swc_to_graph(swc, spacing=(2.0, 1.0, 1.0))
    assert scaled.edge_lengths().sum() == pytest.approx(2 * math.sqrt(9 + 9 + 36))
    np.testing.assert_array_equal(scaled.scaled().points, g.points * [2.0, 1.0, 1.0])
    assert scaled.scaled().spacing is None and scaled.scaled().edge_lengths().sum() == scaled.edge_lengths().sum()


@pytest.mark.parametrize(
    "rows, match",
    [
        (np.zeros((3, 6)), "shape \\(N, 7\\).*\\(3, 6\\)"),
        (np.zeros((0, 7)), "no nodes"),
        (chain_swc([(0, 0, 0), (1, 0, 0)], parents=[-1, 5]), "node 2 has parent 5"),
        (chain_swc([(0, 0, 0), (1, 0, 0)], parents=[-1, 2]), "own parent"),
        (np.array([[1, 3, 0, 0, 0, 1, -1], [1, 3, 1, 0, 0, 1, 1]], float), "duplicate node ids, e.g. 1"),
        (np.array([[1, 3, np.nan, 0, 0, 1, -1]], float), "non-finite"),
        (np.array([[1.5, 3, 0, 0, 0, 1, -1]], float), "non-integer ids"),
    ],
)
def test_swc_to_graph_errors(rows, match):
    with pytest.raises(ValueError, match=match):
        swc_to_graph(rows, "swc_test")


def test_spanning_forest_drops_corner_shortcuts():
    skel = np.zeros((3, 4, 4), bool)
    skel[1, 1, 1] = skel[1, 1, 2] = skel[1, 2, 2] = True  # an L corner: 26-adjacency would make a triangle
    g = skeleton_forest(skel)
    assert len(g.edges) == 2 and g.edge_lengths().sum() == pytest.approx(2.0)
    diag = np.zeros((4, 4, 4), bool)
    diag[0, 0, 0] = diag[1, 1, 1] = diag[2, 2, 2] = True
    assert skeleton_forest(diag).edge_lengths().sum() == pytest.approx(2 * math.sqrt(3))
    assert skeleton_forest(diag, spacing=(2, 1, 1)).components()[0] == 1


def test_resample_graph_straight_y_and_cycle():
    g = swc_to_graph(chain_swc([(0, 0, 0), (0.3, 0, 0), (10, 0, 0)]))
    r = resample_graph(g, 1.0)
    assert r.num_nodes == 11 and np.allclose(np.sort(r.points[:, 2]), np.arange(11))
    assert np.allclose(r.edge_lengths(), 1.0)
    # Y: trunk 10, two branches of length 5 (3-4-5 triangles): branch point and tips kept
    y = chain_swc([(0, 0, 0), (10, 0, 0), (13, 4, 0), (13, -4, 0)], parents=[-1, 1, 2, 2])
    r = resample_graph(swc_to_graph(y), 1.0)
    assert r.num_nodes == 21 and len(r.edges) == 20
    assert (r.degrees() == 3).sum() == 1 and (r.degrees() == 1).sum() == 3
    # a pure cycle (square of side 2) becomes 8 nodes one unit apart
    square = SkeletonGraph(points=[(0, 0, 0), (0, 0, 2), (0, 2, 2), (0, 2, 0)], edges=[(0, 1), (1, 2), (2, 3), (3, 0)])
    r = resample_graph(square, 1.0)
    assert r.num_nodes == 8 and len(r.edges) == 8 and np.allclose(r.edge_lengths(), 1.0)


def test_subdivide_graph_keeps_polyline():
    g = swc_to_graph(chain_swc([(0, 0, 0), (2.5, 0, 0), (2.5, 0.4, 0)]))
    s = subdivide_graph(g, 1.0)
    assert s.num_nodes == 3 + 2  # 2.5 -> 3 pieces (2 new nodes), 0.4 -> 1 piece
    assert s.edge_lengths().sum() == pytest.approx(2.9)
    assert np.allclose(s.points[:3], g.points)


def test_graph_keeps_integer_voxels_and_validates():
    g = voxel_graph(np.array([[0, 0, 0], [0, 1, 1], [5, 5, 5]]), spacing=(2.0, 1.0, 1.0))
    assert g.points.dtype == np.int64 and g.edges.tolist() == [[0, 1]]
    np.testing.assert_allclose(g.positions()[1:], [[0.0, 1.0, 1.0], [10.0, 5.0, 5.0]])
    assert g.degrees().tolist() == [1, 1, 0] and g.components()[0] == 2
    sub = g.subgraph(np.array([False, True, True]))
    assert sub.num_nodes == 2 and len(sub.edges) == 0 and sub.points.dtype == np.int64
    # repeated edges in either orientation and self loops are dropped, the first orientation kept
    d = SkeletonGraph(np.zeros((3, 3)), [(1, 0), (0, 1), (2, 2), (2, 1)])
    assert d.edges.tolist() == [[1, 0], [2, 1]]
    with pytest.raises(ValueError, match=r"outside 0..1"):
        SkeletonGraph(np.zeros((2, 3)), [(0, 2)])
    with pytest.raises(ValueError, match=r"\(N, 3\).*\(2, 2\)"):
        SkeletonGraph(np.zeros((2, 2)), [])
    with pytest.raises(ValueError, match="spacing"):
        SkeletonGraph(np.zeros((2, 3)), [], spacing=(1.0, -1.0, 1.0))


def test_spanning_forest_prefers_the_first_of_equal_edges():
    # a unit square in a plane: four face edges of length 1 and two diagonals; the forest keeps the first three
    square = voxel_graph(np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1]]))
    forest = spanning_forest(square)
    assert forest.edges.tolist() == [[0, 1], [0, 2], [1, 3]]
    # with the edges listed the other way round, the other three face edges win
    reversed_edges = SkeletonGraph(square.points, square.edges[::-1])
    assert spanning_forest(reversed_edges).edges.tolist() == [[0, 2], [1, 3], [2, 3]]


def test_sections_order_direction_and_cycles():
    # a Y: trunk 0-1-2-3, branches 3-4-5 and 3-6, plus a key-to-key edge 7-8 and an isolated node 9
    pts = np.array([[0, 0, x] for x in range(4)] + [[0, 1, 4], [0, 2, 5], [0, -1, 4], [5, 0, 0], [5, 0, 1], [9, 9, 9]])
    edges = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (3, 6), (7, 8)]
    sec = unbranched_sections(SkeletonGraph(pts, edges))
    assert [p.tolist() for p in sec.paths] == [[0, 1, 2, 3], [3, 4, 5], [3, 6], [7, 8]]
    assert sec.ends.tolist() == [[0, 3], [3, 5], [3, 6], [7, 8]] and len(sec) == 4
    assert sec.node_section.tolist() == [-1, 0, 0, -1, 1, -1, -1, -1, -1, -1]
    np.testing.assert_allclose(sec.length, [3.0, 2 * math.sqrt(2), math.sqrt(2), 1.0])
    assert sec.is_key.tolist() == [True, False, False, True, False, True, True, True, True, True]
    # a pure cycle starts and ends at its lowest node
    ring = SkeletonGraph(np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1], [0, 1, 0]]), [(0, 1), (1, 2), (2, 3), (3, 0)])
    cyc = unbranched_sections(ring)
    assert [p.tolist() for p in cyc.paths] == [[0, 1, 2, 3, 0]] and cyc.length.tolist() == [4.0]


def test_add_paths_reuses_voxels_and_numbers_new_ones_in_path_order():
    g = voxel_graph(np.array([[0, 0, 0], [0, 0, 1]]))
    merged, ids = add_paths(g, [np.array([[0, 0, 1], [0, 0, 2], [0, 0, 3]]), np.array([[0, 1, 3], [0, 0, 3]])])
    assert [i.tolist() for i in ids] == [[1, 2, 3], [4, 3]]
    assert merged.edges.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4]] and merged.points[4].tolist() == [0, 1, 3]
