# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Peak memory and throughput of out-of-core blockwise inference on synthetic uint16 volumes of 1 GB and 4 GB.

For each size the script writes a synthetic stack into a Zarr array on disk, runs the real command
``python -m neurolink_monai.inference.blockwise`` on it (LocalCluster, ``--workers`` x ``--threads-per-worker``),
samples the resident memory (RSS) of the command's whole process tree (client, scheduler, nannies, workers) every
0.2 s with psutil, and reports the peak of the sum, the wall time and the voxels/s the command printed. Inputs and
outputs go to a temporary folder (``--tmp``, free space is checked first) and are deleted afterwards.

The default network is tiny on purpose (``--model conv``: Conv3d 1->4 (3x3x3), LeakyReLU, Conv3d 4->5 (1x1x1),
random weights, exported to TorchScript; output channels laid out like NeuroLinkNet's) so that 2.5 G voxels finish
in tens of minutes on a 2-core CPU; memory is dominated by the blocks, not by the network. ``--model neurolink``
uses ``NeuroLinkNet(features=(4, 8, 16), kernel_size=3)`` and ``--model bundle`` the bundle's network
(``features=(8, 16, 32, 64)``), both far slower on CPU: use small ``--sizes-gb`` and ``--plane``.

    python benchmarks/bench_blockwise.py                          # 1 GB and 4 GB, conv model, 2 workers
    python benchmarks/bench_blockwise.py --sizes-gb 0.004 --plane 256 256 --roi 32 64 64 --model neurolink
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch
import zarr
from torch import nn

from neurolink_monai.networks import NeuroLinkNet


def tree_rss(proc: psutil.Process) -> tuple[int, dict[int, int]]:
    """Sum of RSS over ``proc`` and all its descendants, and the RSS of each."""
    per: dict[int, int] = {}
    for p in [proc, *proc.children(recursive=True)]:
        try:
            per[p.pid] = p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return sum(per.values()), per


def generate(path: Path, shape: tuple[int, int, int], seed: int = 0) -> None:
    """uint16 background noise (~110) with bright tubes along x, written slab by slab (bounded memory)."""
    rng = np.random.default_rng(seed)
    z = zarr.create_array(str(path), shape=shape, chunks=(64, 512, 512), dtype="uint16")
    tubes = rng.uniform((0, 0), shape[:2], size=(max(4, shape[0] * shape[1] // 20000), 2)).astype(int)
    for z0 in range(0, shape[0], 64):
        z1 = min(z0 + 64, shape[0])
        slab = rng.integers(80, 140, size=(z1 - z0, *shape[1:]), dtype=np.uint16)
        for tz, ty in tubes[(tubes[:, 0] >= z0) & (tubes[:, 0] < z1)]:
            slab[tz - z0, max(ty - 1, 0) : ty + 2, :] += 1500
        z[z0:z1] = slab


def make_model(kind: str, folder: Path) -> Path:
    torch.manual_seed(0)
    if kind == "conv":
        net = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv3d(4, 5, 1)).eval()
    elif kind == "neurolink":
        net = NeuroLinkNet(features=(4, 8, 16), kernel_size=3).eval()
    else:  # the network_def of bundle/configs/inference.json
        net = NeuroLinkNet(features=(8, 16, 32, 64), kernel_size=3).eval()
    path = folder / f"{kind}.ts"
    torch.jit.save(torch.jit.script(net), str(path))
    return path


def run_one(args: argparse.Namespace, size_gb: float, folder: Path, model: Path) -> dict:
    ny, nx = args.plane
    nz = max(1, int(round(size_gb * 2**30 / (2 * ny * nx))))
    shape = (nz, ny, nx)
    src, out = folder / f"in_{size_gb:g}gb.zarr", folder / f"out_{size_gb:g}gb.zarr"
    t0 = time.perf_counter()
    generate(src, shape)
    gen_s = time.perf_counter() - t0
    cmd = [
        sys.executable,
        "-m",
        "neurolink_monai.inference.blockwise",
        str(src),
        str(out),
        "--model",
        str(model),
        "--bundle-dir",
        str(folder / "no-bundle"),
        "--roi-size",
        *map(str, args.roi),
        "--overlap",
        str(args.overlap),
        "--mode",
        "gaussian",
        "--workers",
        str(args.workers),
        "--threads-per-worker",
        str(args.threads_per_worker),
        "--torch-threads",
        str(args.torch_threads),
        "--no-progress",
    ]
    if args.chunks:
        cmd += ["--chunks", *map(str, args.chunks)]
    if args.device:
        cmd += ["--device", args.device]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = [0, {}]
    per_peak: dict[int, int] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                total, per = tree_rss(ps)
            except psutil.NoSuchProcess:
                break
            if total > peak[0]:
                peak[0], peak[1] = total, per
            for pid, rss in per.items():
                per_peak[pid] = max(per_peak.get(pid, 0), rss)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    stop.set()
    sampler.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"blockwise failed on {shape}:\n{err}")
    rate = re.search(r"; ([0-9.e+]+) voxels/s", err)
    info = re.search(
        r"(\d+) blocks of \[([^\]]*)\]; (\d+) window evaluations \(([0-9.]+) per window\); ~(\d+) MiB", err
    )
    biggest = sorted(per_peak.values(), reverse=True)
    result = {
        "shape": shape,
        "gb": 2 * np.prod(shape) / 2**30,
        "gen_s": gen_s,
        "wall_s": wall,
        "vox_per_s": float(rate.group(1)) if rate else float("nan"),
        "peak_rss_gib": peak[0] / 2**30,
        "processes": len(per_peak),
        "largest_process_gib": biggest[0] / 2**30 if biggest else 0.0,
        "blocks": info.group(1) if info else "?",
        "chunks": info.group(2) if info else "?",
        "evals_per_window": info.group(4) if info else "?",
        "est_block_mib": info.group(5) if info else "?",
    }
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[1.0, 4.0])
    parser.add_argument("--plane", type=int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--model", choices=("conv", "neurolink", "bundle"), default="conv")
    parser.add_argument("--roi", type=int, nargs=3, default=[64, 128, 128])
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--chunks", type=int, nargs=3, default=None, help="default: 4 window steps per axis")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--device", default=None)
    parser.add_argument("--tmp", default=tempfile.gettempdir())
    args = parser.parse_args()

    need = sum(args.sizes_gb) * 2**30 * 2.6  # the largest input + its outputs at once, with room to spare
    free = shutil.disk_usage(args.tmp).free
    if free < need:
        raise SystemExit(f"{args.tmp}: {free / 2**30:.1f} GiB free, the benchmark needs about {need / 2**30:.1f} GiB")
    print(
        f"cpu: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB RAM; torch {torch.__version__}; "
        f"cuda: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}"
    )
    print(
        f"model={args.model} roi={args.roi} overlap={args.overlap} mode=gaussian workers={args.workers} "
        f"threads/worker={args.threads_per_worker} torch threads={args.torch_threads}"
    )
    folder = Path(tempfile.mkdtemp(prefix="bench_blockwise_", dir=args.tmp))
    print(
        f"{'volume':>22} {'GiB':>5} {'blocks':>6} {'chunks':>14} {'evals/win':>9} {'est MiB/blk':>11} "
        f"{'peak RSS GiB':>12} {'largest proc':>12} {'procs':>5} {'gen s':>6} {'wall s':>7} {'voxels/s':>10}",
        flush=True,
    )
    rows = []
    try:
        model = make_model(args.model, folder)
        for gb in args.sizes_gb:
            r = run_one(args, gb, folder, model)
            rows.append(r)
            print(
                f"{'x'.join(map(str, r['shape'])):>22} {r['gb']:>5.2f} {r['blocks']:>6} {r['chunks']:>14} "
                f"{r['evals_per_window']:>9} {r['est_block_mib']:>11} {r['peak_rss_gib']:>12.2f} "
                f"{r['largest_process_gib']:>12.2f} {r['processes']:>5} {r['gen_s']:>6.0f} {r['wall_s']:>7.1f} "
                f"{r['vox_per_s']:>10.3g}",
                flush=True,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if len(rows) > 1:
        print(
            f"peak RSS ratio largest/smallest volume: {rows[-1]['peak_rss_gib'] / rows[0]['peak_rss_gib']:.2f} "
            f"for a volume ratio of {rows[-1]['gb'] / rows[0]['gb']:.2f}"
        )


if __name__ == "__main__":
    main()
