# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The output Zarr group: OME-Zarr image groups, the record of input and settings, per-block progress, finalising.

Layout of ``OUTPUT.zarr`` (zarr v3 with OME-NGFF 0.5 metadata, or zarr v2 with NGFF 0.4)::

    OUTPUT.zarr/                 root group; attrs["neurolink_blockwise"] = record of input, settings, status
        prob/0                   neurite probability, float16 (or uint8 0-255), (D, H, W)
        mask/0                   uint8 mask, 1 where prob >= threshold, (D, H, W)
        direction/0              optional, (3, D, H, W): unit neurite direction (dir_z, dir_y, dir_x), 0 if undefined
        distance/0               optional, (D, H, W): the distance-map head

Each image group carries OME ``multiscales`` metadata with axes z, y, x (space, micrometer; plus c for channels) and
a ``scale`` transformation equal to the input spacing.

A run writes into ``OUTPUT.zarr.partial`` next to the final path. Workers write whole blocks (storage chunks never
straddle two blocks, so no chunk is written by two tasks), then mark the block in the ``_progress`` array (one Zarr
chunk per block, written atomically). When every block is marked, the record's status becomes ``complete``, the
progress array is removed and the folder is renamed to ``OUTPUT.zarr`` (an older output being replaced is moved
aside first and deleted last). A killed run leaves only the ``.partial`` folder, which the same command resumes.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "OUTPUT_FORMAT_VERSION",
    "RECORD_KEY",
    "BlockwiseOutputError",
    "OutputSpec",
    "create_output",
    "finalize_output",
    "partial_path",
    "read_record",
    "completed_blocks",
    "write_block",
    "output_lock",
]

OUTPUT_FORMAT_VERSION = 1
RECORD_KEY = "neurolink_blockwise"
PROGRESS = "_progress"
_ZARR_TMP = re.compile(r"\.[0-9a-f]{32}\.partial$")  # zarr's LocalStore temp files left by a killed write


class BlockwiseOutputError(ValueError):
    """The output path holds something else (another input or other settings, or not our output) or is unusable."""


class OutputSpec:
    """What goes into the output group: arrays with shapes, dtypes, chunking, spacing and the zarr format."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        chunks: tuple[int, int, int],
        spacing: tuple[float, float, float],
        seg_channels: int = 1,
        prob_dtype: str = "float16",
        maps_dtype: str = "float16",
        save_direction: bool = False,
        save_distance: bool = False,
        zarr_format: int = 3,
    ) -> None:
        self.shape = tuple(shape)
        self.chunks = tuple(chunks)
        self.spacing = tuple(float(s) for s in spacing)
        self.seg_channels = seg_channels
        self.prob_dtype, self.maps_dtype = prob_dtype, maps_dtype
        self.zarr_format = zarr_format
        self.arrays: dict[str, tuple[tuple[int, ...], str, int]] = {}  # name -> (shape, dtype, channels or 0)
        self.arrays["prob"] = (self.shape, prob_dtype, 0)
        self.arrays["mask"] = (self.shape, "uint8", 0)
        if save_direction:
            self.arrays["direction"] = ((3, *self.shape), maps_dtype, 3)
        if save_distance:
            self.arrays["distance"] = (self.shape, maps_dtype, 0)

    def nbytes(self) -> int:
        """Uncompressed size of all arrays."""
        return sum(int(np.prod(s)) * np.dtype(d).itemsize for s, d, _ in self.arrays.values())

    def describe(self) -> dict:
        return {
            "zarr_format": self.zarr_format,
            "chunks": list(self.chunks),
            "arrays": {k: {"shape": list(s), "dtype": d} for k, (s, d, _) in self.arrays.items()},
        }


def partial_path(output: str | os.PathLike) -> Path:
    """Where a run writes before the result is moved to ``output``."""
    p = Path(output)
    return p.with_name(p.name + ".partial")


def _ome_attrs(name: str, channels: int, spacing: tuple[float, ...], zarr_format: int) -> dict:
    axes: list[dict] = [{"name": "c", "type": "channel"}] if channels else []
    axes += [{"name": a, "type": "space", "unit": "micrometer"} for a in ("z", "y", "x")]
    scale = ([1.0] if channels else []) + [float(s) for s in spacing]
    multiscale = {
        "name": name,
        "axes": axes,
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }
    if zarr_format == 2:
        return {"multiscales": [{"version": "0.4", **multiscale}]}
    return {"ome": {"version": "0.5", "multiscales": [multiscale]}}


def _zarr_node_format(path: Path) -> int | None:
    if (path / "zarr.json").is_file():
        return 3
    if (path / ".zgroup").is_file() or (path / ".zarray").is_file():
        return 2
    return None


def read_record(path: str | os.PathLike) -> dict | None:
    """The ``neurolink_blockwise`` record of an output group, or ``None`` when ``path`` is not one of our outputs."""
    p = Path(path)
    fmt = _zarr_node_format(p)
    try:
        if fmt == 3:
            meta = json.loads((p / "zarr.json").read_text())
            attrs = meta.get("attributes", {}) if meta.get("node_type") == "group" else {}
        elif fmt == 2 and (p / ".zgroup").is_file():
            attrs = json.loads((p / ".zattrs").read_text()) if (p / ".zattrs").is_file() else {}
        else:
            return None
    except (OSError, ValueError):
        return None
    rec = attrs.get(RECORD_KEY) if isinstance(attrs, dict) else None
    return rec if isinstance(rec, dict) else None


def create_output(path: Path, spec: OutputSpec, record: dict, block_grid_shape: tuple[int, int, int]) -> None:
    """Create the (partial) output group with empty arrays, OME metadata, the record and the progress array.

    The group is first built in a temporary sibling folder and renamed to ``path``, so ``path`` either does not
    exist or holds a complete, consistent group; a failure (e.g. a full disk) removes the temporary folder.
    """
    import zarr

    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        root = zarr.open_group(str(tmp), mode="w-", zarr_format=spec.zarr_format)
        for name, (shape, dtype, channels) in spec.arrays.items():
            g = root.create_group(name)
            g.attrs.update(_ome_attrs(name, channels, spec.spacing, spec.zarr_format))
            chunks = ((channels,) if channels else ()) + spec.chunks
            kwargs: dict[str, Any] = {}
            if spec.zarr_format == 3:
                kwargs["dimension_names"] = (["c"] if channels else []) + ["z", "y", "x"]
            g.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0, **kwargs)
        root.create_array(PROGRESS, shape=block_grid_shape, chunks=(1, 1, 1), dtype="uint8", fill_value=0)
        root.attrs.update({RECORD_KEY: record})
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def set_status(path: Path, status: str) -> None:
    import zarr

    root = zarr.open_group(str(path), mode="r+")
    rec = dict(root.attrs[RECORD_KEY])
    rec["status"] = status
    root.attrs.update({RECORD_KEY: rec})


def completed_blocks(path: Path) -> np.ndarray:
    """Boolean ``(gz, gy, gx)`` array: which blocks of a partial output are fully written."""
    import zarr

    return zarr.open_array(str(path / PROGRESS), mode="r")[...] > 0


_ARRAYS: dict[tuple[str, str], Any] = {}
_ARRAYS_LOCK = threading.Lock()


def _open_out(path: str, run_id: str) -> Any:
    import zarr

    key = (path, run_id)  # the run id keeps a long-lived worker from reusing a handle of an earlier output
    arr = _ARRAYS.get(key)
    if arr is None:
        with _ARRAYS_LOCK:
            arr = _ARRAYS.get(key)
            if arr is None:
                arr = zarr.open_array(path, mode="r+")
                _ARRAYS[key] = arr
    return arr


def forget_open_arrays(root: Path) -> None:
    """Drop cached handles of arrays under ``root`` (after it was moved or deleted)."""
    with _ARRAYS_LOCK:
        for k in [k for k in _ARRAYS if k[0].startswith(str(root))]:
            del _ARRAYS[k]


def write_block(
    path: Path,
    block_index: tuple[int, int, int],
    start: tuple[int, ...],
    stop: tuple[int, ...],
    data: dict,
    run_id: str = "",
) -> None:
    """Write one block of every output array, then mark the block done in the progress array.

    ``run_id`` (the record's) identifies the output folder's current incarnation for the handle cache.
    """
    box = tuple(slice(a, b) for a, b in zip(start, stop))
    for name, values in data.items():
        arr = _open_out(str(path / name / "0"), run_id)
        key = box if values.ndim == 3 else (slice(None), *box)
        arr[key] = values
    done = _open_out(str(path / PROGRESS), run_id)
    done[tuple(slice(i, i + 1) for i in block_index)] = np.ones((1, 1, 1), np.uint8)


def _remove_zarr_temp_files(path: Path) -> None:
    for dirpath, _, files in os.walk(path):
        for f in files:
            if _ZARR_TMP.search(f):
                os.unlink(os.path.join(dirpath, f))


def finalize_output(partial: Path, final: Path) -> None:
    """Mark the record complete, drop the progress array and move ``partial`` to ``final`` (replacing it if any)."""
    import zarr

    _remove_zarr_temp_files(partial)
    set_status(partial, "complete")
    root = zarr.open_group(str(partial), mode="r+")
    if PROGRESS in root:
        del root[PROGRESS]
    forget_open_arrays(partial)
    old = None
    if final.exists() or final.is_symlink():
        old = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.old")
        os.rename(final, old)
    try:
        os.rename(partial, final)
    except BaseException:
        if old is not None:
            os.rename(old, final)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


@contextmanager
def output_lock(final: Path):
    """Hold an exclusive lock on ``final``'s output for this process (a lock file beside it), or refuse."""
    lock = final.with_name(f".{final.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise BlockwiseOutputError(f"{final}: another blockwise run is writing this output now.") from e
            raise
        try:
            yield
        finally:
            try:
                os.unlink(lock)  # while still holding the lock
            except OSError:
                pass
    finally:
        os.close(fd)
