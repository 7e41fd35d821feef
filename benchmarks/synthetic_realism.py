# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Real confocal stacks vs synthetic ones: simple image statistics, side-by-side MIPs, the weak-regime model, timings.

Statistics, on intensities normalised as the bundle does (``MicroscopyNormalize``: 0.5th percentile -> 0, 99.95th
-> 1, so they are what the network sees), with the ground-truth SWC:

- ``bg p50 / p99 / p99.9``: percentiles of the background (voxels farther than 3 voxels from the label);
  ``bg zero``: fraction of background voxels at the stack's minimum;
- ``speckle px``: grain of the background, the in-plane lag (x pixels) where its autocorrelation falls to 1/2;
- ``radius px``: apparent neurite radius in x pixels: the in-plane distance transform, at its skeleton, of the MIP
  thresholded at 0.5 inside the label's footprint;
- ``neurite``: median at the SWC nodes (brightest voxel within 1 z and 2 xy voxels, the traces are 1-2 px off);
  ``contrast``: (neurite - bg p50) / bg std; ``saturated``: fraction of label voxels at the stack's maximum.

``--weak`` prints the SNR at the gold nodes of the real stacks after ``degrade_to_weak`` (seeds 0 and 1);
``--timing`` times the on-the-fly augmentations on a (1, 32, 64, 64) float32 patch; ``--previews DIR`` writes MIP
PNGs, real crops and synthetic samples side by side.

Usage: python benchmarks/synthetic_realism.py [--real-dir ../shared/real/diadem_op_dev] [--samples 6]
       [--shape 64 256 256] [--seed 0] [--previews DIR] [--weak] [--timing]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from neurolink_monai.data import mip_preview
from neurolink_monai.data.synthetic import SyntheticConfig, generate_sample
from neurolink_monai.io import read_swc, read_tiff_stack
from neurolink_monai.io.atomic import atomic_write_bytes
from neurolink_monai.transforms import (
    RandAttenuationFieldd,
    RandGammaContrastd,
    RandPoissonGaussianNoised,
    SWCToMask,
    degrade_to_weak,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REAL = Path(os.environ.get("NEUROLINK_SHARED", REPO_ROOT.parent / "shared")) / "real" / "diadem_op_dev"
DIADEM_SPACING = (0.998835, 0.3296485, 0.3296485)
COLUMNS = ("bg p50", "bg p99", "bg p99.9", "bg zero", "speckle px", "radius px", "neurite", "contrast", "saturated")


def _normalise(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [0.5, 99.95])
    return np.clip((img.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0.0, None)


def _speckle_px(bg_slices: np.ndarray, bg_mask: np.ndarray) -> float:
    """In-plane lag (pixels) at which the background autocorrelation drops to 1/2 (linear interpolation)."""
    acs = []
    for sl, m in zip(bg_slices, bg_mask):
        if m.mean() < 0.5:
            continue
        x = np.where(m, sl - sl[m].mean(), 0.0)
        if not np.any(x):
            continue
        f = np.fft.rfft2(x)
        ac = np.fft.irfft2(np.abs(f) ** 2, s=x.shape)
        acs.append(ac[0, :8] / ac[0, 0])
    if not acs:
        return float("nan")
    ac = np.mean(acs, axis=0)
    below = np.flatnonzero(ac < 0.5)
    if not below.size:
        return float("nan")
    k = below[0]
    return float(k - 1 + (ac[k - 1] - 0.5) / (ac[k - 1] - ac[k]))


def _radius_px(norm: np.ndarray, label: np.ndarray) -> float:
    from skimage.morphology import skeletonize

    foot = ndi.binary_dilation(label.any(axis=0), iterations=2)
    mask = (norm.max(axis=0) > 0.5) & foot
    if not mask.any():
        return float("nan")
    skel = skeletonize(mask)
    return float(np.median(ndi.distance_transform_edt(mask)[skel]))


def stack_stats(img: np.ndarray, swc: np.ndarray, spacing) -> dict[str, float]:
    """The statistics of the module docstring for one stack and its SWC."""
    label = SWCToMask(img.shape, spacing)(swc)[0] > 0
    norm = _normalise(img)
    near = ndi.binary_dilation(label, iterations=3)
    bg = norm[~near]
    zyx = np.clip(np.round(swc[:, [4, 3, 2]]).astype(int), 0, np.asarray(img.shape) - 1)
    neurite = float(np.median(ndi.maximum_filter(norm, size=(3, 5, 5))[tuple(zyx.T)]))
    p50, p99, p999 = np.percentile(bg, [50, 99, 99.9])
    return {
        "bg p50": p50,
        "bg p99": p99,
        "bg p99.9": p999,
        "bg zero": float(np.mean(img[~near] == img.min())),
        "speckle px": _speckle_px(norm, ~near),
        "radius px": _radius_px(norm, label),
        "neurite": neurite,
        "contrast": (neurite - p50) / max(float(bg.std()), 1e-6),
        "saturated": float(np.mean(img[label] == img.max())),
    }


def _row(name: str, s: dict[str, float]) -> str:
    return f"{name:<22}" + "".join(f"{s[c]:>11.3f}" for c in COLUMNS)


def _real_stacks(real_dir: Path):
    for tif in sorted(real_dir.glob("OP_*.tif")):
        img = np.asarray(read_tiff_stack(tif)[0])
        yield tif.stem, img, read_swc(tif.with_suffix(".swc"))


def _crop_around(img: np.ndarray, swc: np.ndarray, size: int) -> np.ndarray:
    cy, cx = (int(np.median(swc[:, k])) for k in (3, 2))
    y0 = int(np.clip(cy - size // 2, 0, img.shape[1] - size))
    x0 = int(np.clip(cx - size // 2, 0, img.shape[2] - size))
    return img[:, y0 : y0 + size, x0 : x0 + size]


def _save_png(path: Path, rgb: np.ndarray) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def compare(args) -> None:
    print(f"statistics on normalised intensities (0.5th pct -> 0, 99.95th -> 1); see the module docstring")
    print(f"{'stack':<22}" + "".join(f"{c:>11}" for c in COLUMNS))
    real = list(_real_stacks(args.real_dir)) if (args.real_dir / "OP_1.tif").is_file() else []
    if not real:
        print(f"(no real stacks in {args.real_dir}; synthetic rows only)")
    rows = {"real": [], "confocal": [], "default": []}
    tiles_real, tiles_syn = [], []
    for name, img, swc in real:
        s = stack_stats(img, swc, DIADEM_SPACING)
        rows["real"].append(s)
        print(_row(name, s))
        tiles_real.append(mip_preview(_crop_around(img, swc, args.shape[1]), percentiles=(0, 100)))
    settings = {
        "confocal": SyntheticConfig(realism="confocal"),
        "default": SyntheticConfig(),
    }
    for key, cfg in settings.items():
        for i in range(args.samples):
            sample = generate_sample(args.shape, np.random.SeedSequence(args.seed, spawn_key=(i,)), cfg)
            s = stack_stats(sample["image"], sample["swc"], sample["spacing"])
            rows[key].append(s)
            print(_row(f"{key} {i}", s))
            if key == "confocal" and i < 4:
                tiles_syn.append(mip_preview(sample["image"], percentiles=(0, 100)))
    print("median over stacks")
    for key, stats in rows.items():
        if stats:
            print(_row(f"{key} (n={len(stats)})", {c: float(np.nanmedian([s[c] for s in stats])) for c in COLUMNS}))
    if args.previews is not None:
        args.previews.mkdir(parents=True, exist_ok=True)
        size = args.shape[1:]
        pad = lambda t: np.pad(t, ((0, size[0] - t.shape[0]), (0, size[1] - t.shape[1]), (0, 0)))  # noqa: E731
        if tiles_real:
            _save_png(args.previews / "real_mips.png", np.concatenate([pad(t) for t in tiles_real], axis=1))
        _save_png(args.previews / "confocal_mips.png", np.concatenate([pad(t) for t in tiles_syn], axis=1))
        n = max(len(tiles_real), len(tiles_syn))
        blank = np.zeros((*size, 3), np.uint8)
        top = [pad(t) for t in tiles_real] + [blank] * (n - len(tiles_real))
        bottom = [pad(t) for t in tiles_syn][:n] + [blank] * (n - len(tiles_syn[:n]))
        grid = np.concatenate([np.concatenate(top, axis=1), np.concatenate(bottom, axis=1)], axis=0)
        _save_png(args.previews / "real_vs_confocal.png", grid)
        print(f"MIPs (top: real crops, bottom: synthetic confocal) in {args.previews}")


def weak(args) -> None:
    print("degrade_to_weak (defaults) on the real stacks: SNR at the gold nodes, seeds 0 and 1")
    print(f"{'stack':<8}{'seed':>5}{'median':>8}{'q25':>7}{'q75':>7}{'<1':>7}{'<2':>7}{'s/stack':>9}")
    for name, img, swc in _real_stacks(args.real_dir):
        zyx = np.clip(np.round(swc[:, [4, 3, 2]]).astype(int), 0, np.asarray(img.shape) - 1)
        for seed in (0, 1):
            t0 = time.perf_counter()
            m = degrade_to_weak(img, seed=seed, return_model=True)
            dt = time.perf_counter() - t0
            lam = ndi.maximum_filter(m["noiseless"], size=(3, 5, 5))[tuple(zyx.T)]
            snr = (lam - m["background"]) / np.sqrt(m["gain"] * np.maximum(lam, 0) + m["read_std"] ** 2)
            q25, q50, q75 = np.percentile(snr, [25, 50, 75])
            print(
                f"{name:<8}{seed:>5}{q50:>8.2f}{q25:>7.2f}{q75:>7.2f}{np.mean(snr < 1):>7.1%}{np.mean(snr < 2):>7.1%}"
                f"{dt:>9.2f}"
            )


def timing(args) -> None:
    torch.set_num_threads(2)
    img = torch.full((1, 32, 64, 64), 0.1)
    img[0, 15:17, 30:33, :] = 1.0
    img += 0.01 * torch.rand(img.shape, generator=torch.Generator().manual_seed(0))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"augmentations on a (1, 32, 64, 64) float32 tensor, median of 50 calls (load average {load:.1f})")
    for t in (
        RandGammaContrastd("image", prob=1.0),
        RandAttenuationFieldd("image", prob=1.0),
        RandPoissonGaussianNoised("image", prob=1.0),
    ):
        t.set_random_state(0)
        t({"image": img})
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            t({"image": img})
            times.append(time.perf_counter() - t0)
        print(f"  {type(t).__name__:<28}{np.median(times) * 1e3:>7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-dir", type=Path, default=DEFAULT_REAL)
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 256, 256], metavar=("D", "H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--previews", type=Path, help="write MIP PNGs (real crops vs synthetic) into this folder")
    parser.add_argument("--weak", action="store_true", help="only the degrade_to_weak SNR table")
    parser.add_argument("--timing", action="store_true", help="only the augmentation timings")
    args = parser.parse_args()
    args.shape = tuple(args.shape)
    if args.weak or args.timing:
        if args.weak:
            if not (args.real_dir / "OP_1.tif").is_file():
                parser.exit(2, f"--weak needs the real stacks: no OP_1.tif in {args.real_dir} (--real-dir)\n")
            weak(args)
        if args.timing:
            timing(args)
        return
    compare(args)


if __name__ == "__main__":
    main()
