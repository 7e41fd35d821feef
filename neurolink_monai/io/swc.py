# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Reading, validating and writing SWC neuron traces.

An SWC file lists one node per line with 7 whitespace-separated columns ``id type x y z radius parent``
(Cannon et al., J. Neurosci. Methods 1998; Stockley et al. 1993). ``parent == -1`` marks a root; several
roots (a forest) are allowed. Lines starting with ``#`` and blank lines are ignored; columns after the seventh
are ignored (some tools append extra per-node data).

Coordinate convention of this project (shared by every subpackage):

* coordinates are in **voxel units** by default, 0-based, with voxel centres on integer coordinates;
* SWC ``x`` runs along the array's W axis, ``y`` along H and ``z`` along D, so node ``(x, y, z)`` lies in the
  voxel ``array[round(z), round(y), round(x)]`` of a ``(D, H, W)`` stack, with no flip;
* physical coordinates are voxel coordinates times the spacing, with spacing tuples in array order
  ``(z, y, x)``; see :func:`swc_to_physical` / :func:`swc_to_voxel`. In a voxel-unit SWC the radius is
  measured in in-plane (x) voxels, so its physical value is ``radius * spacing[2]``.

In memory an SWC is a float64 ``np.ndarray`` of shape ``(N, 7)`` with the columns above.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import NeuroLinkUserError
from ..utils import as_spacing
from .atomic import atomic_write_text

__all__ = [
    "SWC_COLUMNS",
    "SWCError",
    "read_swc",
    "write_swc",
    "validate_swc",
    "sort_swc",
    "first_tree",
    "swc_to_physical",
    "swc_to_voxel",
    "swc_parent_index",
    "swc_tree_index",
]

SWC_COLUMNS = ("id", "type", "x", "y", "z", "radius", "parent")
# ids beyond 2**53 cannot be stored exactly in float64, so they are rejected instead of silently merged
_MAX_ID = 2**53


class SWCError(NeuroLinkUserError, ValueError):
    """An SWC file or array is malformed; the message names the file (or array) and the offending line (or row)."""


def _where(source: str, lines: np.ndarray | None, row: int) -> str:
    if lines is None:
        return f"{source}, row {row}"
    return f"{source}, line {int(lines[row])}"


def _check_nodes(swc: np.ndarray, source: str, lines: np.ndarray | None = None) -> np.ndarray:
    """Validate an (N, 7) float array; returns the parent row index of each node (-1 for roots).

    ``lines`` maps rows to 1-based line numbers of the file for the error messages.
    """
    n = swc.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    bad = ~np.isfinite(swc)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise SWCError(f"{_where(source, lines, row)}: non-finite {SWC_COLUMNS[col]} value {swc[row, col]!r}.")
    for col in (0, 1, 6):
        values = swc[:, col]
        bad = (values != np.round(values)) | (np.abs(values) >= _MAX_ID)
        if bad.any():
            row = int(np.argmax(bad))
            raise SWCError(
                f"{_where(source, lines, row)}: {SWC_COLUMNS[col]} must be an integer below 2**53, "
                f"got {values[row]!r}."
            )
    if (swc[:, 5] < 0).any():
        row = int(np.argmax(swc[:, 5] < 0))
        raise SWCError(f"{_where(source, lines, row)}: negative radius {swc[row, 5]!r}.")
    ids = swc[:, 0].astype(np.int64)
    parents = swc[:, 6].astype(np.int64)
    if (ids < 0).any():
        row = int(np.argmax(ids < 0))
        raise SWCError(f"{_where(source, lines, row)}: negative node id {ids[row]}.")
    if (parents < -1).any():
        row = int(np.argmax(parents < -1))
        raise SWCError(f"{_where(source, lines, row)}: parent id {parents[row]} (roots use -1).")

    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    dup = np.flatnonzero(sorted_ids[1:] == sorted_ids[:-1])
    if dup.size:
        first, second = sorted(order[dup[0] : dup[0] + 2])
        raise SWCError(
            f"{_where(source, lines, second)}: duplicate node id {ids[second]} "
            f"(first defined at {_where(source, lines, first).rsplit(', ', 1)[-1]})."
        )
    is_root = parents == -1
    pos = np.searchsorted(sorted_ids, parents)
    pos = np.clip(pos, 0, n - 1)
    found = sorted_ids[pos] == parents
    unknown = ~is_root & ~found
    if unknown.any():
        row = int(np.argmax(unknown))
        raise SWCError(f"{_where(source, lines, row)}: parent id {parents[row]} of node {ids[row]} is not defined.")
    parent_row = np.where(is_root, -1, order[pos])

    # Cycle detection by pointer jumping: after ceil(log2 N) squarings every node not on a cycle points at a root.
    ptr = np.where(is_root, np.arange(n), parent_row)
    for _ in range(int(np.ceil(np.log2(n + 1))) + 1):
        ptr = ptr[ptr]
    cyclic = ~is_root[ptr]
    if cyclic.any():
        row = int(np.argmax(cyclic))
        raise SWCError(
            f"{_where(source, lines, row)}: node {ids[row]} does not lead to a root (its parents form a cycle)."
        )
    return parent_row


def validate_swc(swc: np.ndarray, source: str = "SWC array") -> np.ndarray:
    """Check an in-memory SWC array and return it as float64 ``(N, 7)``.

    Raises:
        SWCError: wrong shape, non-finite values, non-integer ids/types/parents, negative radii, duplicate ids,
            unknown parent ids or cycles; the message names ``source`` and the row.
    """
    try:
        arr = np.asarray(swc, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise SWCError(f"{source}: cannot convert to a float array ({e}).") from e
    if arr.ndim != 2 or arr.shape[1] != 7:
        raise SWCError(f"{source}: expected shape (N, 7) with columns {SWC_COLUMNS}, got {arr.shape}.")
    _check_nodes(arr, source)
    return arr


def read_swc(path: str | os.PathLike) -> np.ndarray:
    """Read an SWC file into a float64 array of shape ``(N, 7)`` (rows in file order, ids kept as written).

    A leading UTF-8 byte-order mark, comment lines (``#``), blank lines, leading/trailing whitespace and columns beyond the seventh are ignored.
    Coordinates are returned as written (voxel units under this project's convention, see the module docstring).
    A file without any node gives an array of shape ``(0, 7)``.

    Raises:
        SWCError: when a line has fewer than 7 columns or a non-numeric value, or for any problem listed in
            :func:`validate_swc`; the message names the file and the 1-based line number.
        FileNotFoundError / IsADirectoryError / PermissionError: when the file cannot be opened.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # UTF-8 byte-order mark (Windows editors write one)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # old Neurolucida/L-Measure comments; numbers are ASCII either way
    rows: list[list[float]] = []
    line_numbers: list[int] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = stripped.split()
        if len(fields) < 7:
            raise SWCError(
                f"{path}, line {lineno}: expected 7 columns (id type x y z radius parent), "
                f"got {len(fields)}: {stripped[:80]!r}."
            )
        try:
            values = [float(f) for f in fields[:7]]
        except ValueError as e:
            raise SWCError(f"{path}, line {lineno}: non-numeric value in {stripped[:80]!r}.") from e
        rows.append(values)
        line_numbers.append(lineno)
    if not rows:
        return np.zeros((0, 7), dtype=np.float64)
    swc = np.asarray(rows, dtype=np.float64)
    _check_nodes(swc, str(path), np.asarray(line_numbers))
    return swc


def sort_swc(swc: np.ndarray, source: str = "SWC array") -> np.ndarray:
    """Reorder an SWC depth-first so that parents precede children and each tree is contiguous, ids 1..N.

    Trees keep the order of their roots in the input and children keep their input order. Returns a new
    float64 ``(N, 7)`` array; the input is not modified.
    """
    arr = validate_swc(swc, source)
    n = arr.shape[0]
    if n == 0:
        return arr.copy()
    parent_row = _check_nodes(arr, source)
    # children lists as CSR: rows sorted by parent row, stable keeps input order among siblings
    child_order = np.argsort(parent_row, kind="stable")
    sorted_parents = parent_row[child_order]
    starts = np.searchsorted(sorted_parents, np.arange(-1, n), side="left")
    ends = np.searchsorted(sorted_parents, np.arange(-1, n), side="right")
    new_order = np.empty(n, dtype=np.int64)
    k = 0
    stack = child_order[starts[0] : ends[0]][::-1].tolist()  # roots, first root on top
    starts_l, ends_l, child_l = starts.tolist(), ends.tolist(), child_order.tolist()
    while stack:
        row = stack.pop()
        new_order[k] = row
        k += 1
        stack.extend(reversed(child_l[starts_l[row + 1] : ends_l[row + 1]]))
    out = arr[new_order].copy()
    new_id = np.empty(n, dtype=np.int64)
    new_id[new_order] = np.arange(1, n + 1)
    old_parent_row = parent_row[new_order]
    out[:, 0] = np.arange(1, n + 1)
    out[:, 6] = np.where(old_parent_row >= 0, new_id[np.maximum(old_parent_row, 0)], -1)
    return out


def first_tree(swc: np.ndarray, source: str = "SWC array") -> np.ndarray:
    """The first tree of an SWC, sorted (:func:`sort_swc`): its first root and every node below it.

    The first tree is the one the DIADEM metric reads, and the tracer writes the main neuron there. Returns a
    float64 ``(M, 7)`` array with ids 1..M, parents before children; ``(0, 7)`` for an empty SWC.
    """
    arr = sort_swc(swc, source)
    roots = np.flatnonzero(arr[:, 6] == -1)
    return arr[: roots[1]] if len(roots) > 1 else arr


def _format_float(v: float) -> str:
    r = repr(float(v))
    if "e" in r:  # positional, never exponent notation: the DIADEM scorer cannot read "9.5e-07"
        return np.format_float_positional(float(v), unique=True, trim="-")
    return r[:-2] if r.endswith(".0") else r


def write_swc(
    path: str | os.PathLike, swc: np.ndarray, header: str | Sequence[str] | None = None, sort: bool = True
) -> Path:
    """Write an SWC array to ``path`` atomically (temporary file in the same folder, then ``os.replace``).

    With ``sort=True`` (default) nodes are reordered depth-first (:func:`sort_swc`): parents come before
    children, each tree is contiguous behind its single root, and ids are renumbered 1..N, as Vaa3D and the
    DIADEM metric require. Floats are written in positional notation (no exponent, which the DIADEM scorer
    cannot read), with the fewest digits that round-trip, so ``read_swc(write_swc(p, s)) == sort_swc(s)`` exactly.

    Args:
        path: output file; its folder must exist.
        swc: ``(N, 7)`` array with columns id, type, x, y, z, radius, parent.
        header: optional comment text (a string, possibly multi-line, or a list of lines) written as ``#`` lines.
        sort: set False to keep the row order and ids as given (the array is still validated).

    Raises:
        SWCError: invalid array (see :func:`validate_swc`); nothing is written.
    """
    path = Path(path)
    arr = sort_swc(swc, f"SWC array for {path}") if sort else validate_swc(swc, f"SWC array for {path}")
    if header is None:
        header_lines: list[str] = []
    elif isinstance(header, str):
        header_lines = header.splitlines()
    else:
        header_lines = [str(h) for h in header]
    out_lines = ["# " + h.lstrip("#").strip() if h.strip() else "#" for h in header_lines]
    out_lines.append("# id type x y z radius parent")
    ints = arr[:, [0, 1, 6]].astype(np.int64).tolist()
    floats = arr[:, 2:6].tolist()
    for (i, t, p), (x, y, z, r) in zip(ints, floats):
        out_lines.append(f"{i} {t} {_format_float(x)} {_format_float(y)} {_format_float(z)} {_format_float(r)} {p}")
    atomic_write_text(path, "\n".join(out_lines) + "\n")
    return path


def swc_to_physical(swc: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Voxel-unit SWC -> physical units: ``x*sx, y*sy, z*sz`` and ``radius*sx``; ``spacing`` is ``(sz, sy, sx)``."""
    sz, sy, sx = as_spacing(spacing)
    out = validate_swc(swc).copy()
    out[:, 2] *= sx
    out[:, 3] *= sy
    out[:, 4] *= sz
    out[:, 5] *= sx
    return out


def swc_to_voxel(swc: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Physical-unit SWC -> voxel units, the inverse of :func:`swc_to_physical`."""
    sz, sy, sx = as_spacing(spacing)
    out = validate_swc(swc).copy()
    out[:, 2] /= sx
    out[:, 3] /= sy
    out[:, 4] /= sz
    out[:, 5] /= sx
    return out


def swc_parent_index(swc: np.ndarray) -> np.ndarray:
    """Row index of each node's parent (``-1`` for roots), whatever the id numbering."""
    ids = swc[:, 0]
    order = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids[order], swc[:, 6])
    pos = np.clip(pos, 0, len(ids) - 1)
    parent = order[pos]
    parent[swc[:, 6] == -1] = -1
    return parent


def swc_tree_index(swc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per node, the row of its parent (-1 for a root or a parent id not in the array) and the index of its tree
    (roots numbered in row order), for an ``(N, 7)`` SWC array without cycles (:func:`validate_swc`)."""
    ids = swc[:, 0].astype(np.int64)
    parents = swc[:, 6].astype(np.int64)
    row_of = {int(i): r for r, i in enumerate(ids)}
    parent_row = np.array([row_of.get(int(p), -1) for p in parents], dtype=np.int64)
    roots = np.flatnonzero(parent_row < 0)
    tree = np.full(len(ids), -1, dtype=np.int64)
    tree[roots] = np.arange(len(roots))
    # pointer jumping: each node's ancestor chain ends at its root
    ptr = np.where(parent_row < 0, np.arange(len(ids)), parent_row)
    for _ in range(int(np.ceil(np.log2(len(ids) + 1))) + 1):
        ptr = ptr[ptr]
    return parent_row, tree[ptr]
