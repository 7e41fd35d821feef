# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Distribution of the local SNR along the centrelines of synthetic samples, for the default and other settings.

SNR(p) = (lam(p) - B(p)) / sqrt(lam(p) + read_noise^2) at centreline points p every half voxel, weighted by length:
lam is the noiseless expected photon count, B the local background (the noiseless image without the labelled
neurites: autofluorescence, blobs, unlabelled fibres), the denominator the Poisson-Gaussian noise std at that level.
The default run measures the first samples of the bundle's default dataset (seed 0, 64 x 128 x 128). For the
confocal realism preset the SNR is in photons, before the camera's black level, saturation and 8-bit quantisation.

Usage: python benchmarks/synthetic_snr.py [--samples 10] [--shape 64 128 128] [--seed 0] [--previews DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neurolink_monai.data import save_mip_png
from neurolink_monai.data.synthetic import SyntheticConfig, centreline_snr, generate_sample, snr_summary

SETTINGS = {
    "default (medium)": SyntheticConfig(),
    "no weak stretches": SyntheticConfig(weak_fraction=0.0),
    "easy preset": SyntheticConfig.preset("easy"),
    "hard preset": SyntheticConfig.preset("hard"),
    "confocal realism": SyntheticConfig(realism="confocal"),
}


def measure(cfg: SyntheticConfig, shape, seed: int, samples: int, previews: Path | None = None) -> dict[str, float]:
    snrs, lengths, weak = [], [], []
    for i in range(samples):
        sample = generate_sample(shape, np.random.SeedSequence(seed, spawn_key=(i,)), cfg, return_components=True)
        # with realism each sample has its own optics (spacing, PSF, signal): score with the sample's config
        snr, length = centreline_snr(sample["components"], sample["swc"], sample["config"])
        snrs.append(snr)
        lengths.append(length)
        if previews is not None:
            save_mip_png(previews / f"synth_{i:03d}.png", sample["image"])
            save_mip_png(previews / f"synth_{i:03d}_label.png", sample["image"], sample["label"])
    return snr_summary(np.concatenate(snrs), np.concatenate(lengths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128], metavar=("D", "H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--previews", type=Path, help="write MIP PNGs of the default samples into this folder")
    args = parser.parse_args()
    if args.previews is not None:
        args.previews.mkdir(parents=True, exist_ok=True)
    shape = tuple(args.shape)
    print(f"local centreline SNR, {args.samples} samples of {shape}, seed {args.seed} (length-weighted)")
    header = f"{'setting':<20}{'length':>8}" + "".join(f"{k:>7}" for k in ("q5", "q10", "q25", "q50", "q75", "q90"))
    header += "".join(f"{'<' + t:>7}" for t in ("1", "2", "3", "5"))
    print(header)
    for name, cfg in SETTINGS.items():
        prev = args.previews if name.startswith("default") else None
        s = measure(cfg, shape, args.seed, args.samples, prev)
        row = f"{name:<20}{s['length']:>8.0f}" + "".join(
            f"{s[k]:>7.2f}" for k in ("q5", "q10", "q25", "q50", "q75", "q90")
        )
        row += "".join(f"{s[f'frac_below_{t}']:>7.1%}" for t in ("1", "2", "3", "5"))
        print(row)
    print("columns q*: SNR quantiles; <t: fraction of centreline length with SNR < t")


if __name__ == "__main__":
    main()
