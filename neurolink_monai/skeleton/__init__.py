# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Skeletons of binary masks, shared by the losses, metrics and tracing: topology-preserving curve thinning
(:func:`thin_curves`, in place of scikit-image's 3D ``skeletonize``, which loses even-width neurites) and the
26-neighbour adjacency of skeleton voxels that their graphs are built from."""

from __future__ import annotations

from .graph import (
    VoxelLookup,
    canonical_edges,
    connected_components,
    edge_lengths,
    neighbour_offsets,
    neighbour_pairs,
    neighbour_table,
    node_degrees,
)
from .thinning import thin_curve_voxels, thin_curves

__all__ = [
    "VoxelLookup",
    "canonical_edges",
    "connected_components",
    "edge_lengths",
    "neighbour_offsets",
    "neighbour_pairs",
    "neighbour_table",
    "node_degrees",
    "thin_curve_voxels",
    "thin_curves",
]
