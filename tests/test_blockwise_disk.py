# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The blockwise command on a full disk: a clear error, no half-written output, and a resume once space is freed."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import zarr
from test_blockwise_cli import case, command, env, reference_prob  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

from neurolink_monai.inference.blockwise import read_record


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            "d=$(mktemp -d) && mount -t tmpfs -o size=64k tmpfs $d && umount $d && rmdir $d",
        ],
        capture_output=True,
    )
    return r.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unprivileged user namespaces to mount a small tmpfs")
def test_full_disk_gives_clear_error_then_resumes(case, tmp_path):
    """A real ENOSPC: the output goes to a 320 KiB tmpfs (mounted in a private user+mount namespace)."""
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    out = mnt / "out.zarr"
    cmd = " ".join(
        f"'{c}'"
        for c in command(
            case,
            out,
            "--scheduler",
            "synchronous",
            "--no-progress",
            "--save-direction",
            "--save-distance",
            "--maps-dtype",
            "float32",
        )
    )
    script = f"""
set -u
mount -t tmpfs -o size=320k tmpfs '{mnt}'
{cmd} 2> '{tmp_path}/first.err'; echo $? > '{tmp_path}/first.rc'
ls -a '{mnt}' > '{tmp_path}/after_full.txt'
mount -o remount,size=64m '{mnt}'
{cmd} 2> '{tmp_path}/second.err'; echo $? > '{tmp_path}/second.rc'
cp -r '{out}' '{tmp_path}/copied.zarr'
"""
    r = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "bash", "-c", script],
        env=env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    first_err = (tmp_path / "first.err").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "1", first_err
    assert "disk full" in first_err and "No space left on device" in first_err and "rerun the same command" in first_err
    assert "Traceback" not in first_err
    listing = (tmp_path / "after_full.txt").read_text().split()
    assert "out.zarr" not in listing and "out.zarr.partial" in listing  # no half-written final output
    second_err = (tmp_path / "second.err").read_text()
    assert (tmp_path / "second.rc").read_text().strip() == "0", second_err
    assert "resuming" in second_err
    copied = tmp_path / "copied.zarr"
    assert read_record(copied)["status"] == "complete"
    prob = zarr.open_array(str(copied / "prob" / "0"), mode="r")[:].astype(np.float32)
    assert np.abs(prob - reference_prob(case)).max() <= 1e-3
