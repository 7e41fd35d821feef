# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Time the synthetic generator per sample (in memory and written to disk) and print the figures.

Usage: python benchmarks/bench_synthetic.py [--shape 64 128 128] [--samples 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from neurolink_monai.data.synthetic import (
    SyntheticConfig,
    generate_crossing_fibres,
    generate_dataset,
    generate_neuron,
    generate_sample,
    render_components,
)
from neurolink_monai.transforms import SWCToMask


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128], metavar=("D", "H", "W"))
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shape, cfg = tuple(args.shape), SyntheticConfig()
    seeds = [np.random.SeedSequence(args.seed, spawn_key=(i,)) for i in range(args.samples)]
    generate_sample(shape, seeds[0], cfg)  # warm-up (imports, caches)

    total, cpu = [], []
    for s in seeds:
        c0 = time.process_time()
        total.append(_seconds(lambda s=s: generate_sample(shape, s, cfg)))
        cpu.append(time.process_time() - c0)
    morph, render, label = [], [], []
    for s in seeds:
        rng = np.random.default_rng(s)
        holder = {}
        morph.append(
            _seconds(
                lambda: holder.update(
                    swc=generate_neuron(shape, rng, cfg), fib=generate_crossing_fibres(shape, rng, cfg)
                )
            )
        )
        render.append(_seconds(lambda: holder.update(out=render_components(holder["swc"], shape, rng, cfg))))
        label.append(_seconds(lambda: SWCToMask(shape, cfg.spacing)(holder["swc"])))

    with tempfile.TemporaryDirectory() as tmp:
        t_disk = _seconds(
            lambda: generate_dataset(Path(tmp) / "ds", args.samples, shape, args.seed, cfg, progress=False)
        )
        size_mb = sum(p.stat().st_size for p in (Path(tmp) / "ds").rglob("*") if p.is_file()) / 2**20

    med = statistics.median
    print(f"synthetic sample {shape}, {args.samples} samples, seed {args.seed}")
    print(f"  generate_sample (in memory): median {med(total):.3f} s, max {max(total):.3f} s wall")
    print(f"    CPU time of this process: median {med(cpu):.3f} s (wall exceeds it when the cores are shared)")
    print(f"    load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"    morphology (neuron + fibres): median {med(morph):.3f} s")
    print(f"    render_components (incl. label): median {med(render):.3f} s")
    print(f"    label mask alone (SWCToMask): median {med(label):.3f} s")
    print(f"  generate_dataset to disk (TIFF zlib + SWC + json): {t_disk / args.samples:.3f} s per sample")
    print(f"  dataset size on disk: {size_mb:.1f} MiB ({size_mb / args.samples:.2f} MiB per sample)")


if __name__ == "__main__":
    main()
