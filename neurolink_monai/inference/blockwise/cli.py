# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Command line: ``python -m neurolink_monai.inference.blockwise INPUT OUTPUT.zarr [options]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

EPILOG = """\
examples:
  # whole-brain stack in Zarr, local Dask cluster with 4 worker processes, bundle model
  python -m neurolink_monai.inference.blockwise brain.zarr brain_seg.zarr --workers 4
  # existing Dask cluster (input and output on storage the workers share)
  python -m neurolink_monai.inference.blockwise /data/brain.zarr /data/brain_seg.zarr --scheduler tcp://head:8786
  # another checkpoint, bigger blocks, direction and distance maps
  python -m neurolink_monai.inference.blockwise stack.tif out.zarr --model my_model.ts --chunks 128 512 512 \\
      --save-direction --save-distance

Rerunning an interrupted command resumes it: blocks already written are skipped.
"""


def _ints(values: Sequence[str], name: str) -> tuple[int, ...] | int:
    try:
        out = tuple(int(v) for v in values)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{name} must be integers, got {' '.join(values)}") from e
    if len(out) not in (1, 3):
        raise argparse.ArgumentTypeError(f"{name} takes 1 or 3 values (z y x), got {len(out)}: {' '.join(values)}")
    return out[0] if len(out) == 1 else out


def _floats(values: Sequence[str], name: str) -> tuple[float, ...] | float:
    try:
        out = tuple(float(v) for v in values)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{name} must be numbers, got {' '.join(values)}") from e
    if len(out) not in (1, 3):
        raise argparse.ArgumentTypeError(f"{name} takes 1 or 3 values (z y x), got {len(out)}: {' '.join(values)}")
    return out[0] if len(out) == 1 else out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m neurolink_monai.inference.blockwise",
        description="Out-of-core NeuroLink segmentation of a Zarr/TIFF volume on Dask, written as OME-Zarr "
        "(prob/0, mask/0 and optionally direction/0, distance/0). Matches MONAI's in-memory SlidingWindowInferer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="Zarr array, OME-Zarr image group (v2/v3) or TIFF stack, single channel (z, y, x)")
    p.add_argument("output", help="output Zarr group, e.g. result.zarr")
    g = p.add_argument_group("blocks and windows")
    g.add_argument("--chunks", nargs="+", metavar="N", help="block size z y x (or one value); also the storage chunks")
    g.add_argument(
        "--halo",
        nargs="+",
        metavar="N",
        help="overlap of neighbouring windows in voxels (z y x): the "
        "least margin each block reads around itself; alternative to --overlap",
    )
    g.add_argument("--roi-size", nargs="+", metavar="N", help="sliding window size z y x (default: the bundle's)")
    g.add_argument("--overlap", nargs="+", metavar="F", help="window overlap fraction(s) in [0, 1) (default: bundle's)")
    g.add_argument("--mode", choices=("constant", "gaussian"), help="window blending (default: the bundle's)")
    g.add_argument("--sigma-scale", nargs="+", metavar="F", help="gaussian blending sigma / window size")
    g.add_argument("--sw-batch-size", type=int, metavar="N", help="windows per forward pass")
    g.add_argument(
        "--context-margin",
        type=int,
        metavar="N",
        help="voxels of background level around an axis shorter than the window (default: the bundle's, 0)",
    )
    g.add_argument(
        "--skip-background",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="skip windows below the volume's noise floor, as the bundle does (default: the bundle's, on)",
    )
    g.add_argument(
        "--background-z", type=float, metavar="Z", help="z of the noise floor for skipping (default: the bundle's, 3)"
    )
    g = p.add_argument_group("model and preprocessing")
    g.add_argument(
        "--model",
        metavar="PATH",
        help="TorchScript file, or state dict with --config (default: " "bundle/models/model.pt)",
    )
    g.add_argument(
        "--config", metavar="PATH", help="bundle config with network_def (default: bundle/configs/" "inference.json)"
    )
    g.add_argument("--bundle-dir", metavar="DIR", help="bundle folder (default: bundle/ of this checkout)")
    g.add_argument("--lower", type=float, metavar="P", help="lower intensity percentile (default: bundle's or 0.5)")
    g.add_argument("--upper", type=float, metavar="P", help="upper intensity percentile (default: bundle's or 99.95)")
    g.add_argument(
        "--max-samples",
        type=int,
        default=None,
        metavar="N",
        help="percentiles are exact up to N voxels, else from a strided subsample of N (default 2**24)",
    )
    g.add_argument("--threshold", type=float, metavar="T", help="mask threshold on the probability (default 0.5)")
    g.add_argument("--spacing", nargs=3, type=float, metavar=("Z", "Y", "X"), help="voxel size, overrides metadata")
    g.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    g = p.add_argument_group("output")
    g.add_argument("--save-direction", action="store_true", help="also write the direction map direction/0")
    g.add_argument("--save-distance", action="store_true", help="also write the distance map distance/0")
    g.add_argument("--prob-dtype", choices=("float16", "uint8"), default="float16", help="probability storage")
    g.add_argument("--maps-dtype", choices=("float16", "float32"), default="float16", help="direction/distance dtype")
    g.add_argument("--zarr-format", type=int, choices=(2, 3), default=3, help="3: OME-NGFF 0.5, 2: OME-NGFF 0.4")
    g.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an output made from another input or with "
        "other settings (or not ours); the old one is removed only when the new one is complete",
    )
    g = p.add_argument_group("scheduling")
    g.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="existing Dask scheduler, e.g. tcp://host:8786; "
        "'synchronous' runs in this process without Dask (default: a new LocalCluster)",
    )
    g.add_argument("--workers", type=int, default=1, metavar="N", help="LocalCluster worker processes (default 1)")
    g.add_argument(
        "--threads-per-worker",
        type=int,
        default=1,
        metavar="N",
        help="blocks processed at once per " "worker (default 1); memory grows with workers x threads x block size",
    )
    g.add_argument(
        "--torch-threads",
        type=int,
        metavar="N",
        help="torch threads per worker (default: cores / " "(workers x threads) on a LocalCluster)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("-q", "--quiet", action="store_true", help="no status messages")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        chunks = _ints(args.chunks, "--chunks") if args.chunks else None
        halo = _ints(args.halo, "--halo") if args.halo else None
        roi = _ints(args.roi_size, "--roi-size") if args.roi_size else None
        overlap = _floats(args.overlap, "--overlap") if args.overlap else None
        sigma = _floats(args.sigma_scale, "--sigma-scale") if args.sigma_scale else None
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))

    from ...transforms.intensity import DEFAULT_MAX_SAMPLES
    from ...utils import keep_freed_memory
    from .runner import BlockwiseRunError, run_blockwise
    from .sources import BlockwiseInputError
    from .store import BlockwiseOutputError

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    keep_freed_memory()  # this process only runs the network: large tensors reuse memory (see the function)
    try:
        result = run_blockwise(
            args.input,
            args.output,
            model=args.model,
            config=args.config,
            bundle_dir=args.bundle_dir,
            chunks=chunks,
            roi_size=roi,
            overlap=overlap,
            halo=halo,
            mode=args.mode,
            sigma_scale=sigma,
            sw_batch_size=args.sw_batch_size,
            context_margin=args.context_margin,
            skip_background=args.skip_background,
            background_z=args.background_z,
            lower=args.lower,
            upper=args.upper,
            max_samples=args.max_samples if args.max_samples is not None else DEFAULT_MAX_SAMPLES,
            threshold=args.threshold,
            prob_dtype=args.prob_dtype,
            maps_dtype=args.maps_dtype,
            save_direction=args.save_direction,
            save_distance=args.save_distance,
            spacing=args.spacing,
            zarr_format=args.zarr_format,
            overwrite=args.overwrite,
            scheduler=args.scheduler,
            workers=args.workers,
            threads_per_worker=args.threads_per_worker,
            torch_threads=args.torch_threads,
            device=args.device,
            progress=not args.no_progress,
            log=log,
        )
    except (BlockwiseInputError, BlockwiseOutputError, FileNotFoundError, ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (BlockwiseRunError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume.", file=sys.stderr)
        return 130
    log(
        f"done: {result.status}; {result.blocks_computed} blocks computed, {result.blocks_skipped} skipped "
        f"of {result.blocks_total}; {result.voxels_per_second:.4g} voxels/s"
    )
    return 0
