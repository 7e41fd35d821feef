# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Headless napari: offscreen Qt with an OpenGL context from a private Xvfb display (tests, screenshot script).

napari draws with OpenGL. Qt's ``offscreen`` platform has no OpenGL context of its own but takes a GLX one from an X
display, so on a machine without a screen :func:`ensure_display` starts ``Xvfb`` (Debian package ``xvfb``).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess

__all__ = ["ensure_display"]


def _die_with_parent() -> None:
    # Xvfb gets SIGTERM when the Python process exits (Linux prctl PR_SET_PDEATHSIG); stopping it any earlier would
    # break a QApplication that lives until the interpreter exits (pytest-qt's does) with an X I/O error
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def ensure_display(screen: str = "1600x1200x24") -> str | None:
    """Set ``QT_QPA_PLATFORM=offscreen`` (unless set) and return ``DISPLAY``, starting a private Xvfb when unset.

    Call it before the ``QApplication`` exists. Returns None when there is no display and no ``Xvfb`` binary (napari
    then cannot draw). The Xvfb server ends with this process.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if os.environ.get("DISPLAY"):
        return os.environ["DISPLAY"]
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        return None
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_fd), "-screen", "0", screen, "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        preexec_fn=_die_with_parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    with os.fdopen(read_fd) as f:
        number = f.readline().strip()
    if not number:
        proc.kill()
        return None
    os.environ["DISPLAY"] = f":{number}"
    return os.environ["DISPLAY"]
