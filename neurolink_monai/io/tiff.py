# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Reading and writing 3D light-microscopy TIFF stacks (ImageJ and OME-TIFF) with their voxel spacing.

Arrays are ``(D, H, W) = (z, y, x)`` for one channel and ``(C, D, H, W)`` for several; spacing tuples are in the
same array order ``(z, y, x)``, in micrometres when the file states a known length unit (ImageJ ``unit`` or
OME ``PhysicalSize*Unit``), otherwise as stored. Files without ImageJ or OME metadata get spacing ``(1, 1, 1)``.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ..errors import NeuroLinkUserError
from ..utils import as_spacing, count_nonfinite
from .atomic import atomic_output

__all__ = [
    "TiffStackError",
    "check_tiff_declared_size",
    "collect_tifffile_warnings",
    "TIFF_WRITE_DTYPES",
    "read_tiff_spacing",
    "read_tiff_stack",
    "read_tiff_stack_with_metadata",
    "unit_to_micrometres",
    "write_tiff_stack",
]

# ImageJ opens these sample types natively; bool is accepted on writing and stored as uint8.
TIFF_WRITE_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))

# length units -> micrometres (TIFF and OME-Zarr metadata); ImageJ writes "micron", "um" or "\u00b5m"
_UNIT_TO_UM = {
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\u00b5m": 1.0,
    "\u03bcm": 1.0,
    "\\u00b5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "centimetre": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "metre": 1e6,
    "pm": 1e-6,
    "picometer": 1e-6,
    "\u00c5": 1e-4,
    "angstrom": 1e-4,
}
_CORRUPTION_HINTS = ("invalid", "corrupt", "truncat", "offset", "unexpected end", "failed")


class TiffStackError(NeuroLinkUserError, ValueError):
    """A TIFF file is missing, corrupt, truncated, not a 3D stack, or holds unusable values; names the file."""


class _LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def collect_tifffile_warnings():
    # tifffile reports broken IFD chains through logging and then returns what it could read; collect them so
    # a truncated file raises instead of silently returning fewer slices.
    logger = logging.getLogger("tifffile")
    handler = _LogCollector()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def unit_to_micrometres(unit: Any) -> tuple[float, str]:
    """``(factor, unit)``: micrometres per ``unit`` and ``"um"`` for a known length unit (case-insensitive:
    ``"micron"``, ``"\u00b5m"``, ``"nm"``, ``"millimeter"``...); ``(1.0, unit as stored)`` for an unknown one (e.g.
    ``"pixel"``, ``"inch"``: the numbers are kept as stored); ``(1.0, "pixel")`` for None."""
    if unit is None:
        return 1.0, "pixel"
    key = str(unit).strip()
    factor = _UNIT_TO_UM.get(key, _UNIT_TO_UM.get(key.lower()))
    if factor is None:
        return 1.0, key  # unknown unit (e.g. "pixel", "inch"): keep the numbers as stored
    return factor, "um"


def _resolution_to_spacing(page: tifffile.TiffPage, tag: str) -> float | None:
    t = page.tags.get(tag)
    if t is None:
        return None
    value = t.value
    try:
        num, den = (float(value[0]), float(value[1])) if isinstance(value, tuple) else (float(value), 1.0)
    except (TypeError, ValueError, IndexError):
        return None
    if not (np.isfinite(num) and np.isfinite(den)) or num <= 0 or den <= 0:
        return None
    return den / num


def _imagej_spacing(tf: tifffile.TiffFile) -> tuple[tuple[float, float, float], str]:
    meta = tf.imagej_metadata or {}
    page = tf.pages.first
    sx = _resolution_to_spacing(page, "XResolution") or 1.0
    sy = _resolution_to_spacing(page, "YResolution") or sx
    try:
        sz = float(meta.get("spacing", 1.0))
    except (TypeError, ValueError):
        sz = 1.0
    if not np.isfinite(sz) or sz <= 0:
        sz = 1.0
    factor, unit = unit_to_micrometres(meta.get("unit"))
    return (sz * factor, sy * factor, sx * factor), unit


def _ome_spacing(tf: tifffile.TiffFile) -> tuple[tuple[float, float, float], str] | None:
    xml = tf.ome_metadata
    if not xml:
        return None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    out, units = [], set()
    for axis in ("Z", "Y", "X"):
        try:
            value = float(pixels.get(f"PhysicalSize{axis}", "1.0"))
        except ValueError:
            value = 1.0
        if not np.isfinite(value) or value <= 0:
            value = 1.0
        factor, unit = unit_to_micrometres(pixels.get(f"PhysicalSize{axis}Unit", "\u00b5m"))
        units.add(unit)
        out.append(value * factor)
    return (out[0], out[1], out[2]), units.pop() if len(units) == 1 else "mixed"


def read_tiff_spacing(tf: tifffile.TiffFile) -> tuple[tuple[float, float, float], str, str]:
    """The voxel spacing of an open TIFF, the ONE parser of TIFF spacing (in-memory reading and blockwise alike).

    Returns:
        ``(spacing, unit, source)``: ``spacing`` ``(z, y, x)``, in micrometres when the unit is known (``unit``
        ``"um"``, else the stored unit, ``"mixed"`` for OME axes in different unknown units); ``source``
        ``"imagej"`` (x/y resolution tags and the ImageJ ``spacing`` entry), ``"ome"`` (``PhysicalSize*``) or
        ``"none"`` (spacing ``(1, 1, 1)``, unit ``"pixel"``). Missing or invalid values count as 1.
    """
    if tf.is_imagej:
        return (*_imagej_spacing(tf), "imagej")  # type: ignore[return-value]
    ome = _ome_spacing(tf) if tf.is_ome else None
    if ome is not None:
        return ome[0], ome[1], "ome"
    return (1.0, 1.0, 1.0), "pixel", "none"


def _check_extent(tf: tifffile.TiffFile, path: Path) -> None:
    fsize = os.fstat(tf.filehandle.fileno()).st_size if hasattr(tf.filehandle, "fileno") else tf.filehandle.size
    for page in tf.pages:
        offsets = np.asarray(getattr(page, "dataoffsets", ()), dtype=np.int64)
        counts = np.asarray(getattr(page, "databytecounts", ()), dtype=np.int64)
        if offsets.size and counts.size == offsets.size and (offsets + counts).max() > fsize:
            raise TiffStackError(
                f"{path}: truncated TIFF: image data of page {page.index} ends at byte "
                f"{int((offsets + counts).max())} but the file has only {fsize} bytes."
            )


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.3g} GiB" if nbytes >= 2**27 else f"{nbytes} bytes"


def check_tiff_declared_size(
    tf: tifffile.TiffFile, path: str | os.PathLike, messages: Sequence[str] = (), check_memory: bool = True
) -> None:
    """Refuse a TIFF whose header declares more data than the file holds, or than memory, before reading it.

    Args:
        tf: the open file; its first series is checked.
        path: the file named in the messages.
        messages: tifffile's log messages collected while opening (:func:`collect_tifffile_warnings`); a broken
            IFD chain or corrupt ImageJ metadata makes tifffile return fewer slices than the file declares.
        check_memory: also refuse an image larger than the available memory (skip for out-of-core readers).

    Raises:
        TiffStackError: truncated file (the declared, uncompressed image data end beyond the end of the file;
            ImageJ stacks declare their slice count), corrupt page chain, or too large for memory; the message
            gives the declared shape and sizes.
    """
    series = tf.series[0]
    shape = tuple(int(s) for s in series.shape)
    dtype = np.dtype(series.dtype)
    nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    fsize = os.path.getsize(path)
    first = tf.pages.first
    compressed = int(getattr(first, "compression", 1)) != 1
    declared = f"the header declares a {shape} {dtype} image ({_gib(nbytes)})"
    meta = tf.imagej_metadata or {}
    try:
        images = int(meta.get("images", 0))
    except (TypeError, ValueError):
        images = 0
    plane = int(first.shape[0]) * int(first.shape[1]) if len(first.shape) >= 2 else 0
    if not compressed and images > 1 and plane:
        expected = int(getattr(first, "dataoffsets", (0,))[0] or 0) + images * plane * dtype.itemsize
        if expected > fsize:
            raise TiffStackError(
                f"{path}: truncated TIFF: its ImageJ header declares {images} slices of {tuple(first.shape)} "
                f"{dtype} ({_gib(expected)} with the header) but the file has only {fsize} bytes."
            )
    if not compressed and nbytes > fsize:
        raise TiffStackError(f"{path}: truncated or corrupt TIFF: {declared} but the file has only {fsize} bytes.")
    broken = [m for m in messages if any(h in m.lower() for h in _CORRUPTION_HINTS)]
    if broken:
        raise TiffStackError(f"{path}: corrupt or truncated TIFF ({broken[0].strip()}).")
    available = _available_memory() if check_memory else None
    if available is not None and nbytes > available:
        raise TiffStackError(
            f"{path}: {declared}, more than the {_gib(available)} of memory available; it is not read. For "
            "stacks larger than memory use python -m neurolink_monai.inference.blockwise."
        )


def _to_czyx(data: np.ndarray, axes: str, path: Path) -> tuple[np.ndarray, bool]:
    """Reorder a tifffile series to (C, Z, Y, X); returns the array and whether it has a real channel axis."""
    axes = axes.upper()
    # generic page axes ("Q", "I") of plain multi-page files are the slice axis when nothing else is
    if "Z" not in axes:
        for generic in ("Q", "I"):
            if generic in axes:
                axes = axes.replace(generic, "Z", 1)
                break
    keep = {"Z", "Y", "X", "C", "S"}
    squeeze = []
    for i, a in enumerate(axes):
        if a not in keep:
            if data.shape[i] != 1:
                raise TiffStackError(
                    f"{path}: unsupported TIFF axes {axes!r} with shape {data.shape}: axis {a!r} has size "
                    f"{data.shape[i]}; expected a 3D stack Z, Y, X with an optional channel axis."
                )
            squeeze.append(i)
    data = np.squeeze(data, axis=tuple(squeeze)) if squeeze else data
    axes = "".join(a for i, a in enumerate(axes) if i not in squeeze)
    if "C" in axes and "S" in axes:
        if data.shape[axes.index("S")] != 1 and data.shape[axes.index("C")] != 1:
            raise TiffStackError(f"{path}: both channels and samples per pixel in TIFF axes {axes!r}.")
        drop = axes.index("S") if data.shape[axes.index("S")] == 1 else axes.index("C")
        data = np.squeeze(data, axis=drop)
        axes = axes[:drop] + axes[drop + 1 :]
    axes = axes.replace("S", "C")
    if len(set(axes)) != len(axes) or "Y" not in axes or "X" not in axes:
        raise TiffStackError(f"{path}: unsupported TIFF axes {axes!r} with shape {data.shape}.")
    if "Z" not in axes:
        hint = " (if its channel axis really holds z-slices, re-save it with axes 'ZYX')" if "C" in axes else ""
        raise TiffStackError(
            f"{path}: this is a 2D image (axes {axes!r}, shape {data.shape}); a 3D stack (z, y, x) is needed{hint}."
        )
    has_channel = "C" in axes
    if not has_channel:
        data, axes = data[np.newaxis], "C" + axes
    order = [axes.index(a) for a in "CZYX"]
    return np.transpose(data, order), has_channel


def read_tiff_stack_with_metadata(path: str | os.PathLike, check_finite: bool = True) -> tuple[np.ndarray, dict]:
    """Read a 3D TIFF stack as ``(C, D, H, W)`` with a metadata dict.

    The dict holds ``"spacing"`` ``(z, y, x)``, ``"spacing_unit"`` (``"um"`` once converted, else the stored
    unit), ``"spacing_source"`` (``"imagej"``, ``"ome"`` or ``"none"``), ``"has_channel"`` (whether the file had
    a channel or samples axis) and ``"axes"`` (tifffile's axes string).

    Raises:
        FileNotFoundError: no such file.
        TiffStackError: not a TIFF, corrupt or truncated, 2D, empty, unsupported axes or dtype, or non-finite
            values (when ``check_finite``); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TIFF stack not found: {path}")
    try:
        with collect_tifffile_warnings() as messages, tifffile.TiffFile(path) as tf:
            if not tf.series:
                raise TiffStackError(f"{path}: the TIFF holds no image series.")
            _check_extent(tf, path)
            series = tf.series[0]
            axes = series.axes
            check_tiff_declared_size(tf, path, messages, check_memory=True)
            data = series.asarray()
            spacing, unit, source = read_tiff_spacing(tf)
        broken = [m for m in messages if any(h in m.lower() for h in _CORRUPTION_HINTS)]
        if broken:
            raise TiffStackError(f"{path}: corrupt or truncated TIFF ({broken[0].strip()}).")
    except TiffStackError:
        raise
    except MemoryError as e:
        raise TiffStackError(f"{path}: the TIFF declares an image too large to load ({e}).") from e
    except Exception as e:  # tifffile and the codecs raise many exception types for damaged files
        raise TiffStackError(f"{path}: cannot read TIFF, the file is corrupt, truncated or not a TIFF ({e}).") from e

    if data.size == 0:
        raise TiffStackError(f"{path}: empty image, shape {data.shape}.")
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if data.dtype.kind not in "uif":
        raise TiffStackError(f"{path}: unsupported sample type {data.dtype}; expected integer or float samples.")
    if data.dtype.byteorder == ">" or (data.dtype.byteorder == "=" and not np.little_endian):
        data = data.astype(data.dtype.newbyteorder("<"))
    czyx, has_channel = _to_czyx(data, axes, path)
    if check_finite:
        count, first = count_nonfinite(czyx)
        if count:
            raise TiffStackError(f"{path}: {count} non-finite intensities (NaN/Inf), first at (c, z, y, x) = {first}.")
    meta = {
        "spacing": tuple(float(s) for s in spacing),
        "spacing_unit": unit,
        "spacing_source": source,
        "has_channel": has_channel,
        "axes": axes,
    }
    return np.ascontiguousarray(czyx), meta


def read_tiff_stack(
    path: str | os.PathLike, check_finite: bool = True
) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a 3D TIFF stack and its voxel spacing.

    Returns:
        ``(array, spacing)``: ``array`` is ``(D, H, W)`` for a single-channel stack or ``(C, D, H, W)`` for a
        multi-channel one, in the stored dtype (uint8, uint16, float32, ...); ``spacing`` is ``(z, y, x)`` in
        micrometres from ImageJ or OME-TIFF metadata, ``(1.0, 1.0, 1.0)`` without metadata.

    Raises:
        TiffStackError: see :func:`read_tiff_stack_with_metadata`.
    """
    czyx, meta = read_tiff_stack_with_metadata(path, check_finite=check_finite)
    return (czyx if meta["has_channel"] else czyx[0]), meta["spacing"]


def write_tiff_stack(
    path: str | os.PathLike,
    array: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    unit: str = "um",
    compression: str | None = None,
) -> Path:
    """Write a ``(D, H, W)`` or ``(C, D, H, W)`` stack as an ImageJ-compatible TIFF, atomically.

    The data go to a temporary file in the destination folder which then replaces ``path`` with ``os.replace``,
    so a failure never leaves a partial file. ImageJ/Fiji and :func:`read_tiff_stack` read the spacing back
    (x/y as resolution tags, z as the ImageJ ``spacing`` entry; about 6 significant digits are kept).

    Args:
        path: output ``.tif``/``.tiff`` file; its folder must exist.
        array: uint8, uint16 or float32 (bool is stored as uint8), 3D ``(D, H, W)`` or 4D ``(C, D, H, W)``.
        spacing: voxel size ``(z, y, x)`` in ``unit``.
        unit: length unit written into the ImageJ metadata.
        compression: ``None`` (default, readable everywhere) or a tifffile codec name such as ``"zlib"``.

    Raises:
        TypeError: unsupported dtype.
        ValueError: wrong number of dimensions, empty array, non-finite float values or bad spacing.
    """
    path = Path(path)
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.dtype.newbyteorder("=") not in TIFF_WRITE_DTYPES:
        raise TypeError(
            f"{path}: cannot write dtype {arr.dtype} as an ImageJ TIFF; cast to uint8, uint16 or float32 first."
        )
    if arr.ndim not in (3, 4):
        raise ValueError(f"{path}: expected a (D, H, W) or (C, D, H, W) array, got shape {arr.shape}.")
    if arr.size == 0:
        raise ValueError(f"{path}: refusing to write an empty image of shape {arr.shape}.")
    count, first = count_nonfinite(arr)
    if count:
        raise ValueError(f"{path}: the array holds {count} non-finite values (NaN/Inf), the first at index {first}.")
    sz, sy, sx = (float(s) for s in as_spacing(spacing, where=str(path)))
    if arr.ndim == 4:
        data, axes = np.ascontiguousarray(np.moveaxis(arr, 0, 1)), "ZCYX"  # ImageJ hyperstack order
    else:
        data, axes = np.ascontiguousarray(arr), "ZYX"
    with atomic_output(path, suffix=".tif.tmp") as tmp:
        tifffile.imwrite(
            tmp,
            data,
            imagej=True,
            resolution=(1.0 / sx, 1.0 / sy),
            metadata={"axes": axes, "spacing": sz, "unit": unit},
            compression=compression,
        )
    return path
