# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Time the training targets: mask + direction + distance for a 128x256x256 grid from a ~2,000-node SWC.

Target (issue "Microscopy I/O and morphology targets"): <= 2 s on CPU for the three together.

    python benchmarks/bench_targets.py [--repeats 5] [--nodes 2000] [--shape 128 256 256] [--label-path]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from monai.data import MetaTensor

from neurolink_monai.transforms import DirectionMap, DirectionMapd, DistanceMap, DistanceMapd, SWCToMask, SWCToMaskd


def random_tree_swc(n_nodes: int, shape: tuple[int, int, int], seed: int = 0, step: float = 2.0) -> np.ndarray:
    """Persistent random walks that branch, kept inside ``shape`` (D, H, W); radii 1-3 voxels, tapering."""
    rng = np.random.default_rng(seed)
    hi = np.asarray(shape[::-1], dtype=float) - 3.0  # x, y, z bounds
    swc = np.zeros((n_nodes, 7))
    swc[:, 0] = np.arange(1, n_nodes + 1)
    swc[:, 1] = 3
    pos = np.zeros((n_nodes, 3))
    heading = np.zeros((n_nodes, 3))
    pos[0] = hi / 2
    heading[0] = rng.normal(size=3)
    swc[0, 6] = -1
    swc[0, 5] = 3.0
    tips = [0]
    for i in range(1, n_nodes):
        p = tips[-1] if rng.random() > 0.02 else int(rng.integers(0, i))
        h = heading[p] + 0.35 * rng.normal(size=3)
        h[2] *= 0.5  # flatter in z, like most light-microscopy neurites
        h /= np.linalg.norm(h)
        q = pos[p] + step * h
        out = (q < 2) | (q > hi)
        h[out] *= -1
        q = np.clip(pos[p] + step * h, 2, hi)
        pos[i], heading[i] = q, h
        swc[i, 6] = p + 1
        swc[i, 5] = max(1.0, swc[p, 5] * 0.998)
        if p == tips[-1]:
            tips[-1] = i
        else:
            tips.append(i)
    swc[:, 2:5] = pos
    return swc


def _median_time(fn, repeats: int) -> tuple[float, float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times)), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 256, 256))
    parser.add_argument("--spacing", type=float, nargs=3, default=(1.0, 0.33, 0.33))
    parser.add_argument("--label-path", action="store_true", help="also time DirectionMap from the label alone")
    args = parser.parse_args()
    shape, spacing = tuple(args.shape), tuple(args.spacing)
    swc = random_tree_swc(args.nodes, shape, seed=0)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}; grid {shape}, spacing {spacing}, "
        f"SWC {len(swc)} nodes, {args.repeats} repeats (median / best)"
    )

    to_mask = SWCToMask(shape, spacing)
    direction = DirectionMap(spacing=spacing)
    distance = DistanceMap(spacing=spacing)
    med_m, best_m, label = _median_time(lambda: to_mask(swc), args.repeats)
    med_d, best_d, dmap = _median_time(lambda: direction(label, swc), args.repeats)
    med_t, best_t, tmap = _median_time(lambda: distance(label), args.repeats)
    fg = int((label > 0).sum())
    band = int((np.abs(dmap).sum(0) > 0).sum())
    print(f"  SWCToMask            {med_m:6.3f} s / {best_m:6.3f} s   ({fg} foreground voxels, {fg / label.size:.2%})")
    print(f"  DirectionMap (SWC)   {med_d:6.3f} s / {best_d:6.3f} s   ({band} band voxels)")
    print(f"  DistanceMap          {med_t:6.3f} s / {best_t:6.3f} s   (max {float(tmap.max()):.2f} x-voxels)")
    print(f"  array total          {med_m + med_d + med_t:6.3f} s / {best_m + best_d + best_t:6.3f} s")

    aff = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.zeros(1, *shape), affine=aff, meta={"original_affine": aff.numpy()})
    chain = [SWCToMaskd("swc", ref_key="image"), DirectionMapd("label", swc_key="swc"), DistanceMapd("label")]

    def run_dict():
        d = {"image": image, "swc": swc}
        for t in chain:
            d = t(d)
        return d

    med, best, _ = _median_time(run_dict, args.repeats)
    print(f"  dict chain total     {med:6.3f} s / {best:6.3f} s   (SWCToMaskd -> DirectionMapd -> DistanceMapd)")
    if args.label_path:
        med_l, best_l, _ = _median_time(lambda: DirectionMap(spacing=spacing)(label), max(1, args.repeats // 2))
        print(f"  DirectionMap (label) {med_l:6.3f} s / {best_l:6.3f} s   (no SWC: ridge PCA + Gaussian spread)")


if __name__ == "__main__":
    main()
