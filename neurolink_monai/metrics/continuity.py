# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Skeleton continuity of a segmentation along a gold skeleton: breaks, splits, merges and expected run length
(the skeleton metrics of flood-filling networks, Januszewski et al., Nature Methods 2018), and the recall of gold
centreline nodes, optionally on a selection of them (e.g. the weak stretches of a synthetic neuron)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import csgraph

from neurolink_monai.metrics._validation import as_binary_mask
from neurolink_monai.skeleton import (
    SkeletonGraph,
    spanning_forest,
    subdivide_graph,
    swc_to_graph,
    thin_curves,
    voxel_graph,
)
from neurolink_monai.utils import as_positive_float, as_spacing, check_same_shape, to_numpy

__all__ = ["skeleton_continuity", "segment_labels", "centreline_recall"]


def segment_labels(pred: Any, instance_labels: bool = False) -> np.ndarray:
    """Segment ids of a (D, H, W) prediction: 26-connected components of a binary mask (``instance_labels=False``),
    or the given non-negative integer ids (``instance_labels=True``, 0 = background)."""
    if not instance_labels:
        mask = as_binary_mask(pred, "pred", ndims=(3,))
        labels, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
        return labels
    arr = to_numpy(pred)
    if arr.ndim != 3:
        raise ValueError(f"pred must have 3 dimensions (D, H, W), got shape {tuple(arr.shape)}.")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"instance labels must be integers, got dtype {arr.dtype}.")
    if arr.size and arr.min() < 0:
        raise ValueError(f"instance labels must be >= 0 (0 = background), got {arr.min()}.")
    return arr.astype(np.int64, copy=False)


def _gold_graph(gold: Any, shape: tuple[int, ...], spacing: Sequence[float] | None) -> SkeletonGraph:
    if not isinstance(gold, (str, os.PathLike)):
        arr = to_numpy(gold)
        if arr.ndim == 3:
            mask = as_binary_mask(arr, "gold", ndims=(3,))
            check_same_shape(mask, np.empty(shape, dtype=bool), "gold", "pred")
            return spanning_forest(voxel_graph(thin_curves(mask, return_coords=True), spacing))
    return swc_to_graph(gold, "gold", spacing)


def skeleton_continuity(
    pred: Any,
    gold: Any,
    spacing: Sequence[float] | None = None,
    step: float = 1.0,
    instance_labels: bool = False,
    merges_count_zero: bool = True,
) -> dict[str, float]:
    """FFN-style skeleton metrics of a segmentation along a gold skeleton (Januszewski et al., "High-precision
    automated reconstruction of neurons with flood-filling networks", Nature Methods 15, 2018).

    Definitions implemented here:

    1. The gold skeleton is an SWC tree (voxel coordinates) or a gold mask that is thinned (:func:`thin_curves`)
       and linked into a forest of voxel centres (:func:`spanning_forest` of the 26-neighbour graph).
       Every edge is subdivided so that consecutive nodes are at most ``step`` voxels apart
       (:func:`subdivide_graph`, the polyline and its length unchanged); each connected component is one gold tree
       (neuron).
    2. Each gold node takes the segment id of the voxel ``[round(z), round(y), round(x)]``: the 26-connected
       component of ``pred`` holding it, or 0 (background; also for nodes outside the image).
    3. A segment is *merging* when it holds nodes of two or more gold trees; ``merges`` = sum over segments of
       (number of gold trees it touches - 1).
    4. A gold edge is *correct* when both nodes carry the same non-zero id, a *split edge* when they carry two
       different non-zero ids, *omitted* when either node is background.
    5. A *run* is a connected piece of a gold tree joined by correct edges (all its nodes in one segment);
       ``breaks`` = sum over gold trees of (number of runs - 1), i.e. how many times a segmented neurite is cut
       (by a gap or by a change of segment); a branch that is missed entirely is omitted, not a break.
       ``splits`` = sum over gold trees of (number of distinct segments touched - 1), the FFN split count.
    6. ``erl`` (expected run length) = sum over runs of ``run_length**2 / total_gold_length``: the expected length
       of error-free neurite found from a point drawn uniformly along the gold skeleton. With
       ``merges_count_zero`` (the FFN convention) runs in merging segments count as length 0. ``erl_gold`` is
       the ERL of a perfect segmentation (sum of squared tree lengths / total length) and ``erl_fraction`` =
       ``erl / erl_gold``. Lengths use ``spacing`` when given.

    Args:
        pred: (D, H, W) binary mask (or instance ids, see ``instance_labels``).
        gold: (N, 7) SWC array or path (voxel coordinates, node (x, y, z) at index [round(z), round(y), round(x)]),
            or a (D, H, W) binary gold mask.
        spacing: voxel size (z, y, x) for lengths; ``None`` measures in voxels.
        step: gold resampling step in voxels (<= 1 makes every voxel along the gold path be looked up).
        instance_labels: ``pred`` holds segment ids (0 = background) instead of a binary mask.
        merges_count_zero: give runs in merging segments zero length in the ERL.

    Returns:
        ``{"breaks", "splits", "merges", "erl", "erl_gold", "erl_fraction", "omitted_fraction", "n_runs",
        "total_length", "correct_edges", "split_edges", "omitted_edges", "merged_edges"}`` as floats;
        ``erl_fraction`` and ``omitted_fraction`` are NaN when the gold skeleton has zero length.
    """
    step = as_positive_float(step, "step")
    sp = None if spacing is None else as_spacing(spacing)
    labels = segment_labels(pred, instance_labels)
    graph = subdivide_graph(_gold_graph(gold, labels.shape, sp), step)

    n_trees, tree = graph.components()
    vox = np.rint(graph.points).astype(np.int64)
    inside = np.all((vox >= 0) & (vox < np.asarray(labels.shape)), axis=1)
    node_seg = np.zeros(graph.num_nodes, dtype=np.int64)
    node_seg[inside] = labels[tuple(vox[inside].T)]

    # distinct (segment, tree) pairs give both the merge and the split counts
    fg = node_seg > 0
    pairs = np.unique(np.stack([node_seg[fg], tree[fg]], axis=1), axis=0) if fg.any() else np.empty((0, 2), np.int64)
    seg_ids, trees_per_seg = np.unique(pairs[:, 0], return_counts=True)
    merges = int(np.sum(trees_per_seg - 1))
    merging_ids = seg_ids[trees_per_seg > 1]
    segs_per_tree = np.bincount(pairs[:, 1], minlength=n_trees)
    splits = int(np.sum(np.maximum(segs_per_tree - 1, 0)))

    a, b = graph.edges[:, 0], graph.edges[:, 1]
    length = graph.edge_lengths()
    total = float(length.sum())
    sa, sb = node_seg[a], node_seg[b]
    correct = (sa == sb) & (sa > 0)
    split_edge = (sa != sb) & (sa > 0) & (sb > 0)
    omitted = (sa == 0) | (sb == 0)
    merged_edge = correct & np.isin(sa, merging_ids)

    n = graph.num_nodes
    run_graph = sparse.csr_matrix((np.ones(int(correct.sum()), np.int8), (a[correct], b[correct])), shape=(n, n))
    _, run_of_node = csgraph.connected_components(run_graph, directed=False)
    run_ids, run_of_node = np.unique(run_of_node[fg], return_inverse=True)  # runs are made of foreground nodes
    node_run = np.full(n, -1, dtype=np.int64)
    node_run[fg] = run_of_node
    n_runs = len(run_ids)
    runs_per_tree = np.zeros(n_trees, dtype=np.int64)
    if n_runs:
        run_tree = np.zeros(n_runs, dtype=np.int64)
        run_tree[node_run[fg]] = tree[fg]
        runs_per_tree = np.bincount(run_tree, minlength=n_trees)
    breaks = int(np.sum(np.maximum(runs_per_tree - 1, 0)))

    run_length = np.bincount(node_run[a[correct]], weights=length[correct], minlength=n_runs)
    if merges_count_zero and n_runs:
        run_seg = np.zeros(n_runs, dtype=np.int64)
        run_seg[node_run[fg]] = node_seg[fg]
        run_length = np.where(np.isin(run_seg, merging_ids), 0.0, run_length)
    tree_length = np.bincount(tree[a], weights=length, minlength=n_trees)
    if total > 0:
        erl = float((run_length**2).sum() / total)
        erl_gold = float((tree_length**2).sum() / total)
        erl_fraction = erl / erl_gold
        omitted_fraction = float(length[omitted].sum() / total)
    else:
        erl = erl_gold = 0.0
        erl_fraction = omitted_fraction = float("nan")
    return {
        "breaks": float(breaks),
        "splits": float(splits),
        "merges": float(merges),
        "erl": erl,
        "erl_gold": erl_gold,
        "erl_fraction": erl_fraction,
        "omitted_fraction": omitted_fraction,
        "n_runs": float(n_runs),
        "total_length": total,
        "correct_edges": float(correct.sum()),
        "split_edges": float(split_edge.sum()),
        "omitted_edges": float(omitted.sum()),
        "merged_edges": float(merged_edge.sum()),
    }


def centreline_recall(pred: Any, gold_swc: Any, select: Any | None = None) -> float:
    """Fraction of gold SWC nodes whose voxel ``[round(z), round(y), round(x)]`` lies inside ``pred``.

    With nodes about one voxel apart (as in resampled or synthetic traces) this is the recall of the gold centreline
    by length. ``select`` restricts it to some nodes, e.g. ``node_weak >= 0.5`` for the weak stretches of a
    synthetic neuron (:func:`neurolink_monai.data.synthetic.regenerate_sample`). Nodes outside the image count as
    missed.

    Args:
        pred: (D, H, W) binary mask.
        gold_swc: (N, 7) SWC array or path, voxel coordinates.
        select: optional (N,) boolean array over the SWC rows, in file order.

    Returns:
        The recall in [0, 1], or NaN when no node is selected.
    """
    p = as_binary_mask(pred, "pred", ndims=(3,))
    graph = swc_to_graph(gold_swc, "gold_swc")
    points = graph.points
    if select is not None:
        sel = np.asarray(to_numpy(select), dtype=bool).reshape(-1)
        if sel.shape[0] != len(points):
            raise ValueError(f"select must have one entry per SWC node ({len(points)}), got shape {list(sel.shape)}.")
        points = points[sel]
    if len(points) == 0:
        return float("nan")
    idx = np.round(points).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(p.shape)), axis=1)
    hit = np.zeros(len(idx), dtype=bool)
    hit[inside] = p[tuple(idx[inside].T)]
    return float(hit.mean())
