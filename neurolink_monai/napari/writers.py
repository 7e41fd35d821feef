# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""npe2 writer: an SWC Points layer (from the SWC reader or the "Segment and trace" widget) back to an SWC file."""

from __future__ import annotations

import os
from typing import Any

from neurolink_monai import __version__
from neurolink_monai.io import write_swc

from .layers import points_to_swc

__all__ = ["write_swc_points"]


def write_swc_points(path: str | os.PathLike, data: Any, meta: dict) -> list[str]:
    """Write a Points layer of SWC nodes with :func:`neurolink_monai.io.write_swc` (atomic; parents before children,
    ids 1..N, one root per tree), in voxel units, with the layer's scale recorded as the voxel spacing.

    Args:
        path: the ``.swc`` file to write.
        data: ``(N, 3)`` point coordinates ``(z, y, x)`` in voxels (the layer's data coordinates).
        meta: the layer's state; its ``features`` must hold ``id`` and ``parent`` (``type``, ``radius`` optional).

    Returns:
        ``[path]``.
    """
    swc = points_to_swc(data, meta.get("features"))
    scale = tuple(round(float(s), 6) for s in meta.get("scale", (1.0, 1.0, 1.0))[-3:])
    header = [
        f"written by neurolink_monai {__version__} (napari plugin) from layer {meta.get('name', '')!r}",
        "coordinates: voxel units, 0-based voxel centres, x -> W, y -> H, z -> D; radius in x voxels",
        f"voxel spacing (z, y, x) = {scale}",
    ]
    return [str(write_swc(path, swc, header=header))]
