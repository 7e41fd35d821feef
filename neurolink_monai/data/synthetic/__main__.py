# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Command line: ``python -m neurolink_monai.data.synthetic --output-dir DIR --num-samples N --shape D H W --seed S``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ...utils import as_positive_int
from .config import DIFFICULTY_PRESETS, SyntheticConfig
from .dataset import DEFAULT_NUM_SAMPLES, DEFAULT_SEED, DEFAULT_SHAPE, DEFAULT_SPLITS, generate_dataset, split_counts
from .realism import REALISM_PRESETS
from .swc_source import list_swc_files

__all__ = ["build_parser", "main"]

# CLI option -> SyntheticConfig knob, for the difficulty options.
_KNOBS = {
    "weak_fraction": "weak_fraction",
    "weak_depth": "weak_depth",
    "signal": "signal",
    "background": "background",
    "read_noise": "read_noise",
    "psf_sigma": "psf_sigma",
    "spacing": "spacing",
    "blobs": "num_blobs",
    "crossing_fibres": "num_crossing_fibres",
    "tortuosity": "tortuosity",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m neurolink_monai.data.synthetic",
        description="Generate synthetic weak-signal neuron stacks (uint16 TIFF), ground-truth SWC and label masks "
        "with an MSD-style dataset.json. The same settings give the same bytes.",
    )
    p.add_argument("--output-dir", required=True, type=Path, help="destination folder (created if needed)")
    p.add_argument(
        "--num-samples", type=int, default=DEFAULT_NUM_SAMPLES, help="number of samples (default %(default)s)"
    )
    p.add_argument(
        "--shape", type=int, nargs=3, default=list(DEFAULT_SHAPE), metavar=("D", "H", "W"), help="volume shape"
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    p.add_argument(
        "--splits",
        type=float,
        nargs=3,
        default=list(DEFAULT_SPLITS),
        metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of training, validation and test samples (default %(default)s)",
    )
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder this tool did not create")
    p.add_argument("--previews", action="store_true", help="also write MIP previews (PNG) to DIR/previews/")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    d = p.add_argument_group("difficulty (defaults: the medium preset)")
    d.add_argument("--difficulty", choices=sorted(DIFFICULTY_PRESETS), default="medium", help="preset of the knobs")
    d.add_argument("--config", type=Path, help="JSON file of SyntheticConfig knobs (applied after the preset)")
    d.add_argument("--weak-fraction", type=float, help="fraction of neurite length in weak stretches [0, 1]")
    d.add_argument("--weak-depth", type=float, help="fade depth of weak stretches [0, 1] (1 = to the background)")
    d.add_argument("--signal", type=float, help="peak photons of a radius-1 neurite")
    d.add_argument("--background", type=float, help="mean background photons")
    d.add_argument("--read-noise", type=float, help="camera read noise (counts, std)")
    d.add_argument("--psf-sigma", type=float, nargs=3, metavar=("Z", "Y", "X"), help="PSF sigma in voxels")
    d.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"), help="voxel size (e.g. um)")
    d.add_argument("--blobs", type=float, help="mean number of out-of-focus blobs")
    d.add_argument("--crossing-fibres", type=float, help="mean number of crossing fibres")
    d.add_argument("--unlabelled-fibres", action="store_true", help="keep crossing fibres out of the ground truth")
    d.add_argument("--tortuosity", type=float, help="heading wobble of neurites (radians)")
    r = p.add_argument_group("realism and real morphologies (default: off, the bundle's dataset)")
    r.add_argument(
        "--realism",
        choices=["none", *sorted(REALISM_PRESETS)],
        help="add confocal artefacts: puncta, speckle, beads, cell bodies, haze, autofluorescence, uneven "
        "illumination, depth attenuation, random PSF/anisotropy/signal, saturation, uint8 output",
    )
    r.add_argument(
        "--swc-dir", type=Path, help="render SWC traces from this folder (voxel units) instead of random trees"
    )
    r.add_argument(
        "--swc-spacing", type=float, nargs=3, metavar=("Z", "Y", "X"), help="voxel size of the --swc-dir traces"
    )
    return p


def _config(args: argparse.Namespace) -> SyntheticConfig:
    knobs: dict = {}
    if args.config is not None:
        try:
            loaded = json.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read the --config file {args.config}: {e}") from None
        if not isinstance(loaded, dict):
            raise ValueError(
                f"--config file {args.config} must hold a JSON object of knobs, got {type(loaded).__name__}."
            )
        knobs.update(SyntheticConfig.from_dict(loaded).to_dict() if loaded else {})
        knobs = {k: v for k, v in knobs.items() if k in loaded}
    for opt, knob in _KNOBS.items():
        value = getattr(args, opt)
        if value is not None:
            knobs[knob] = tuple(value) if isinstance(value, list) else value
    if args.unlabelled_fibres:
        knobs["label_crossing_fibres"] = False
    if args.realism is not None:
        knobs["realism"] = args.realism
    if args.swc_dir is not None:
        try:
            list_swc_files(args.swc_dir)
        except ValueError as e:
            raise ValueError(f"--swc-dir: {e}") from None
        knobs["swc_dir"] = str(args.swc_dir.expanduser().absolute())
    if args.swc_spacing is not None:
        knobs["swc_spacing"] = tuple(args.swc_spacing)
    knobs = {k: tuple(v) if isinstance(v, list) and k != "realism" else v for k, v in knobs.items()}
    return SyntheticConfig.preset(args.difficulty, **knobs)


def _check_output_dir(folder: Path, overwrite: bool) -> None:
    """Refuse to replace an existing dataset (or write into any non-empty folder) without ``--overwrite``."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"--output-dir {folder}: is a file, not a folder.")
    if overwrite or not folder.is_dir() or not any(folder.iterdir()):
        return
    what = "a dataset (dataset.json)" if (folder / "dataset.json").exists() else "files"
    raise FileExistsError(
        f"--output-dir {folder}: already holds {what}; pass --overwrite to replace it, or choose a new folder."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = _config(args)
        as_positive_int(args.num_samples, "--num-samples")
        _check_output_dir(args.output_dir, args.overwrite)
        path = generate_dataset(
            args.output_dir,
            num_samples=args.num_samples,
            shape=args.shape,
            seed=args.seed,
            config=config,
            overwrite=args.overwrite,
            splits=args.splits,
            progress=not args.no_progress,
            previews=args.previews,
        )
    except (ValueError, TypeError, FileExistsError, OSError) as e:
        parser.exit(2, f"{parser.prog}: error: {e}\n")
    n_tr, n_va, n_te = split_counts(args.num_samples, args.splits)
    print(f"wrote {args.num_samples} samples (training {n_tr}, validation {n_va}, test {n_te}): {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
