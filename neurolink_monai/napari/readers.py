# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""npe2 readers: SWC traces, TIFF stacks with their spacing, and the blockwise OME-Zarr outputs (lazily).

Each ``get_*_reader(path)`` returns a reader function, or None when the path is not for it (then napari asks
another reader). Reader functions return napari ``LayerDataTuple`` s and never modify the file they read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from neurolink_monai.io import read_swc, read_tiff_stack_with_metadata

from .layers import spacing_from_header, swc_to_layer_data

__all__ = [
    "get_swc_reader",
    "get_tiff_reader",
    "get_zarr_reader",
    "read_blockwise_zarr",
    "read_swc_layers",
    "read_tiff_layers",
]

LayerData = list[tuple[Any, dict, str]]
ReaderFunction = Callable[[Any], LayerData]
_TIFF_SUFFIXES = (".tif", ".tiff")
# display defaults of the blockwise outputs; contrast limits are fixed so that napari never scans a lazy volume
_ZARR_LAYERS = {
    "prob": {"colormap": "magma", "blending": "additive"},
    "mask": {},
    "direction": {"colormap": "twilight_shifted", "contrast_limits": (-1.0, 1.0), "visible": False},
    "distance": {"colormap": "viridis", "contrast_limits": (0.0, 8.0), "visible": False},
}


def _single_path(path: Any) -> str | None:
    if isinstance(path, (list, tuple)):
        return str(path[0]) if len(path) == 1 else None
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else None


def _header_lines(path: Path, limit: int = 200) -> list[str]:
    lines = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.strip() and not line.lstrip().startswith("#"):
                break
            lines.append(line.rstrip("\n"))
            if len(lines) >= limit:
                break
    return lines


def read_swc_layers(path: Any) -> LayerData:
    """Points (nodes) and Vectors (edges) layers of an SWC file (see :mod:`neurolink_monai.napari.layers`).

    The voxel spacing, when the header states it (``spacing (z, y, x) = (...)``, as the project's tools write it),
    becomes the layers' scale, so the tree overlays its TIFF stack opened with :func:`read_tiff_layers`.
    """
    p = Path(_single_path(path) or path)
    swc = read_swc(p)
    header = _header_lines(p)
    spacing = spacing_from_header(header)
    return swc_to_layer_data(swc, name=p.stem, spacing=spacing, metadata={"path": str(p), "header": header})


def read_tiff_layers(path: Any) -> LayerData:
    """An Image layer of a 3D TIFF stack with its voxel spacing ``(z, y, x)`` as scale (a channel axis splits)."""
    p = Path(_single_path(path) or path)
    czyx, meta = read_tiff_stack_with_metadata(p)
    layer_meta: dict[str, Any] = {
        "name": p.stem,
        "scale": tuple(float(s) for s in meta["spacing"]),
        "metadata": {"path": str(p), "spacing_unit": meta["spacing_unit"], "spacing_source": meta["spacing_source"]},
    }
    if meta["has_channel"] and czyx.shape[0] > 1:
        return [(czyx, {**layer_meta, "channel_axis": 0}, "image")]
    return [(czyx[0], layer_meta, "image")]


def _ome_scale(attrs: Any, fallback: tuple[float, ...]) -> tuple[float, ...]:
    multiscales = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales") or []
    try:
        for t in multiscales[0]["datasets"][0]["coordinateTransformations"]:
            if t.get("type") == "scale":
                return tuple(float(s) for s in t["scale"])
    except (IndexError, KeyError, TypeError):
        pass
    return fallback


def read_blockwise_zarr(path: Any) -> LayerData:
    """Lazy layers (dask arrays on the Zarr chunks, nothing loaded up front) of a blockwise inference output.

    ``prob/0`` becomes an Image, ``mask/0`` a Labels layer, ``direction/0`` three Images (z, y, x components) and
    ``distance/0`` an Image; each with the OME ``scale`` (the input spacing) of its group.
    """
    import dask.array as da
    import zarr

    from neurolink_monai.inference.blockwise import read_record

    p = Path(_single_path(path) or path)
    record = read_record(p) or {}
    root = zarr.open_group(str(p), mode="r")
    fallback = tuple(float(s) for s in (record.get("spacing") or (1.0, 1.0, 1.0)))
    layers: LayerData = []
    for name, style in _ZARR_LAYERS.items():
        if name not in root or "0" not in root[name]:
            continue
        arr = da.from_zarr(root[name]["0"])
        scale = _ome_scale(root[name].attrs.asdict(), fallback)
        meta: dict[str, Any] = {"name": f"{p.stem} {name}", "scale": scale, "metadata": {"path": str(p / name / "0")}}
        meta.update(style)
        if name == "prob":
            meta["contrast_limits"] = (0.0, 255.0) if arr.dtype == np.uint8 else (0.0, 1.0)
        if name == "direction":
            meta.update(channel_axis=0, name=[f"{p.stem} dir_{a}" for a in "zyx"], scale=scale[1:])
        layers.append((arr, meta, "labels" if name == "mask" else "image"))
    return layers


def get_swc_reader(path: Any) -> ReaderFunction | None:
    """The SWC reader for one ``*.swc`` path, else None."""
    p = _single_path(path)
    return read_swc_layers if p is not None and p.lower().endswith(".swc") else None


def get_tiff_reader(path: Any) -> ReaderFunction | None:
    """The TIFF stack reader for one ``*.tif``/``*.tiff`` path, else None."""
    p = _single_path(path)
    return read_tiff_layers if p is not None and p.lower().endswith(_TIFF_SUFFIXES) else None


def get_zarr_reader(path: Any) -> ReaderFunction | None:
    """The blockwise-output reader for a ``*.zarr`` folder written by ``neurolink_monai.inference.blockwise``."""
    from neurolink_monai.inference.blockwise import read_record

    p = _single_path(path)
    if p is None or not os.path.isdir(p) or read_record(p.rstrip("/")) is None:
        return None
    return read_blockwise_zarr
