# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Benchmark of the NeuroLink losses on CPU: speed against MONAI's SoftclDiceLoss, gap discrimination, thinning.

Run: ``python benchmarks/bench_losses.py [--reps 5] [--size 96] [--threads 2]``. Prints measured figures only.

1. forward + backward time on ``(2, 1, size, size, size)`` logits of random tubes (oblique and axis-aligned,
   radius 1-3 voxels): MorphologyContinuityLoss (label thinning included), MONAI ``SoftclDiceLoss(iter_=3)``
   and the full NeuroLinkLoss on a 5-channel output, timed interleaved in the same run; median and min.
2. The constructed case of the issue: a label with a one-slice gap cut across the neurite versus the same number of
   wrong voxels on a thickened border, scored by Dice, SoftclDice and MorphologyContinuityLoss.
3. Label thinning: ``thin_curves`` versus ``skimage.morphology.skeletonize`` (time, and connected components of the
   label left without centreline over part of their length), on the synthetic labels and, when present, on masks
   rasterised from the real DIADEM OP_1..3 traces.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from monai.losses import DiceLoss, SoftclDiceLoss
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

from neurolink_monai.losses import MorphologyContinuityLoss, NeuroLinkLoss
from neurolink_monai.skeleton import thin_curves

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "real" / "diadem_op_dev"


def random_tubes(shape: tuple[int, int, int], rng: np.random.Generator, n: int = 8) -> np.ndarray:
    p = np.stack(np.indices(shape), axis=-1).astype(np.float32)
    mask = np.zeros(shape, dtype=bool)
    for i in range(n):
        a = rng.uniform(0, 1, 3) * shape
        b = rng.uniform(0, 1, 3) * shape
        if i % 2:  # axis-aligned segments give even-width cross-sections too
            axis = rng.integers(0, 3)
            b = a.copy()
            b[axis] = rng.uniform(0, shape[axis])
            a, b = np.round(a * 2) / 2, np.round(b * 2) / 2
        ab = b - a
        t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-6), 0, 1)
        mask |= np.linalg.norm(p - (a + t[..., None] * ab), axis=-1) <= rng.uniform(1.0, 3.0)
    return mask


def time_call(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def half_width(component: np.ndarray) -> float:
    """Largest in-plane half-width of a component: the max of its inner distance transform, in 3D and within the
    slices of each axis (flat, anisotropic cross-sections are wider in-plane than their 3D inner distance)."""
    padded = np.pad(component, 1)
    return max(
        ndi.distance_transform_edt(padded, sampling=s).max() for s in [(1, 1, 1), (1e3, 1, 1), (1, 1e3, 1), (1, 1, 1e3)]
    )


def uncovered_components(mask: np.ndarray, centre: np.ndarray) -> int:
    """Components of ``mask`` without a centreline voxel, or with a voxel farther from their centreline than twice
    their half-width plus 3 (a stretch of the neurite lost by the thinning)."""
    labels, _ = ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    bad = 0
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        component = labels[box] == i
        own = centre[box] & component
        if not own.any():
            bad += 1
            continue
        bad += int(ndi.distance_transform_edt(~own)[component].max() > 2 * half_width(component) + 3)
    return bad


def bench_speed(size: int, reps: int, rng: np.random.Generator) -> list[np.ndarray]:
    labels = [random_tubes((size,) * 3, rng) for _ in range(2)]
    label = torch.from_numpy(np.stack(labels)[:, None].astype(np.float32))
    logits = (2 * label - 1) * 3 + torch.randn_like(label)
    five = torch.cat([logits, torch.randn(2, 4, *label.shape[2:])], dim=1)
    band = torch.from_numpy(np.stack([ndi.binary_dilation(m) for m in labels])).float()
    direction = torch.zeros(2, 3, *label.shape[2:])
    direction[:, 0] = band
    distance = torch.from_numpy(np.stack([ndi.distance_transform_edt(m) for m in labels])[:, None]).float()
    stacked = torch.cat([label, direction, distance], dim=1)

    ours, cldice, full = MorphologyContinuityLoss(), SoftclDiceLoss(iter_=3, sigmoid=True), NeuroLinkLoss()

    def run(loss, pred, target):
        x = pred.clone().requires_grad_(True)
        loss(x, target).backward()

    cold = time_call(lambda: run(ours, logits, label))  # includes the first use of the thinning memo
    times: dict[str, list[float]] = {"MorphologyContinuityLoss": [], "SoftclDiceLoss(iter_=3)": [], "NeuroLinkLoss": []}
    for _ in range(reps):  # interleaved, so machine load hits all alike
        times["MorphologyContinuityLoss"].append(time_call(lambda: run(ours, logits, label)))
        times["SoftclDiceLoss(iter_=3)"].append(time_call(lambda: run(cldice, logits, label)))
        times["NeuroLinkLoss"].append(time_call(lambda: run(full, five, stacked)))
    print(
        f"== forward+backward, logits (2, 1, {size}, {size}, {size}), {reps} interleaved reps, "
        f"torch threads {torch.get_num_threads()}, foreground {float(label.mean()):.2%}"
    )
    for name, values in times.items():
        print(f"{name:28s} median {statistics.median(values):7.3f} s   min {min(values):7.3f} s")
    print(f"{'MorphologyContinuityLoss':28s} first call {cold:.3f} s (cold thinning memo)")
    ratio = statistics.median(times["MorphologyContinuityLoss"]) / statistics.median(times["SoftclDiceLoss(iter_=3)"])
    print(f"ratio MorphologyContinuityLoss / SoftclDiceLoss (medians): {ratio:.3f}")
    return labels


def bench_discrimination() -> None:
    shape = (12, 32, 12)
    zz, yy, xx = np.indices(shape)
    label = ((zz - 5.5) ** 2 + (xx - 5.5) ** 2 <= 4) & (yy >= 2) & (yy < 30)
    gap = label.copy()
    gap[:, 16] = False
    n_wrong = int((label ^ gap).sum())
    shell = np.argwhere(ndi.binary_dilation(label) & ~label)
    border = label.copy()
    border[tuple(shell[np.linspace(0, len(shell) - 1, n_wrong).astype(int)].T)] = True
    as_t = lambda m: torch.from_numpy(m[None, None].astype(np.float32))  # noqa: E731
    print(f"== gap across the neurite vs {n_wrong} wrong voxels on a thickened border (probabilities, label = truth)")
    losses = {
        "DiceLoss": DiceLoss(),
        "SoftclDiceLoss(iter_=3)": SoftclDiceLoss(iter_=3),
        "MorphologyContinuityLoss": MorphologyContinuityLoss(sigmoid=False),
        "MorphologyContinuity linear": MorphologyContinuityLoss(sigmoid=False, penalty="linear"),
    }
    for name, loss in losses.items():
        g, b = float(loss(as_t(gap), as_t(label))), float(loss(as_t(border), as_t(label)))
        print(f"{name:28s} gap {g:8.4f}   border {b:8.4f}   gap - border {g - b:+8.4f}")


def bench_thinning(name: str, masks: list[np.ndarray]) -> None:
    t_ours, t_sk, bad_ours, bad_sk, comps = [], [], 0, 0, 0
    for mask in masks:
        t_sk.append(time_call(lambda: skeletonize(mask)))
        t_ours.append(time_call(lambda: thin_curves(mask)))
        bad_sk += uncovered_components(mask, skeletonize(mask))
        bad_ours += uncovered_components(mask, thin_curves(mask))
        comps += ndi.label(mask, structure=np.ones((3, 3, 3), dtype=bool))[1]
    print(f"== label thinning, {name}: {len(masks)} masks, {comps} connected components")
    print("   (uncovered: no centreline voxel, or a voxel farther than 2 x half-width + 3 from it)")
    print(f"thin_curves               median {statistics.median(t_ours):.3f} s   uncovered components {bad_ours}")
    print(f"skimage skeletonize       median {statistics.median(t_sk):.3f} s   uncovered components {bad_sk}")


def real_crops(size: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` random 60-88 x size x size crops (with > 100 foreground voxels) of each OP_k mask rasterised from its
    gold trace with the stack's own spacing."""
    from neurolink_monai.io import read_swc, read_tiff_stack
    from neurolink_monai.transforms import SWCToMask

    crops = []
    for k in (1, 2, 3):
        image, spacing = read_tiff_stack(REAL / f"OP_{k}.tif")
        mask = SWCToMask(image.shape, spacing=spacing)(read_swc(REAL / f"OP_{k}.swc"))[0] > 0
        ys, xs = np.nonzero(mask.any(axis=0))
        taken = 0
        while taken < n:
            y = int(rng.integers(max(ys.min() - size // 2, 0), min(ys.max(), mask.shape[1] - size)))
            x = int(rng.integers(max(xs.min() - size // 2, 0), min(xs.max(), mask.shape[2] - size)))
            crop = mask[:, y : y + size, x : x + size]
            if crop.sum() > 100:
                crops.append(np.ascontiguousarray(crop))
                taken += 1
    return crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    labels = bench_speed(args.size, args.reps, rng)
    bench_discrimination()
    bench_thinning(f"synthetic tubes {args.size}^3", labels + [random_tubes((args.size,) * 3, rng) for _ in range(6)])
    if (REAL / "OP_1.swc").is_file():
        bench_thinning(
            f"DIADEM OP_1..3 masks from the gold traces, Dx{args.size}x{args.size} crops",
            real_crops(args.size, 30, rng),
        )
    else:
        print(f"(real data not found at {REAL}: skipped)")


if __name__ == "__main__":
    main()
