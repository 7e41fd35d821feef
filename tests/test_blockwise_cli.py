# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The blockwise command: a LocalCluster run with a progress bar, and a run killed after a known block that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from monai.inferers import SlidingWindowInferer

from neurolink_monai.inference.blockwise import partial_path, read_record
from neurolink_monai.transforms import intensity_window, scale_intensity

from helpers import tiny_net

REPO = Path(__file__).resolve().parents[1]
NETWORK_DEF = {
    "_target_": "neurolink_monai.networks.NeuroLinkNet",
    "features": [4, 8],
    "kernel_size": 3,
    "dsconv": True,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def case(tmp_path):
    """A (16, 64, 96) uint16 Zarr stack, a tiny snake-conv NeuroLinkNet state dict and its bundle-style config."""
    rng = np.random.default_rng(0)
    vol = rng.poisson(150, size=(16, 64, 96)).astype(np.uint16)
    vol[:, 30:34, :] += 2000
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=vol.shape, chunks=(8, 32, 32), dtype="uint16")
    z[:] = vol
    net = tiny_net(NETWORK_DEF["features"], dsconv=NETWORK_DEF["dsconv"])
    torch.save(net.state_dict(), tmp_path / "tiny.pt")
    (tmp_path / "tiny.json").write_text(json.dumps({"network_def": NETWORK_DEF}))
    return {"vol": vol, "net": net, "src": tmp_path / "in.zarr", "dir": tmp_path}


def command(case, out, *extra, chunks=("8", "16", "16")):
    d = case["dir"]
    return [
        sys.executable,
        "-m",
        "neurolink_monai.inference.blockwise",
        str(case["src"]),
        str(out),
        "--model",
        str(d / "tiny.pt"),
        "--config",
        str(d / "tiny.json"),
        "--bundle-dir",
        str(d / "no-bundle"),
        "--roi-size",
        "8",
        "16",
        "16",
        "--overlap",
        "0.25",
        "--chunks",
        *chunks,
        "--torch-threads",
        "1",
        *extra,
    ]


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return e


def reference_prob(case) -> np.ndarray:
    vol = case["vol"]
    x = scale_intensity(torch.from_numpy(vol), intensity_window(vol))[None, None]
    with torch.inference_mode():
        ref = SlidingWindowInferer((8, 16, 16), 8, 0.25)(x, case["net"])[0]
    return torch.sigmoid(ref[0]).numpy()


def done_blocks(partial: Path) -> int:
    progress = partial / "_progress" / "c"
    if not progress.is_dir():
        return 0
    return sum(1 for p in progress.rglob("*") if p.is_file() and not p.name.endswith(".partial"))


# Runs the command in a child process that SIGKILLs itself right after its KILL_AFTER-th block is written and
# marked: a crash (or a cluster pre-emption) at a known point, with no clean-up at all.
KILL_AFTER = 3
CRASH_AFTER_BLOCKS = """
import os, signal, sys
from neurolink_monai.inference.blockwise import cli, runner

written = 0
write_block = runner.write_block


def write_then_crash(*args, **kwargs):
    global written
    write_block(*args, **kwargs)
    written += 1
    if written == int(sys.argv[1]):
        os.kill(os.getpid(), signal.SIGKILL)


runner.write_block = write_then_crash
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.timeout(300)
def test_local_cluster_run_with_progress_bar(case, tmp_path):
    out = tmp_path / "out.zarr"
    cmd = command(
        case, out, "--workers", "1", "--threads-per-worker", "2", "--save-direction", chunks=("16", "32", "48")
    )
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "blockwise: 100%" in r.stderr and "4/4" in r.stderr and "done: complete" in r.stderr
    g = zarr.open_group(str(out), mode="r")
    assert sorted(g.keys()) == ["direction", "mask", "prob"]
    assert np.abs(g["prob/0"][:].astype(np.float32) - reference_prob(case)).max() <= 1e-3
    assert read_record(out)["model_source"] == str((case["dir"] / "tiny.pt").resolve())


@pytest.mark.timeout(300)
def test_killed_run_resumes_and_matches(case, tmp_path):
    out = tmp_path / "out.zarr"
    cmd = command(case, out, "--scheduler", "synchronous", "--no-progress")
    crash = [sys.executable, "-c", CRASH_AFTER_BLOCKS, str(KILL_AFTER), *cmd[3:]]
    r = subprocess.run(crash, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert done_blocks(partial_path(out)) == KILL_AFTER and not out.exists()
    assert read_record(partial_path(out))["status"] == "incomplete"

    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resuming {partial_path(out)}: {KILL_AFTER} of 48 blocks already written" in r.stderr
    assert f"{48 - KILL_AFTER} blocks computed, {KILL_AFTER} skipped" in r.stderr
    assert not partial_path(out).exists() and read_record(out)["status"] == "complete"
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial")]
    prob = zarr.open_array(str(out / "prob" / "0"), mode="r")[:].astype(np.float32)
    assert np.abs(prob - reference_prob(case)).max() <= 1e-3  # no seam where the run was cut
