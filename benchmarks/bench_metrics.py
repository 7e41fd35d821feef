# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Time the tree metrics on two random-walk trees (default 10,000 nodes each) and print the figures.

Usage: python benchmarks/bench_metrics.py [--nodes 10000] [--repeats 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from neurolink_monai.metrics import neuron_distance, node_prf, skeleton_continuity
from neurolink_monai.skeleton import subdivide_graph, swc_to_graph

__all__ = ["random_walk_tree"]


def random_walk_tree(n: int, rng: np.random.Generator, step: float = 1.5, branch_prob: float = 0.02) -> np.ndarray:
    """An (n, 7) SWC tree: a 3D random walk of steps ``step`` voxels that restarts from a random earlier node with
    probability ``branch_prob`` per node (creating a branch point)."""
    xyz = np.zeros((n, 3))
    parent = np.full(n, -1, dtype=np.int64)
    xyz[0] = (200.0, 200.0, 50.0)
    direction = rng.normal(size=3)
    for i in range(1, n):
        p = int(rng.integers(0, i)) if rng.random() < branch_prob else i - 1
        direction = direction / np.linalg.norm(direction) + 0.5 * rng.normal(size=3)
        xyz[i] = xyz[p] + step * direction / np.linalg.norm(direction)
        parent[i] = p
    swc = np.zeros((n, 7))
    swc[:, 0] = np.arange(1, n + 1)
    swc[:, 1] = 3
    swc[:, 2:5] = xyz
    swc[:, 5] = 1.0
    swc[:, 6] = np.where(parent >= 0, parent + 1, -1)
    return swc


def _timed(fn, repeats: int) -> tuple[float, float, object]:
    """(median, min) wall time of ``fn()`` over ``repeats`` runs, and its last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    gold = random_walk_tree(args.nodes, rng)
    other = random_walk_tree(args.nodes, rng)  # an unrelated tree: the hard case, many far points
    jittered = gold.copy()
    jittered[:, 2:5] += rng.normal(scale=0.7, size=(args.nodes, 3))
    print(f"two random-walk trees of {args.nodes} nodes (step 1.5 voxels); wall time median / min of {args.repeats}")
    for label, test in (("gold vs jittered gold (sigma 0.7)", jittered), ("gold vs unrelated tree", other)):
        med, low, r = _timed(lambda: neuron_distance(test, gold), args.repeats)
        print(
            f"neuron_distance  {label:34s} {med:6.3f} / {low:6.3f} s  ESA={r['ESA']:.3f} DSA={r['DSA']:.3f} "
            f"PDS={r['PDS']:.3f} ({int(r['n_samples_a'])} + {int(r['n_samples_b'])} samples)"
        )
        med, low, r = _timed(lambda: node_prf(test, gold), args.repeats)
        print(
            f"node_prf         {label:34s} {med:6.3f} / {low:6.3f} s  P={r['precision']:.3f} R={r['recall']:.3f} "
            f"F1={r['f1']:.3f}"
        )
    # a mask rasterised from the gold tree (26-connected), intact and cut by 20 gaps of 3x3x3 voxels
    shifted = gold.copy()
    shifted[:, 2:5] -= np.floor(gold[:, 2:5].min(axis=0)) - 3
    points = subdivide_graph(swc_to_graph(shifted), 1.0).points  # consecutive voxels 26-adjacent
    shape = tuple(int(v) for v in np.ceil(points.max(axis=0)) + 4)
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(np.rint(points).astype(int).T)] = True
    cut = mask.copy()
    for z, y, x in np.rint(points[rng.choice(len(points), 20, replace=False)]).astype(int):
        cut[z - 1 : z + 2, y - 1 : y + 2, x - 1 : x + 2] = False
    for label, pred in (("intact", mask), ("20 gaps", cut)):
        med, low, r = _timed(lambda: skeleton_continuity(pred, shifted), args.repeats)
        print(
            f"skeleton_continuity mask {shape} {label:8s} {med:6.3f} / {low:6.3f} s  breaks={r['breaks']:.0f} "
            f"splits={r['splits']:.0f} erl={r['erl']:.1f} erl_gold={r['erl_gold']:.1f}"
        )


if __name__ == "__main__":
    main()
