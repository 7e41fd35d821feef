# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Time ``trace_swc`` on a synthetic 100x512x512 probability map with weak stretches, and print its scores.

The volume holds random-walk neuron trees rasterised with SWCToMask, blurred into a probability, with
``--gaps`` weak stretches (the probability scaled down in small balls, below the threshold) and optional
speckle noise. Each configuration is traced ``--repeats`` times; the median wall time, the trace size and the
scores against the generating SWC (number of trees, Vaa3D ESA / PDS, node F1 at 4 voxels) are printed,
with bridging on (the default) and off (``max_gap=0``).

Usage: python benchmarks/bench_tracing.py [--shape 100 512 512] [--repeats 3] [--gaps 40] [--noise 0.12] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy import ndimage as ndi

from neurolink_monai.metrics import neuron_distance, node_prf
from neurolink_monai.tracing import trace_swc
from neurolink_monai.transforms import SWCToMask, direction_map_from_swc, mask_distance_transform


def random_trees(shape: tuple[int, int, int], n_trees: int, nodes: int, rng: np.random.Generator) -> np.ndarray:
    """An SWC forest of ``n_trees`` branching random walks (steps of 1.5 voxels) kept inside ``shape``."""
    rows, next_id = [], 1
    lo = np.array([4.0, 8.0, 8.0])
    hi = np.array(shape, dtype=np.float64) - 1.0 - lo  # (z, y, x) bounds
    for _ in range(n_trees):
        zyx = np.zeros((nodes, 3))
        parent = np.full(nodes, -1)
        zyx[0] = rng.uniform(lo, hi)
        heading = rng.normal(size=3) * np.array([0.3, 1.0, 1.0])
        for i in range(1, nodes):
            p = int(rng.integers(0, i)) if rng.random() < 0.01 else i - 1
            heading = heading / np.linalg.norm(heading) + 0.25 * rng.normal(size=3) * np.array([0.3, 1.0, 1.0])
            step = 1.5 * heading / np.linalg.norm(heading)
            nxt = zyx[p] + step
            out = (nxt < lo) | (nxt > hi)
            heading[out] *= -1.0
            zyx[i] = np.clip(zyx[p] + np.where(out, -step, step), lo, hi)
            parent[i] = p
        radius = rng.uniform(1.2, 2.5)
        ids = np.arange(next_id, next_id + nodes)
        rows.append(
            np.column_stack(
                [
                    ids,
                    np.full(nodes, 3),
                    zyx[:, 2],
                    zyx[:, 1],
                    zyx[:, 0],
                    np.full(nodes, radius),
                    np.where(parent >= 0, ids[np.maximum(parent, 0)], -1),
                ]
            )
        )
        next_id += nodes
    return np.concatenate(rows).astype(np.float64)


def synthetic_case(shape, gaps: int, noise: float, seed: int):
    rng = np.random.default_rng(seed)
    swc = random_trees(shape, n_trees=4, nodes=1200, rng=rng)
    mask = SWCToMask(shape)(swc)[0].astype(bool)
    prob = ndi.gaussian_filter(mask.astype(np.float32), 0.8)
    prob = np.clip(prob / max(float(prob.max()), 1e-6) * 1.3, 0.0, 1.0)
    # weak stretches: balls around random trace nodes dimmed below the threshold
    centres = swc[rng.choice(len(swc), size=gaps, replace=False)][:, [4, 3, 2]]
    zz, yy, xx = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for c in centres:
        r = rng.uniform(2.5, 4.5)
        box = tuple(slice(max(int(c[i] - r - 1), 0), int(c[i] + r + 2)) for i in range(3))
        d2 = (zz[box[0]] - c[0]) ** 2 + (yy[:, box[1]] - c[1]) ** 2 + (xx[:, :, box[2]] - c[2]) ** 2
        prob[box] = np.where(d2 <= r * r, prob[box] * 0.3, prob[box])
    if noise > 0:
        prob = np.clip(prob + rng.normal(scale=noise, size=shape).astype(np.float32), 0.0, 1.0)
    direction = direction_map_from_swc(swc, shape)
    distance = mask_distance_transform(mask)
    return swc, prob.astype(np.float32), direction, distance


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", nargs=3, type=int, default=[100, 512, 512])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gaps", type=int, default=40)
    ap.add_argument("--noise", type=float, default=0.12)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shape = tuple(args.shape)
    t0 = time.perf_counter()
    gold, prob, direction, distance = synthetic_case(shape, args.gaps, args.noise, args.seed)
    print(
        f"synthetic volume {shape}: {len(gold)} gold nodes, {int((prob >= 0.5).sum())} voxels >= 0.5, "
        f"{args.gaps} weak stretches, noise sigma {args.noise} (built in {time.perf_counter() - t0:.1f} s)"
    )
    cases = {
        "prob only": dict(),
        "prob, no bridging": dict(max_gap=0.0),
        "prob + direction + distance": dict(direction=direction, distance=distance),
    }
    header = f"{'input':30s} {'median s':>9s} {'nodes':>6s} {'trees':>6s} {'ESA':>6s} {'PDS':>6s} {'F1@4':>6s}"
    print(header + "  (gold: 4 trees)")
    for name, kw in cases.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            swc = trace_swc(prob, **kw)
            times.append(time.perf_counter() - start)
        nd = neuron_distance(swc, gold)
        f1 = node_prf(swc, gold, tolerance=4.0)["f1"]
        n_trees = int((swc[:, 6] == -1).sum())
        print(
            f"{name:30s} {statistics.median(times):9.2f} {len(swc):6d} {n_trees:6d} {nd['ESA']:6.2f} "
            f"{nd['PDS']:6.3f} {f1:6.3f}"
        )


if __name__ == "__main__":
    main()
