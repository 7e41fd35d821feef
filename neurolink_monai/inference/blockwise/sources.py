# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Lazy, picklable access to a 3D input volume: a Zarr array (v2 or v3), OME-Zarr level 0, or a large TIFF.

A :class:`VolumeSource` only holds the path and how to index it; each process opens the file on first access and
keeps it open, so a Dask task carries a few hundred bytes instead of the data, and each worker reads just the blocks
it processes.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...utils import as_spacing

__all__ = ["BlockwiseInputError", "VolumeSource", "open_volume"]


class BlockwiseInputError(ValueError):
    """The input volume is missing, corrupt, or not a single-channel 3D stack; the message names the path."""


_OPEN: dict[tuple, Any] = {}
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class VolumeSource:
    """A read-only ``(D, H, W)`` view of a stored volume, opened lazily in each process.

    Attributes:
        path: the file (TIFF) or Zarr store folder.
        kind: ``"zarr"``, ``"tiff-memmap"`` (uncompressed TIFF, memory-mapped) or ``"tiff-zarr"`` (compressed or
            tiled TIFF through tifffile's Zarr store).
        array_path: the array inside the Zarr store (``""`` for the store root).
        index: how the stored axes map to ``(D, H, W)``: ``None`` for a kept axis, ``0`` for a singleton axis that
            is dropped (e.g. the ``t`` and ``c`` axes of a 5D OME-Zarr).
        shape: ``(D, H, W)``.
        dtype: the stored sample type, e.g. ``"uint16"``.
        spacing: voxel size ``(z, y, x)``, micrometres when the metadata gives a length unit.
        spacing_source: where ``spacing`` came from: ``"ome-zarr"``, ``"imagej"``, ``"ome-tiff"`` or ``"none"``.
        chunks: the stored chunk shape in ``(D, H, W)``, when the format has one.
        fingerprint: what identifies the stored content cheaply (shape, dtype, metadata file size and mtime).
    """

    path: str
    kind: str
    array_path: str
    index: tuple[int | None, ...]
    shape: tuple[int, int, int]
    dtype: str
    spacing: tuple[float, float, float]
    spacing_source: str
    chunks: tuple[int, int, int] | None = None
    fingerprint: dict = field(default_factory=dict, compare=False)

    @property
    def ndim(self) -> int:
        return 3

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def _key(self) -> tuple:
        # the fingerprint is part of the key: a long-lived worker must not reuse the handle of a replaced file
        return (self.kind, self.path, self.array_path, json.dumps(self.fingerprint, sort_keys=True))

    def _array(self) -> Any:
        key = self._key()
        arr = _OPEN.get(key)
        if arr is None:
            with _OPEN_LOCK:
                arr = _OPEN.get(key)
                if arr is None:
                    arr = _open_array(self.kind, self.path, self.array_path)
                    _OPEN[key] = arr
        return arr

    def __getitem__(self, key: tuple) -> np.ndarray:
        """Read ``volume[key]`` for a tuple of three slices (steps allowed) as a numpy array."""
        if not isinstance(key, tuple) or len(key) != 3:
            raise IndexError(f"VolumeSource takes three slices (z, y, x), got {key!r}.")
        full: list[Any] = []
        it = iter(key)
        for i in self.index:
            full.append(next(it) if i is None else i)
        try:
            return np.asarray(self._array()[tuple(full)])
        except Exception as e:
            raise BlockwiseInputError(f"{self.path}: cannot read block {key!r} of the input volume ({e}).") from e

    def describe(self) -> dict:
        """A JSON-able description that identifies this input in an output's record."""
        return {
            "path": self.path,
            "kind": self.kind,
            "array_path": self.array_path,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "spacing": list(self.spacing),
            "fingerprint": self.fingerprint,
        }


def _open_array(kind: str, path: str, array_path: str) -> Any:
    import tifffile
    import zarr

    if kind == "zarr":
        return zarr.open_array(path if not array_path else os.path.join(path, array_path), mode="r")
    if kind == "tiff-memmap":
        return tifffile.memmap(path, mode="r")
    if kind == "tiff-zarr":
        tf = tifffile.TiffFile(path)  # kept open for the life of the process, with the store that reads through it
        return zarr.open(tf.series[0].aszarr(), mode="r")
    raise ValueError(f"unknown volume kind {kind!r}.")


def _stat_fingerprint(*files: Path) -> dict:
    out = {}
    for f in files:
        if f.exists():
            st = f.stat()
            out[f.name] = [st.st_size, st.st_mtime_ns]
    return out


def _squeeze_index(path: str, shape: tuple[int, ...], axes: list[str]) -> tuple[tuple[int | None, ...], list[int]]:
    """Keep the z, y, x axes; drop singleton others; refuse anything else."""
    spatial = [i for i, a in enumerate(axes) if a in ("z", "y", "x")]
    if [axes[i] for i in spatial] != ["z", "y", "x"]:
        raise BlockwiseInputError(
            f"{path}: need a 3D volume with axes z, y, x in this order, got axes {axes} with shape {list(shape)}."
        )
    index: list[int | None] = []
    for i, (a, n) in enumerate(zip(axes, shape)):
        if i in spatial:
            index.append(None)
        elif n == 1:
            index.append(0)
        else:
            raise BlockwiseInputError(
                f"{path}: axis {a!r} has size {n} (shape {list(shape)}, axes {axes}); blockwise inference needs a "
                "single-channel 3D stack: select one channel/time point first."
            )
    return tuple(index), spatial


def _ome_multiscales(attrs: dict) -> list | None:
    ome = attrs.get("ome")
    if isinstance(ome, dict) and isinstance(ome.get("multiscales"), list):
        return ome["multiscales"]
    if isinstance(attrs.get("multiscales"), list):
        return attrs["multiscales"]
    return None


def _ome_level0(
    path: str, attrs: dict, dataset: str | None = None
) -> tuple[str, list[str] | None, list[float] | None, str | None] | None:
    """(dataset path, axes, scale, unit) of level 0 (or of ``dataset``) from OME-NGFF 0.4/0.5 group attributes.

    Axes and scale are ``None`` for metadata older than NGFF 0.4 (no axes): the array is then taken as (.., z, y, x).
    """
    ms = _ome_multiscales(attrs)
    if not ms:
        return None
    m = ms[0]
    datasets = m.get("datasets") or []
    if not datasets:
        raise BlockwiseInputError(f"{path}: OME-Zarr multiscales metadata lists no datasets.")
    chosen = datasets[0] if dataset is None else next((d for d in datasets if d.get("path") == dataset), None)
    if chosen is None:
        return None
    raw_axes = m.get("axes")
    if not raw_axes:
        return str(chosen.get("path")), None, None, None
    axes = [(a.get("name") if isinstance(a, dict) else str(a)).lower() for a in raw_axes]
    units = [a.get("unit") for a in raw_axes if isinstance(a, dict) and a.get("type") == "space"]
    scale = [1.0] * len(axes)
    for transforms in (chosen.get("coordinateTransformations") or [], m.get("coordinateTransformations") or []):
        for t in transforms:
            if t.get("type") == "scale" and isinstance(t.get("scale"), list) and len(t["scale"]) == len(axes):
                scale = [s * float(v) for s, v in zip(scale, t["scale"])]
    unit = units[0] if units and all(u == units[0] for u in units) else None
    return str(chosen.get("path")), axes, scale, unit


def _open_zarr(path: Path, spacing: tuple[float, float, float] | None) -> VolumeSource:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as e:
        raise BlockwiseInputError(
            f"{path}: not a readable Zarr array or group (corrupt or missing metadata: {e})."
        ) from e
    store_path, array_path = str(path), ""
    axes: list[str] | None = None
    scale: list[float] | None = None
    unit = None
    if isinstance(node, zarr.Group):
        level0 = _ome_level0(str(path), dict(node.attrs))
        if level0 is None:
            arrays = sorted(k for k, _ in node.arrays())
            raise BlockwiseInputError(
                f"{path}: a Zarr group without OME-Zarr multiscales metadata; give the array inside it"
                + (f", e.g. {path / arrays[0]}" if arrays else " (it holds no arrays)")
                + "."
            )
        array_path, axes, scale, unit = level0
        try:
            arr = zarr.open_array(str(path / array_path), mode="r")
        except Exception as e:
            raise BlockwiseInputError(
                f"{path}: OME-Zarr level 0 array {array_path!r} is missing or corrupt ({e})."
            ) from e
    else:
        arr = node
        parent = path.parent
        for meta in ("zarr.json", ".zattrs"):  # an OME-Zarr level given directly: take spacing from its group
            f = parent / meta
            if f.is_file():
                try:
                    pattrs = json.loads(f.read_text())
                    pattrs = pattrs.get("attributes", pattrs) if meta == "zarr.json" else pattrs
                    level = _ome_level0(str(parent), pattrs, dataset=path.name)
                except (OSError, ValueError, AttributeError):
                    level = None
                if level is not None:
                    _, axes, scale, unit = level
                    break
    shape = tuple(int(s) for s in arr.shape)
    if axes is None:
        if len(shape) < 3:
            raise BlockwiseInputError(f"{path}: need a 3D (z, y, x) volume, got a {len(shape)}D array {list(shape)}.")
        axes = ["?"] * (len(shape) - 3) + ["z", "y", "x"]
    if len(axes) != len(shape):
        raise BlockwiseInputError(f"{path}: OME axes {axes} do not match the array shape {list(shape)}.")
    index, spatial = _squeeze_index(str(path), shape, axes)
    dtype = np.dtype(arr.dtype)
    _check_sample_type(str(path), dtype)
    source = "none"
    sp = (1.0, 1.0, 1.0)
    if scale is not None:
        from neurolink_monai.io.tiff import unit_to_micrometres

        factor = unit_to_micrometres(unit)[0]
        sp = tuple(float(scale[i]) * factor for i in spatial)  # type: ignore[assignment]
        source = "ome-zarr"
    chunks = tuple(int(arr.chunks[i]) for i in spatial) if getattr(arr, "chunks", None) else None
    meta_dir = Path(store_path) / array_path if array_path else Path(store_path)
    fp = {"shape": list(shape), **_stat_fingerprint(meta_dir / "zarr.json", meta_dir / ".zarray")}
    return VolumeSource(
        path=str(path),
        kind="zarr",
        array_path=array_path,
        index=index,
        shape=tuple(shape[i] for i in spatial),  # type: ignore[arg-type]
        dtype=dtype.name,
        spacing=spacing or sp,  # type: ignore[arg-type]
        spacing_source="user" if spacing else source,
        chunks=chunks,  # type: ignore[arg-type]
        fingerprint=fp,
    )


def _check_sample_type(path: str, dtype: np.dtype) -> None:
    if dtype.kind == "b":
        raise BlockwiseInputError(
            f"{path}: boolean samples (a mask?); the input must be an intensity stack (integer or float samples)."
        )
    if dtype.kind not in "uif":
        raise BlockwiseInputError(f"{path}: unsupported sample type {dtype}; expected integer or float intensities.")


def _open_tiff(path: Path, spacing: tuple[float, float, float] | None) -> VolumeSource:
    import tifffile

    from neurolink_monai.io.tiff import (
        TiffStackError,
        check_tiff_declared_size,
        collect_tifffile_warnings,
        read_tiff_spacing,
    )

    try:
        with collect_tifffile_warnings() as messages, tifffile.TiffFile(str(path)) as tf:
            if not tf.series:
                raise BlockwiseInputError(f"{path}: the TIFF holds no image series (corrupt, or not an image stack).")
            series = tf.series[0]
            check_tiff_declared_size(tf, path, messages, check_memory=False)
            shape = tuple(int(s) for s in series.shape)
            raw_axes = series.axes.upper()
            dtype = np.dtype(series.dtype)
            sp, _, sp_source = read_tiff_spacing(tf)
            sp_source = "ome-tiff" if sp_source == "ome" else sp_source
            try:
                mappable = series.dataoffset is not None
            except Exception:
                mappable = False
            size = os.path.getsize(path)
            ends = [int(o) + int(c) for p in tf.pages for o, c in zip(p.dataoffsets, p.databytecounts)]
            if ends and max(ends) > size:
                raise BlockwiseInputError(f"{path}: truncated TIFF: image data end at byte {max(ends)} of {size}.")
    except BlockwiseInputError:
        raise
    except TiffStackError as e:
        raise BlockwiseInputError(str(e)) from None
    except Exception as e:
        raise BlockwiseInputError(
            f"{path}: cannot read TIFF, the file is corrupt, truncated or not a TIFF ({e})."
        ) from e
    axes = []
    for a in raw_axes:
        axes.append({"Z": "z", "Y": "y", "X": "x"}.get(a, a.lower()))
    if "z" not in axes:
        for generic in ("q", "i"):
            if generic in axes:
                axes[axes.index(generic)] = "z"
                break
    if len(shape) < 3 or "z" not in axes:
        raise BlockwiseInputError(f"{path}: need a 3D stack (z, y, x), got TIFF axes {raw_axes!r} shape {list(shape)}.")
    index, spatial = _squeeze_index(str(path), shape, axes)
    _check_sample_type(str(path), dtype)
    kind = "tiff-memmap"
    if mappable:
        try:
            _open_array(kind, str(path), "")
        except Exception:
            mappable = False
    if not mappable:
        kind = "tiff-zarr"
    st = path.stat()
    return VolumeSource(
        path=str(path),
        kind=kind,
        array_path="",
        index=index,
        shape=tuple(shape[i] for i in spatial),  # type: ignore[arg-type]
        dtype=dtype.name,
        spacing=spacing or sp,
        spacing_source="user" if spacing else sp_source,
        chunks=None,
        fingerprint={"size": st.st_size, "mtime_ns": st.st_mtime_ns},
    )


def open_volume(path: str | os.PathLike, spacing: tuple[float, float, float] | None = None) -> VolumeSource:
    """Open a 3D volume lazily: a Zarr array or OME-Zarr group (v2 or v3), or a TIFF stack.

    Args:
        path: a ``.tif``/``.tiff`` file, a Zarr array folder, an OME-Zarr image group (level 0 is read), or one level
            of an OME-Zarr image (``image.zarr/0``; the spacing then comes from its group).
        spacing: ``(z, y, x)`` voxel size overriding the file's metadata.

    Raises:
        BlockwiseInputError: missing path, not Zarr/TIFF, corrupt metadata, not a single-channel 3D stack,
            non-numeric samples or an empty volume; the message names the path.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise BlockwiseInputError(f"{p}: input not found.")
    if spacing is not None:
        try:
            spacing = tuple(float(s) for s in as_spacing(spacing, where=str(p)))  # type: ignore[assignment]
        except ValueError as e:
            raise BlockwiseInputError(str(e)) from None
    p = p.resolve()
    if p.is_file() and p.suffix.lower() in (".tif", ".tiff", ".btf", ".tf8"):
        src = _open_tiff(p, spacing)
    elif p.is_dir():
        src = _open_zarr(p, spacing)
    else:
        raise BlockwiseInputError(f"{p}: unsupported input; expected a Zarr folder (v2/v3, OME-Zarr) or a TIFF file.")
    if min(src.shape) < 1:
        raise BlockwiseInputError(f"{p}: empty volume of shape {list(src.shape)}.")
    return src
