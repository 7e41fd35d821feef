# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""SWC trees <-> napari layer data, in plain NumPy (napari itself is not imported, so this is testable anywhere).

A tree becomes two layers (napari ``LayerDataTuple`` s ``(data, meta, layer_type)``):

* a **Points** layer, one point per SWC node at ``(z, y, x)`` = ``(node z, node y, node x)`` (the project's array
  order; SWC files are in voxel units, see :mod:`neurolink_monai.io.swc`), scaled by the voxel spacing, with the
  features ``id``, ``type``, ``radius``, ``parent`` and ``tree`` (index of the node's root, 0-based, in file order)
  and, for a traced result, ``status`` (see :data:`STATUS_NAMES`). Points are coloured by tree and sized by the
  radius. This layer holds the whole SWC and is the one the writer saves: :func:`points_to_swc` reads it back.
* a **Vectors** layer, one vector per parent-child edge, drawn as a line from the parent to the child, coloured by
  tree, or by edge status for a traced result. It is derived from the Points layer, for display only.

Points + Vectors round-trip exactly (every node keeps its id, type, radius and parent) and draw large trees fast
(a Shapes layer of paths would triangulate every path in Python and keep per-path, not per-node, properties).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neurolink_monai.data.preview import TREE_COLOURS
from neurolink_monai.io.swc import SWCError, sort_swc
from neurolink_monai.io.swc import swc_tree_index as tree_index
from neurolink_monai.io.swc import validate_swc
from neurolink_monai.utils import as_spacing

__all__ = [
    "STATUS_COLOURS",
    "STATUS_NAMES",
    "TREE_COLOURS",
    "edge_status",
    "points_to_swc",
    "spacing_from_header",
    "swc_to_layer_data",
    "tree_index",
]

# edge status of a traced tree: 0 confident, 1 low confidence, 2 bridged (crosses voxels below the threshold)
STATUS_NAMES = ("confident", "low confidence", "bridged")
STATUS_COLOURS = np.array([[0.0, 1.0, 1.0, 1.0], [1.0, 0.85, 0.0, 1.0], [1.0, 0.0, 1.0, 1.0]])
_SPACING_RE = re.compile(r"spacing \(z, y, x\)\s*[=:]\s*\(([^)]*)\)", re.IGNORECASE)


def spacing_from_header(lines: Sequence[str]) -> tuple[float, float, float] | None:
    """The voxel spacing ``(z, y, x)`` stated in an SWC header as this project writes it, e.g.
    ``# voxel spacing (z, y, x) = (2.0, 0.5, 0.5)``, or None when no line states one."""
    for line in lines:
        if not line.lstrip().startswith("#"):
            continue
        m = _SPACING_RE.search(line)
        if m:
            try:
                return tuple(float(v) for v in as_spacing([float(v) for v in m.group(1).split(",")]))
            except (TypeError, ValueError):
                return None
    return None


def edge_status(
    points_zyx: np.ndarray, parent_row: np.ndarray, prob: np.ndarray, threshold: float, confident: float
) -> np.ndarray:
    """Status of the edge from each non-root node to its parent, from the probability under both ends.

    An edge is *bridged* (2) when either end lies on a voxel below ``threshold``: only a bridge of the tracer
    (:mod:`neurolink_monai.tracing.bridging`) crosses such voxels; *low confidence* (1) when either end is below
    ``confident``; else *confident* (0). Returns ``(n_edges,)`` int64 for the children in row order.
    """
    if not 0.0 < threshold <= confident <= 1.0:
        raise ValueError(f"need 0 < threshold <= confident <= 1, got threshold={threshold!r}, confident={confident!r}.")
    idx = np.clip(np.rint(points_zyx).astype(np.int64), 0, np.array(prob.shape) - 1)
    p_node = np.asarray(prob)[idx[:, 0], idx[:, 1], idx[:, 2]]
    child = np.flatnonzero(parent_row >= 0)
    lowest = np.minimum(p_node[child], p_node[parent_row[child]])
    return np.where(lowest < threshold, 2, np.where(lowest < confident, 1, 0)).astype(np.int64)


def swc_to_layer_data(
    swc: np.ndarray,
    name: str = "SWC",
    spacing: Sequence[float] | None = None,
    translate: Sequence[float] | None = None,
    status: np.ndarray | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[tuple[np.ndarray, dict, str]]:
    """Points (nodes) and Vectors (edges) layer data of an ``(N, 7)`` voxel-unit SWC array.

    Args:
        swc: the SWC (validated here).
        name: Points layer name; the Vectors layer is ``f"{name} edges"``.
        spacing: voxel spacing ``(z, y, x)``, the layers' ``scale``; default ``(1, 1, 1)``.
        translate: layer translation in world units (the image layer's), default 0.
        status: per-edge status (see :func:`edge_status`, one per non-root node in row order); colours the edges
            by :data:`STATUS_COLOURS` instead of by tree, and is stored as the node feature ``status`` (-1 for roots).
        metadata: extra layer metadata (e.g. the SWC header).

    Returns:
        ``[(points (N, 3) z, y, x, meta, "points"), (vectors (E, 2, 3), meta, "vectors")]``.
    """
    arr = validate_swc(swc, f"SWC array for layer {name!r}")
    scale = tuple(float(v) for v in as_spacing(spacing)) if spacing is not None else (1.0, 1.0, 1.0)
    shift = tuple(float(t) for t in translate) if translate is not None else (0.0, 0.0, 0.0)
    points = arr[:, [4, 3, 2]].copy()
    parent_row, tree = tree_index(arr)
    features = {
        "id": arr[:, 0].astype(np.int64),
        "type": arr[:, 1].astype(np.int64),
        "radius": arr[:, 5].copy(),
        "parent": arr[:, 6].astype(np.int64),
        "tree": tree,
    }
    child = np.flatnonzero(parent_row >= 0)
    edge_colour = TREE_COLOURS[tree[child] % len(TREE_COLOURS)]
    if status is not None:
        status = np.asarray(status, dtype=np.int64)
        if status.shape != child.shape:
            raise ValueError(f"status must hold one value per edge ({len(child)}), got shape {status.shape}.")
        node_status = np.full(len(arr), -1, dtype=np.int64)
        node_status[child] = status
        features["status"] = node_status
        edge_colour = STATUS_COLOURS[status]
    meta_common = {"scale": scale, "translate": shift, "metadata": dict(metadata or {})}
    points_meta = {
        **meta_common,
        "name": name,
        "features": features,
        "size": np.maximum(2.0 * arr[:, 5], 1.0),
        "face_color": TREE_COLOURS[tree % len(TREE_COLOURS)] if len(arr) else "white",
        "border_width": 0.0,
        # a traced tree is read through its edge colours: fainter nodes
        "opacity": 0.6 if status is None else 0.25,
    }
    vectors = np.zeros((len(child), 2, 3), dtype=np.float64)
    vectors[:, 0] = points[parent_row[child]]
    vectors[:, 1] = points[child] - points[parent_row[child]]
    vectors_meta = {
        **meta_common,
        "name": f"{name} edges",
        "edge_color": edge_colour if len(child) else "white",
        "edge_width": 1.5,
        "vector_style": "line",
        "length": 1.0,
    }
    return [(points, points_meta, "points"), (vectors, vectors_meta, "vectors")]


def _feature(features: Mapping[str, Any], key: str, n: int, default: float | None) -> np.ndarray:
    if key in features:
        values = np.asarray(features[key], dtype=np.float64)
        if values.shape != (n,):
            raise SWCError(f"feature {key!r} holds {values.shape} values for {n} points.")
        return values
    if default is None:
        raise SWCError(f"the points layer has no {key!r} feature; it is not an SWC layer of this plugin.")
    return np.full(n, default, dtype=np.float64)


def points_to_swc(points_zyx: np.ndarray, features: Mapping[str, Any] | None) -> np.ndarray:
    """The SWC ``(N, 7)`` of a Points layer made by :func:`swc_to_layer_data`, after the user's edits, sorted.

    Proofreading edits are honoured: a node whose parent was deleted becomes a root (its subtree a tree of its
    own); a point added by hand (NaN or repeated ``id``) becomes a new one-node tree with a fresh id. The result is
    sorted by :func:`neurolink_monai.io.swc.sort_swc` (parents before children, ids 1..N, one root per tree).

    Raises:
        SWCError: the layer has no ``id``/``parent`` features (not an SWC layer) or the points are not 3D.
    """
    pts = np.asarray(points_zyx, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise SWCError(f"an SWC layer holds 3D points (N, 3), got shape {pts.shape}.")
    n = len(pts)
    feats = {} if features is None else features
    if hasattr(feats, "to_dict") and not isinstance(feats, Mapping):  # a pandas DataFrame
        feats = {k: np.asarray(feats[k]) for k in feats.columns}
    ids = _feature(feats, "id", n, None)
    parents = _feature(feats, "parent", n, None)
    types = np.nan_to_num(_feature(feats, "type", n, 0.0), nan=0.0)
    radius = np.nan_to_num(_feature(feats, "radius", n, 1.0), nan=1.0)
    ids, parents = ids.copy(), np.nan_to_num(parents, nan=-1.0)
    next_id = int(np.nanmax(ids)) + 1 if n and np.isfinite(ids).any() else 1
    seen: set[int] = set()
    for row in range(n):
        if not np.isfinite(ids[row]) or int(ids[row]) in seen:
            ids[row], parents[row] = next_id, -1
            next_id += 1
        seen.add(int(ids[row]))
    parents[~np.isin(parents, ids)] = -1
    swc = np.column_stack([ids, types, pts[:, 2], pts[:, 1], pts[:, 0], radius, parents])
    return sort_swc(swc, "points layer") if n else np.zeros((0, 7))
