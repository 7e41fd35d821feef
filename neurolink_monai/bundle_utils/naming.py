# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""File naming of the bundle: the input suffixes it reads, an input's name stem, and the output files of an input.

Imported by the input checks (:mod:`.inputs`), the writer (:mod:`.writers`) and the handlers alike, so that they
agree on names without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..transforms.orientation import NIFTI_SUFFIXES

__all__ = [
    "INPUT_SUFFIXES",
    "NIFTI_SUFFIXES",
    "OUTPUT_SUFFIXES",
    "SWC_SUFFIX",
    "TIFF_SUFFIXES",
    "input_stem",
    "input_suffix",
    "output_paths",
]

TIFF_SUFFIXES = (".tif", ".tiff")
SWC_SUFFIX = ".swc"
INPUT_SUFFIXES = TIFF_SUFFIXES + NIFTI_SUFFIXES
OUTPUT_SUFFIXES = {
    "prob": "_prob.tif",
    "seg": "_seg.tif",
    "swc": ".swc",
    "mip": "_mip.png",
    "trace": "_trace.png",
    "direction": "_dir.tif",
    "distance": "_dist.tif",
}


def input_suffix(path: Path) -> str | None:
    """The input suffix :data:`INPUT_SUFFIXES` that ``path``'s name ends with (any case; longest first), else None."""
    name = path.name.lower()
    for suffix in sorted(INPUT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return None


def input_stem(path: str | os.PathLike) -> str:
    """Output name stem of an input: the file name without ``.tif``/``.tiff``/``.nii``/``.nii.gz`` (and ``.ome``).

    ``stack.ome.tif`` -> ``stack``, ``brain.nii.gz`` -> ``brain``, ``OP_1.tif`` -> ``OP_1``.
    """
    p = Path(path)
    suffix = input_suffix(p)
    name = p.name[: -len(suffix)] if suffix else p.stem
    if name.lower().endswith(".ome"):
        name = name[:-4]
    return name


def output_paths(output_dir: str | os.PathLike, input_path: str | os.PathLike) -> dict[str, Path]:
    """Output files of one input: ``<output_dir>/<stem>_prob.tif``, ``_seg.tif``, ``.swc``, ``_mip.png``,
    ``_trace.png``, ``_dir.tif``, ``_dist.tif`` (the stem is the input name without ``.tif``/``.tiff``/``.nii(.gz)``).
    """
    stem = input_stem(input_path)
    folder = Path(output_dir)
    return {name: folder / f"{stem}{suffix}" for name, suffix in OUTPUT_SUFFIXES.items()}
