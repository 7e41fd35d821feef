# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Microscopy I/O: 3D TIFF stacks (ImageJ / OME-TIFF) and SWC neuron traces, plus MONAI reader and writer.

Conventions: arrays are ``(D, H, W) = (z, y, x)``; spacing tuples are ``(z, y, x)``; SWC coordinates are voxel
units, 0-based voxel centres, node ``(x, y, z)`` at ``array[round(z), round(y), round(x)]``.
"""

from __future__ import annotations

from .atomic import atomic_output, atomic_write_bytes, atomic_write_text
from .swc import (
    SWC_COLUMNS,
    SWCError,
    first_tree,
    read_swc,
    sort_swc,
    swc_parent_index,
    swc_to_physical,
    swc_to_voxel,
    swc_tree_index,
    validate_swc,
    write_swc,
)
from .tiff import (
    TIFF_WRITE_DTYPES,
    TiffStackError,
    read_tiff_spacing,
    read_tiff_stack,
    read_tiff_stack_with_metadata,
    unit_to_micrometres,
    write_tiff_stack,
)
from .tiff_monai import (
    TiffStackReader,
    TiffStackWriter,
    metatensor_spacing,
    register_tiff_stack_io,
    spacing_from_affine,
)

register_tiff_stack_io()

__all__ = [
    "SWC_COLUMNS",
    "SWCError",
    "TIFF_WRITE_DTYPES",
    "TiffStackError",
    "TiffStackReader",
    "TiffStackWriter",
    "metatensor_spacing",
    "read_swc",
    "read_tiff_spacing",
    "read_tiff_stack",
    "read_tiff_stack_with_metadata",
    "register_tiff_stack_io",
    "sort_swc",
    "first_tree",
    "swc_parent_index",
    "swc_tree_index",
    "spacing_from_affine",
    "swc_to_physical",
    "swc_to_voxel",
    "unit_to_micrometres",
    "validate_swc",
    "write_swc",
    "write_tiff_stack",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
]
