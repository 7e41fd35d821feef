# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The label side (no gradient) of the continuity loss: the centreline voxels of the label and their adjacency graph,
computed once per batch with numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..skeleton import neighbour_table, thin_curves

__all__ = ["CentrelineGraph", "build_centreline_graph"]


@dataclass(frozen=True)
class CentrelineGraph:
    """Centreline voxels of a batch of binary labels and their adjacency.

    Voxel indices are flat (C-order) indices into the whole batch array of shape ``(B, *spatial)``, so the
    prediction is gathered with one indexing operation. ``K`` is the number of centreline voxels in the batch.

    Attributes:
        centreline_index: ``(K,)`` int64 flat index of every centreline voxel, sorted.
        sample: ``(K,)`` int64 batch index of every centreline voxel.
        neighbours: ``(K, 3**ndim - 1)`` int64 index (into ``0 .. K - 1``) of the centreline voxels adjacent to each
            centreline voxel (full 26-/8-connectivity); the padding value ``K`` marks "no neighbour".
        batch_size: ``B``.
    """

    centreline_index: np.ndarray
    sample: np.ndarray
    neighbours: np.ndarray
    batch_size: int

    @property
    def num_centreline(self) -> int:
        return int(self.centreline_index.shape[0])

    def counts(self) -> np.ndarray:
        """``(B,)`` number of centreline voxels of each sample."""
        return np.bincount(self.sample, minlength=self.batch_size)


def _sample_graph(centreline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted flat indices and adjacency (local indices, padding ``K``) of one sample's centreline."""
    centre = np.argwhere(centreline)  # C-order, hence sorted flat indices
    neighbours = neighbour_table(centre)
    k = centre.shape[0]
    if k == 0:
        return np.zeros(0, dtype=np.int64), neighbours
    centre_flat = np.ravel_multi_index(centre.T, centreline.shape).astype(np.int64)
    neighbours[neighbours < 0] = k
    return centre_flat, neighbours


def build_centreline_graph(label: np.ndarray | None, centreline: np.ndarray | None = None) -> CentrelineGraph:
    """Build the :class:`CentrelineGraph` of a batch.

    Args:
        label: ``(B, *spatial)`` bool labels (2D or 3D spatial), thinned with
            :func:`~neurolink_monai.skeleton.thin_curves` (one voxel wide, 26-connected, 8 in 2D, one connected
            piece per connected component); may be None when ``centreline`` is given.
        centreline: optional ``(B, *spatial)`` bool centreline to use instead, e.g. a rasterised SWC trace.

    Returns:
        the batch's :class:`CentrelineGraph`.
    """
    source = label if centreline is None else centreline
    if source is None:
        raise ValueError("build_centreline_graph needs a label or a centreline, got neither.")
    if source.dtype != bool:
        raise TypeError(f"label/centreline must be a bool array, got dtype {source.dtype}.")
    if source.ndim not in (3, 4):
        raise ValueError(f"label/centreline must be (B, H, W) or (B, D, H, W), got shape {list(source.shape)}.")
    batch, volume = source.shape[0], int(np.prod(source.shape[1:]))
    centre_parts, sample_parts, neighbour_parts = [], [], []
    k_total = 0
    for b in range(batch):
        skeleton = thin_curves(source[b]) if centreline is None else source[b]
        centre, neighbours = _sample_graph(skeleton)
        k = centre.shape[0]
        centre_parts.append(centre + b * volume)
        sample_parts.append(np.full(k, b, dtype=np.int64))
        # the local padding value k becomes -1 here and the global padding value K below
        neighbour_parts.append(np.where(neighbours == k, -1, neighbours + k_total))
        k_total += k
    neighbours_all = np.concatenate(neighbour_parts, axis=0)
    neighbours_all[neighbours_all < 0] = k_total
    return CentrelineGraph(
        centreline_index=np.concatenate(centre_parts),
        sample=np.concatenate(sample_parts),
        neighbours=neighbours_all,
        batch_size=batch,
    )
