# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The official DIADEM metric (Gillette, Brown & Ascoli, Neuroinformatics 2011), run through its Java scorer.

The scorer, ``DiademMetric.jar`` with ``JSAP-2.1.jar`` beside it, is distributed with the DIADEM challenge data and
is not part of this package: point :func:`find_diadem_jar` at it (argument or ``NEUROLINK_DIADEM_JAR``). It reads
only the first tree of the test SWC and needs every parent before its children, which
:func:`neurolink_monai.io.write_swc` guarantees.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from neurolink_monai.io import read_swc, write_swc

__all__ = ["DIADEM_JAR_ENV", "DIADEM_DATASETS", "find_diadem_jar", "diadem_score"]

DIADEM_JAR_ENV = "NEUROLINK_DIADEM_JAR"
DIADEM_DATASETS = {
    "climbing_fibers": 1,
    "hippocampal_ca3": 2,
    "neocortical_l1": 3,
    "neuromuscular": 4,
    "olfactory_projection": 5,
    "visual_cortical_l6": 6,
}
"""The scorer's ``-D`` presets; 5 is for the olfactory projection fibres (DIADEM OP stacks)."""

_SCORE = re.compile(r"^Score:\s*([0-9.eE+-]+|NaN)\s*$", re.MULTILINE)
# the scorer stops reading a file at a line it cannot parse (exponent notation, a float id or type) and still
# prints a score, of the part it read
_UNREADABLE = re.compile(r"Improper SWC format at line (\d+) of (\S+)")


def find_diadem_jar(jar: str | os.PathLike | None = None) -> Path | None:
    """``DiademMetric.jar`` from ``jar``, else ``$NEUROLINK_DIADEM_JAR``; None when neither names an existing file
    or when no ``java`` is on the PATH (the metric cannot run then)."""
    candidate = jar if jar is not None else os.environ.get(DIADEM_JAR_ENV)
    if candidate is None or shutil.which("java") is None:
        return None
    path = Path(candidate).expanduser()
    return path if path.is_file() else None


def _as_file(swc: Any, folder: Path, name: str) -> Path:
    """``swc`` (array or path) as the file ``folder / name``: the scorer's messages then tell test from gold."""
    path = folder / name
    if isinstance(swc, (str, os.PathLike)):
        shutil.copyfile(swc, path)
    else:
        write_swc(path, np.asarray(swc, dtype=np.float64).reshape(-1, 7))
    return path


def _second_root_line(path: Path) -> int:
    """The 1-based line number of the second root in the file (where the first tree ends), else past the end."""
    roots = number = 0
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if fields and not fields[0].startswith("#") and fields[-1] == "-1":
                roots += 1
                if roots == 2:
                    return number
    return number + 1


def _shown(source: Any, copy: Path) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else f"the {copy.stem} SWC array"


def _check_read(stderr: str, test: tuple[Path, Any], gold: tuple[Path, Any]) -> None:
    """Raise when the scorer stopped reading the gold, or the test inside its first tree (the one it scores; past
    it the score stands). ``test`` and ``gold`` are (the scorer's copy, what the caller passed)."""
    unreadable = _UNREADABLE.search(stderr)
    if unreadable is None:
        return
    line, name = int(unreadable.group(1)), unreadable.group(2)
    for (copy, source), read_to in ((test, _second_root_line(test[0])), (gold, math.inf)):
        if copy.name == name and line < read_to:
            raise ValueError(
                f"the DIADEM scorer cannot read line {line} of {_shown(source, copy)} (it takes plain decimals, no "
                "exponent, and integer ids, types and parents), so it would score only the part before that line. "
                "Rewrite the file with neurolink_monai.io.write_swc."
            )


def diadem_score(test: Any, gold: Any, jar: str | os.PathLike, dataset: int = 5, timeout: float = 300.0) -> float:
    """The DIADEM score of ``test`` against ``gold`` (1 is a perfect match of the gold tree).

    Args:
        test: the reconstruction, an (N, 7) SWC array or an SWC path, in the gold trace's units (voxels for the
            DIADEM OP stacks). An empty reconstruction scores 0.
        gold: the gold SWC, array or path.
        jar: ``DiademMetric.jar`` (see :func:`find_diadem_jar`).
        dataset: the scorer's ``-D`` threshold preset, see :data:`DIADEM_DATASETS`.
        timeout: seconds before the Java process is stopped.

    Raises:
        FileNotFoundError: ``jar`` does not exist.
        ValueError: the scorer cannot read a line of ``test`` or ``gold`` (it would score only the lines before).
        RuntimeError: the scorer failed or printed no score; the message holds its output.
    """
    jar = Path(jar)
    if not jar.is_file():
        raise FileNotFoundError(f"DIADEM scorer {str(jar)!r} does not exist.")
    if not isinstance(test, (str, os.PathLike)) and len(np.asarray(test).reshape(-1, 7)) == 0:
        return 0.0
    if isinstance(test, (str, os.PathLike)) and len(read_swc(test)) == 0:
        return 0.0
    with tempfile.TemporaryDirectory(prefix="diadem_") as tmp:
        folder = Path(tmp)
        test_path, gold_path = _as_file(test, folder, "test.swc"), _as_file(gold, folder, "gold.swc")
        cmd = ["java", "-jar", str(jar), "-G", str(gold_path), "-T", str(test_path), "-D", str(int(dataset))]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=jar.parent)
        _check_read(run.stderr, (test_path, test), (gold_path, gold))
    match = _SCORE.search(run.stdout)
    if run.returncode != 0 or match is None:
        output = (run.stdout + run.stderr).strip()[-2000:]
        raise RuntimeError(f"DIADEM scorer failed (exit {run.returncode}) on {_shown(test, test_path)}: {output}")
    value = float(match.group(1))
    return value if np.isfinite(value) else 0.0
