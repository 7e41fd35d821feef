# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Command line: trace a probability map (TIFF) into an SWC file.

Example::

    python -m neurolink_monai.tracing prob.tif --output neuron.swc --direction dir.tif --distance dist.tif
    python -m neurolink_monai.tracing stack.tif --classical --output neuron.swc --preview neuron.png
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..data.preview import save_mip_png
from ..io import read_tiff_stack, swc_to_voxel, write_swc
from .classical import CLASSICAL_TRACE, classical_probability
from .linking import LinkParams
from .trace import TraceConfig, check_root, check_spacing, trace_with_config

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m neurolink_monai.tracing``."""
    d = TraceConfig()
    p = argparse.ArgumentParser(
        prog="python -m neurolink_monai.tracing",
        description=(
            "Trace a 3D probability map (or mask) into an SWC reconstruction: skeletonise, prune spurs, bridge "
            "gaps between endpoints that face each other (NeuroLink, Yan et al., MICCAI 2024), root one tree per "
            "neuron and write radii from the distance map. Lengths are in in-plane (x) voxels, with the z/x "
            "anisotropy of the spacing honoured."
        ),
    )
    p.add_argument(
        "prob",
        type=Path,
        help="(D, H, W) TIFF: probability in [0, 1] (float; uint8/uint16 scaled by their maximum) or a mask "
        "(0/1, 0/255); with --classical, the raw image stack",
    )
    p.add_argument("--output", "-o", type=Path, required=True, help="output .swc file (written atomically)")
    p.add_argument(
        "--preview",
        type=Path,
        help="also write this PNG: the input's maximum-intensity projection with the traced trees drawn on it, in "
        "the SWC's order (the first, main, tree blue; the second orange; the third green)",
    )
    p.add_argument(
        "--root", nargs=3, type=float, metavar=("X", "Y", "Z"), help="root point in SWC x y z voxel coordinates"
    )
    p.add_argument("--direction", type=Path, help="(3, D, H, W) TIFF direction map, components z, y, x")
    p.add_argument("--distance", type=Path, help="(D, H, W) TIFF distance map (EDT of the neurite, in x voxels)")
    p.add_argument("--threshold", type=float, default=d.threshold, help="foreground threshold (default %(default)s)")
    p.add_argument(
        "--spacing",
        nargs=3,
        type=float,
        metavar=("Z", "Y", "X"),
        help="voxel size z y x (default: read from PROB's ImageJ/OME metadata, else 1 1 1)",
    )
    p.add_argument(
        "--physical",
        action="store_true",
        help="write coordinates times the spacing (micrometres when the TIFF states them), radii times the x spacing",
    )
    p.add_argument(
        "--max-gap", type=float, default=d.bridge.max_gap, help="longest gap to bridge, voxels (%(default)s)"
    )
    p.add_argument(
        "--min-spur-length", type=float, default=d.min_spur_length, help="spur pruning length, voxels (%(default)s)"
    )
    p.add_argument(
        "--min-component-length",
        type=float,
        default=None,
        help=f"drop pieces shorter than this, voxels (default: {CLASSICAL_TRACE['min_component_length']:g} with "
        f"--classical, else {d.min_component_length:g})",
    )
    p.add_argument(
        "--min-facing-cos",
        type=float,
        default=d.bridge.min_facing_cos,
        help="cosine both endpoint directions must exceed to bridge (%(default)s)",
    )
    p.add_argument(
        "--no-side-bridges", action="store_true", help="only bridge end to end, never an end to a neurite's side"
    )
    p.add_argument("--single-tree", action="store_true", help="keep only the rooted (else the largest) tree")
    p.add_argument(
        "--soma-outside",
        action="store_true",
        help="the somata lie outside the stack (axon stacks): take no blob for a soma, root each tree where it enters "
        "the stack",
    )
    _add_linking_arguments(p, d.link)
    p.add_argument(
        "--classical",
        action="store_true",
        help="PROB is the raw image: trace it without a model (smoothing, the higher of Otsu and a noise threshold, "
        "small-component removal), the classical reference",
    )
    p.add_argument("--no-extend-tips", action="store_true", help="do not walk endpoints on to the neurite tips")
    p.add_argument(
        "--smooth-iterations",
        type=int,
        default=d.smooth_iterations,
        help="passes of smoothing along unbranched sections, off the voxel staircase; 0: none (%(default)s)",
    )
    p.add_argument("--version", action="version", version=f"neurolink_monai {__version__}")
    return p


def _add_linking_arguments(p: argparse.ArgumentParser, link: LinkParams) -> None:
    """The options of the main-tree linking (:class:`~neurolink_monai.tracing.LinkParams`), defaults from ``link``."""
    p.add_argument(
        "--link-cost",
        type=float,
        default=None,
        help="grow the main tree through weak stretches costing at most this, in voxels just below the threshold "
        "(a voxel of probability 0 counts 5); 0 disables (default: 30 with --classical, else 0)",
    )
    p.add_argument(
        "--max-trees",
        type=int,
        default=None,
        help="most trees written, the main tree first; 0 for no limit (default: 3 with --classical, else 0)",
    )
    p.add_argument(
        "--keep-length",
        type=float,
        default=link.keep_length,
        help="with --link-cost or --max-trees, pieces that do not join the main tree are kept only when at least "
        "this long, voxels (%(default)s)",
    )
    p.add_argument(
        "--long-link-factor",
        type=float,
        default=link.long_link_factor,
        help="with --link-cost, a piece at least --keep-length long joins across this many times the link cost "
        "(%(default)s)",
    )
    p.add_argument(
        "--dark-gap-ratio",
        type=float,
        default=link.dark_gap_ratio,
        help="with --link-cost and an image (--classical), no joining path crosses a gap the image shows below this "
        "fraction of the neurite beyond it (0 disables; %(default)s)",
    )
    p.add_argument(
        "--crossing-distance",
        type=float,
        default=link.crossing_distance,
        help="with --link-cost, no joining path crosses a gap between two neurites that both run on further than "
        "this from an end of theirs at more than --crossing-angle: one passing the other (0 disables; %(default)s)",
    )
    p.add_argument(
        "--crossing-angle",
        type=float,
        default=link.crossing_angle,
        help="degrees, see --crossing-distance (%(default)s)",
    )


def _or_default(args: argparse.Namespace, key: str, plain: Any) -> Any:
    """The option ``key`` as given, else the classical reference's value (:data:`CLASSICAL_TRACE`) with
    ``--classical``, else ``plain`` (the tracer's)."""
    value = getattr(args, key)
    if value is not None:
        return value
    return CLASSICAL_TRACE[key] if args.classical else plain


def _check_preview(preview: Path | None) -> str | None:
    """Why ``--preview`` cannot be written, or None (the inputs are TIFFs, so a PNG is never one of them)."""
    if preview is None:
        return None
    if preview.suffix.lower() != ".png":
        return f"--preview {preview}: must end with .png."
    folder = preview.parent if str(preview.parent) else Path(".")
    if not folder.is_dir():
        return f"--preview {preview}: the folder {folder} does not exist."
    return None


def _write_preview(args: argparse.Namespace, picture: Any, swc: Any, spacing: Sequence[float]) -> None:
    """``--preview``: the projection of ``picture`` (the input stack) with ``swc``'s trees, in voxel coordinates."""
    voxels = swc_to_voxel(swc, spacing) if args.physical else swc
    save_mip_png(args.preview, picture, swc=voxels)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 on success, 2 on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        parser.exit(2, f"{parser.prog}: error: {message}\n")
        return 2  # pragma: no cover

    inputs = [q for q in (args.prob, args.direction, args.distance) if q is not None]
    for q in inputs:
        if q.resolve() == args.output.resolve() or _same_file(q, args.output):
            return fail(f"--output {args.output} is the input file {q}; refusing to overwrite an input.")
    out_dir = args.output.parent if str(args.output.parent) else Path(".")
    if not out_dir.is_dir():
        return fail(f"--output {args.output}: the folder {out_dir} does not exist.")
    if args.output.is_dir():
        return fail(f"--output {args.output}: is a folder; give the path of the .swc file to write.")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        return fail(f"--output {args.output}: the folder {out_dir} is not writable.")
    for q in inputs:
        if q.is_dir():
            return fail(f"{q}: is a folder, not a TIFF file.")
    preview_error = _check_preview(args.preview)
    if preview_error:
        return fail(preview_error)
    try:
        config = TraceConfig.from_keywords(
            threshold=args.threshold,
            max_gap=args.max_gap,
            min_spur_length=args.min_spur_length,
            min_component_length=_or_default(args, "min_component_length", TraceConfig().min_component_length),
            min_facing_cos=args.min_facing_cos,
            bridge_to_side=not args.no_side_bridges,
            single_tree=args.single_tree,
            soma_in_view=not args.soma_outside,
            extend_tips=not args.no_extend_tips,
            smooth_iterations=args.smooth_iterations,
            link_cost=_or_default(args, "link_cost", 0.0),
            keep_length=args.keep_length,
            long_link_factor=args.long_link_factor,
            dark_gap_ratio=args.dark_gap_ratio,
            crossing_distance=args.crossing_distance,
            crossing_angle=args.crossing_angle,
            max_trees=_or_default(args, "max_trees", 0),
        )
        prob, file_spacing = read_tiff_stack(args.prob)
        spacing = check_spacing(args.spacing, "--spacing") if args.spacing is not None else file_spacing
        picture = prob
        image = prob if args.classical else None
        if args.classical:
            try:
                prob = classical_probability(prob, spacing)
            except ValueError as e:
                raise ValueError(f"{args.prob}: {e}") from e
        direction = None if args.direction is None else read_tiff_stack(args.direction)[0]
        distance = None if args.distance is None else read_tiff_stack(args.distance)[0]
        root = None
        if args.root is not None:
            shape = prob.shape[-3:]
            root = check_root(args.root, shape, f"--root for {args.prob} (shape (D, H, W) = {tuple(shape)})")
            root = root[::-1]  # back to (x, y, z)
        swc = trace_with_config(
            prob,
            direction,
            distance,
            root=root,
            spacing=spacing,
            physical_units=args.physical,
            config=config,
            names=(str(args.prob), str(args.direction), str(args.distance)),
            image=image,
        )
    except (ValueError, TypeError, FileNotFoundError) as e:
        return fail(str(e))
    except OSError as e:
        return fail(f"{e.filename or args.prob}: cannot read it ({e.strerror or e}).")
    units = "physical (voxel coordinate * spacing)" if args.physical else "voxels (0-based, x->W, y->H, z->D)"
    header = [
        f"traced by neurolink_monai {__version__} (python -m neurolink_monai.tracing) from {args.prob}",
        f"direction: {args.direction}, distance: {args.distance}, root: {args.root}",
        f"units: {units}; spacing (z, y, x): {tuple(spacing)}",
        "parameters: " + ", ".join(f"{k}={v}" for k, v in config.keywords().items()),
    ]
    try:
        write_swc(args.output, swc, header=header)
    except OSError as e:
        return fail(f"--output {args.output}: cannot write it ({e.strerror or e}).")
    if args.preview is not None:
        try:
            _write_preview(args, picture, swc, spacing)
        except OSError as e:
            return fail(f"--preview {args.preview}: cannot write it ({e.strerror or e}).")
    n_trees = int((swc[:, 6] == -1).sum()) if len(swc) else 0
    if len(swc) == 0:
        print(
            f"warning: nothing in {args.prob} reaches threshold {args.threshold}; wrote an empty SWC.", file=sys.stderr
        )
    print(f"wrote {args.output}: {len(swc)} nodes in {n_trees} tree(s)")
    if args.preview is not None:
        print(f"wrote {args.preview}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
