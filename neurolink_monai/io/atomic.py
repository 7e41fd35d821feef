# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Atomic file output: write a temporary file in the destination folder, then ``os.replace`` it into place.

Readers see the old file or the whole new one, never a partial file, and a failed write leaves nothing behind.
New files get the usual permissions (``0o666`` minus the umask), not the ``0o600`` of a temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output", "atomic_write_bytes", "atomic_write_text"]


def _umask() -> int:
    # Linux states the umask in /proc: reading it leaves the process umask alone, whereas the os.umask round trip
    # briefly sets it to 0 for every thread (a file another thread creates then would be world-writable)
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Example::

        with atomic_output("out.tif", suffix=".tif") as tmp:
            tifffile.imwrite(tmp, array)
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a :class:`~pathlib.Path`."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` (``\\n`` line endings) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
