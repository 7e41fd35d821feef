# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Skeletons of binary masks and their graphs, shared by the losses, metrics and tracing: topology-preserving curve
thinning (:func:`thin_curves`, in place of scikit-image's 3D ``skeletonize``, which loses even-width neurites), the
26-neighbour adjacency of skeleton voxels, the one graph class (:class:`SkeletonGraph`, built from SWC arrays or
skeleton voxels, reduced to a spanning forest), its unbranched sections and its resamplings."""

from __future__ import annotations

from .adjacency import (
    VoxelLookup,
    canonical_edges,
    connected_components,
    edge_lengths,
    neighbour_offsets,
    neighbour_pairs,
    neighbour_table,
    node_degrees,
)
from .graph import SkeletonGraph, add_paths, spanning_forest, swc_to_graph, voxel_graph
from .sections import Sections, resample_graph, subdivide_graph, unbranched_sections
from .thinning import thin_curves

__all__ = [
    "SkeletonGraph",
    "Sections",
    "VoxelLookup",
    "add_paths",
    "canonical_edges",
    "connected_components",
    "edge_lengths",
    "neighbour_offsets",
    "neighbour_pairs",
    "neighbour_table",
    "node_degrees",
    "resample_graph",
    "spanning_forest",
    "subdivide_graph",
    "swc_to_graph",
    "thin_curves",
    "unbranched_sections",
    "voxel_graph",
]
