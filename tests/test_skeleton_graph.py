# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""neurolink_monai.skeleton.graph: the voxel adjacency the losses, metrics and tracing graphs share."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neurolink_monai.losses import build_centreline_graph
from neurolink_monai.metrics import skeleton_to_graph
from neurolink_monai.skeleton import (
    VoxelLookup,
    canonical_edges,
    connected_components,
    edge_lengths,
    neighbour_offsets,
    neighbour_pairs,
    neighbour_table,
    node_degrees,
)
from neurolink_monai.tracing import neighbour_edges


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
    with pytest.raises(ValueError, match="ndim must be a positive integer, got 0"):
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
    assert set(map(tuple, neighbour_edges(coords).tolist())) == expected
    cg = build_centreline_graph(None, centreline=mask[None])
    k = cg.num_centreline
    losses_pairs = {(min(i, j), max(i, j)) for i, row in enumerate(cg.neighbours.tolist()) for j in row if j < k}
    assert losses_pairs == expected
    # the metrics' graph is the spanning forest of the same adjacency: same components, one edge fewer per piece
    graph = skeleton_to_graph(mask)
    n_comp, _ = connected_components(np.array(sorted(expected)).reshape(-1, 2), len(coords))
    assert graph.components()[0] == n_comp and len(graph.edges) == len(coords) - n_comp
    assert {tuple(sorted(e)) for e in graph.edges.tolist()} <= expected
