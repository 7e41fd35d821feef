# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""One real stack of the real-data benchmark as a picture: the gold trace, the model's trees and the classical trees
drawn on the stack's maximum-intensity projection, side by side.

The model's trees are traced again from the maps that ``benchmarks/real_data.py`` stored for the stack
(``--work-dir``, ``--method``; traced as that benchmark traces them: ``trace_soma_in_view`` false unless
``--soma-in-view``), the classical ones with :func:`neurolink_monai.tracing.trace_classical`. :data:`~neurolink_monai.data.TREE_COLOURS`
in file order: the first tree (the one the DIADEM metric reads) blue, the second orange, the third green; the gold in
magenta. Usage::

    python benchmarks/real_data_figure.py --stack OP_2 --condition bright --output docs/images/real_op2_bright.png
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data  # noqa: E402

from neurolink_monai.bundle_utils import output_paths  # noqa: E402
from neurolink_monai.data import draw_swc, mip_preview  # noqa: E402
from neurolink_monai.io import atomic_write_bytes, read_swc, read_tiff_stack  # noqa: E402
from neurolink_monai.tracing import trace_classical  # noqa: E402

GOLD_COLOR = ((255, 0, 255),)


def model_trees(args: argparse.Namespace, image_path: Path) -> np.ndarray:
    """The model's SWC of the stack, traced again from the benchmark's stored maps."""
    out_dir = args.work_dir / "pred" / args.method / args.condition
    if not output_paths(out_dir, image_path)["prob"].is_file():
        raise SystemExit(f"no stored maps of {image_path.name} in {out_dir}: run benchmarks/real_data.py first")
    overrides = {} if args.soma_in_view else dict(real_data.AXON_STACKS)
    preprocessing, tracer = real_data.bundle_tracer(overrides)
    return np.asarray(tracer(real_data.stored_maps(preprocessing, image_path, out_dir))["swc"])


def panel(mip: np.ndarray, swc: np.ndarray, title: str, colors: Sequence[Sequence[int]] | None = None) -> Image.Image:
    picture = Image.fromarray(draw_swc(mip, swc, **({} if colors is None else {"colors": colors})))
    ImageDraw.Draw(picture).text((6, 6), title, fill=(255, 255, 255))
    return picture


def trees(swc: np.ndarray) -> str:
    count = int(np.count_nonzero(swc[:, 6] == -1))
    return f"{count} tree{'s' if count != 1 else ''}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stack", default="OP_2", choices=real_data.STACKS)
    p.add_argument("--condition", default="bright", choices=real_data.CONDITIONS)
    p.add_argument("--method", default="loso", choices=[m for m in real_data.METHODS if m != "classical"])
    p.add_argument("--data", type=Path, default=real_data.DEFAULT_DATA)
    p.add_argument("--work-dir", type=Path, default=real_data.DEFAULT_WORK)
    p.add_argument("--soma-in-view", action="store_true")
    p.add_argument("--output", type=Path, required=True, help="PNG to write")
    args = p.parse_args(argv)
    if args.output.suffix.lower() != ".png":
        p.error(f"--output must end with .png, got {str(args.output)!r}")
    image_path = real_data.stack_path(args.data, args.work_dir, args.stack, args.condition)
    image, spacing = read_tiff_stack(image_path)
    mip = mip_preview(image)
    gold = read_swc(args.data / f"{args.stack}.swc")
    model = model_trees(args, image_path)
    classical = trace_classical(image, spacing, soma_in_view=args.soma_in_view)
    name = f"{args.stack} {args.condition}"
    panels = [
        panel(mip, gold, f"{name}: gold (one neuron)", GOLD_COLOR),
        panel(mip, model, f"{args.method} model: {trees(model)}"),
        panel(mip, classical, f"classical: {trees(classical)}"),
    ]
    figure = Image.new("RGB", (sum(q.width for q in panels), panels[0].height))
    for i, q in enumerate(panels):
        figure.paste(q, (i * q.width, 0))
    buffer = io.BytesIO()
    figure.save(buffer, format="PNG", optimize=True)
    atomic_write_bytes(args.output, buffer.getvalue())
    print(f"wrote {args.output}: {name}, {args.method} {trees(model)}, classical {trees(classical)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
