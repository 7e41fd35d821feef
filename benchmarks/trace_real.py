# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Tracing scores on the real DIADEM OP stacks (OP_1..3 with their manual gold SWCs).

Rows printed per stack:

* ``floor``: trace the mask rasterised from the gold SWC (SWCToMask on the stack's grid and spacing); what the
  tracer alone loses, i.e. the best the whole pipeline can score with these metrics;
* ``floor+maps``: the same mask with the direction and distance targets made from the gold SWC (what a perfect
  NeuroLink network would hand the tracer);
* ``pipeline``: the whole pipeline from the image, when predictions are supplied, either as files
  (``--prob-dir``: the bundle's inference output folder, holding ``OP_k_prob.tif`` and optionally ``OP_k_dir.tif`` /
  ``OP_k_dist.tif``) or,
  from Python, as a callable ``predict(image, spacing) -> {"prob": ..., "direction": ..., "distance": ...}``
  passed to :func:`score_stacks`.

Metrics, all in voxels of the stack (gold SWCs are in voxels): Vaa3D ESA / DSA / PDS (threshold 2 voxels), node
precision / recall / F1 at ``--tolerance`` voxels (after resampling both trees at 1 voxel), the number of trees,
and the recall of the first tree alone (the DIADEM metric reads only the first tree).

Usage: python benchmarks/trace_real.py [--data ../shared/real/diadem_op_dev] [--prob-dir DIR] [--tolerance 4]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from neurolink_monai.bundle_utils import output_paths
from neurolink_monai.io import first_tree, read_swc, read_tiff_stack
from neurolink_monai.metrics import node_prf, reconstruction_scores
from neurolink_monai.tracing import TraceConfig, trace_swc
from neurolink_monai.transforms import SWCToMask, direction_map_from_swc, mask_distance_transform

__all__ = ["score_trace", "score_stacks", "predictions_from_folder"]

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "real" / "diadem_op_dev"
Predictor = Callable[[np.ndarray, tuple], dict[str, Any]]


def score_trace(swc: np.ndarray, gold: np.ndarray, tolerance: float = 4.0) -> dict[str, float]:
    """:func:`reconstruction_scores` of one trace, plus the node recall of its first tree alone (``R_tree1``)."""
    scores = reconstruction_scores(swc, gold, tolerance=tolerance)
    first = first_tree(swc)
    scores["R_tree1"] = node_prf(first, gold, tolerance=tolerance)["recall"] if len(first) else 0.0
    return scores


def predictions_from_folder(folder: str | Path) -> Predictor:
    """A predictor reading the bundle's ``OP_k_prob.tif`` (and ``OP_k_dir.tif``, ``OP_k_dist.tif`` when present)."""
    folder = Path(folder)

    def predict(image: np.ndarray, spacing: tuple, name: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        paths = output_paths(folder, f"{name}.tif")
        for key in ("prob", "direction", "distance"):
            if paths[key].is_file():
                out[key] = read_tiff_stack(paths[key])[0]
        if "prob" not in out:
            raise FileNotFoundError(f"no {name}_prob.tif in {folder}")
        return out

    return predict


def score_stacks(
    data_dir: str | Path = DEFAULT_DATA,
    predict: Predictor | None = None,
    tolerance: float = 4.0,
    stacks: Iterable[int] = (1, 2, 3),
    threshold: float = 0.5,
    min_length: float = TraceConfig.min_component_length,
) -> list[dict[str, Any]]:
    """Score the floor (and the pipeline, given ``predict``) on each OP stack; returns one dict per row."""
    data_dir = Path(data_dir)
    rows = []
    for k in stacks:
        name = f"OP_{k}"
        image, spacing = read_tiff_stack(data_dir / f"{name}.tif")
        gold = read_swc(data_dir / f"{name}.swc")
        mask = SWCToMask(image.shape, spacing)(gold)[0].astype(bool)
        inputs = {
            "floor": {"prob": mask},
            "floor+maps": {
                "prob": mask,
                "direction": direction_map_from_swc(gold, image.shape, spacing),
                "distance": mask_distance_transform(mask, spacing),
            },
        }
        if predict is not None:
            try:
                inputs["pipeline"] = predict(image, spacing, name)  # type: ignore[call-arg]
            except TypeError:
                inputs["pipeline"] = predict(image, spacing)
        for label, maps in inputs.items():
            start = time.perf_counter()
            swc = trace_swc(
                maps["prob"],
                direction=maps.get("direction"),
                distance=maps.get("distance"),
                threshold=threshold,
                spacing=spacing,
                min_component_length=min_length,
            )
            seconds = time.perf_counter() - start
            rows.append({"stack": name, "input": label, "seconds": seconds, **score_trace(swc, gold, tolerance)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument(
        "--prob-dir", type=Path, default=None, help="bundle inference output: OP_k_prob.tif (+ _dir, _dist)"
    )
    ap.add_argument("--tolerance", type=float, default=4.0)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--min-length", type=float, default=TraceConfig.min_component_length,
                    help="tracing drops pieces shorter than this, voxels")  # fmt: skip
    args = ap.parse_args()
    predict = predictions_from_folder(args.prob_dir) if args.prob_dir is not None else None
    rows = score_stacks(args.data, predict, args.tolerance, threshold=args.threshold, min_length=args.min_length)
    print(f"DIADEM OP stacks in {args.data}; node P/R/F1 at {args.tolerance:g} voxels, ESA/DSA/PDS at 2 voxels")
    cols = {"ESA": "ESA", "DSA": "DSA", "PDS": "PDS", "node_precision": "P", "node_recall": "R", "node_f1": "F1",
            "trees": "trees", "R_tree1": "R_tree1", "seconds": "seconds"}  # fmt: skip
    print(f"{'stack':6s} {'input':11s} " + " ".join(f"{c:>7s}" for c in cols.values()))
    for r in rows:
        print(f"{r['stack']:6s} {r['input']:11s} " + " ".join(f"{r[c]:7.3f}" for c in cols))
    for label in dict.fromkeys(r["input"] for r in rows):
        sel = [r for r in rows if r["input"] == label]
        print(f"{'mean':6s} {label:11s} " + " ".join(f"{np.mean([r[c] for r in sel]):7.3f}" for c in cols))


if __name__ == "__main__":
    main()
