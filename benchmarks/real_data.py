# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Real-data benchmark: the DIADEM OP stacks, bright and weak, classical tracing against the learned pipeline.

Conditions:

* ``bright``: the stacks as recorded (``../shared/real/diadem_op_dev``);
* ``weak``: each stack degraded with :func:`neurolink_monai.transforms.degrade_to_weak` (smooth attenuation field,
  Poisson and read noise; seed = stack number), written once to ``--work-dir/stacks/weak``.

Methods, side by side on the same stacks:

* ``classical``: the no-model reference, :func:`neurolink_monai.tracing.trace_classical` (smoothing, the higher of
  Otsu and a noise threshold, small-component removal, the project's tracer with main-tree linking);
* ``synthetic``: the bundle's inference workflow (``inference.json``: sliding window, threshold, tracing) with the
  synthetic-only weights (``--synthetic-ckpt``, default ``bundle/models/synthetic_only.pt``, the 0.2.0 weights);
* ``loso``: the same inference with leave-one-stack-out weights: for each stack, ``train.json`` + ``finetune.json``
  started from the synthetic-only weights and fine-tuned on the OTHER two stacks (their SWC traces as labels, through
  the weak-signal augmentations). A stack is never scored by a model that saw it.

The OP stacks hold axons whose somata lie outside the stack (the data's README), and every method traces them as a
user who knows that would: ``trace_soma_in_view`` false (no blob is taken for a soma; each tree is rooted where it
enters the stack). ``--soma-in-view`` traces them with the bundle's default rooting instead.

Scores per stack (voxels of the stack): node precision / recall / F1 at 4 voxels, the same node scores of the
SWC's first tree alone (``tree1_node_*``: the neuron the gold traces, the tree the DIADEM metric reads; other
neurons in the stack are not in the gold and count against the all-tree precision), Vaa3D ESA / DSA / PDS, the
breaks of the segmentation along the gold trace, trees in the SWC, the official DIADEM metric (``-D 5``, when
``java`` and the scorer are found) and the seconds from image to SWC; and two diagnostics: the node recall by the
image's signal along the gold (``signal_recall``) and how bright the recorded stack is under the traced nodes that
match no gold node (``off_gold_*``: neurite the gold leaves out, or noise). Records go to ``--results`` (JSON, written
after every stack, so a rerun resumes); ``--table`` prints the tables again.

Usage::

    python benchmarks/real_data.py                                   # all methods, both conditions
    python benchmarks/real_data.py --methods classical --conditions bright
    python benchmarks/real_data.py --retrace                         # trace the stored maps again (new tracer)
    python benchmarks/real_data.py --retrace --gold-root             # ... with the main tree rooted at the gold root
    python benchmarks/real_data.py --table
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ablation import _command, _override, _workflow  # noqa: E402  (the benchmarks' one way to run bundle workflows)

from neurolink_monai.bundle_utils import output_paths  # noqa: E402
from neurolink_monai.inference.blockwise import trace_step_id  # noqa: E402
from neurolink_monai.io import (  # noqa: E402
    atomic_write_text,
    first_tree,
    read_swc,
    read_tiff_stack,
    spacing_from_affine,
    write_swc,
    write_tiff_stack,
)
from neurolink_monai.metrics import diadem_score, find_diadem_jar, node_prf, reconstruction_scores  # noqa: E402
from neurolink_monai.metrics.continuity import skeleton_continuity  # noqa: E402
from neurolink_monai.metrics.node_matching import matched_within  # noqa: E402
from neurolink_monai.skeleton import resample_graph, swc_to_graph  # noqa: E402
from neurolink_monai.tracing import trace_classical  # noqa: E402
from neurolink_monai.tracing.classical import classical_probability  # noqa: E402
from neurolink_monai.tracing.contrast import background_and_noise  # noqa: E402
from neurolink_monai.transforms import degrade_to_weak  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "real" / "diadem_op_dev"
DEFAULT_JAR = REPO.parent / "shared" / "reference" / "diadem" / "DiademMetric.jar"
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "real_data.json"
DEFAULT_WORK = REPO / "benchmarks" / "results" / "runs" / "real_data"
STACKS = ("OP_1", "OP_2", "OP_3")
CONDITIONS = ("bright", "weak")
METHODS = ("classical", "synthetic", "loso")
SIGNAL_BANDS = (2.0, 4.0, 8.0, 16.0)
"""Band edges, in noise sigmas, of :func:`signal_recall`: below 2, 2-4, 4-8, 8-16, 16 and above."""
METRICS = (
    "node_precision",
    "node_recall",
    "node_f1",
    "tree1_node_f1",
    "ESA",
    "DSA",
    "PDS",
    "breaks",
    "trees",
    "diadem",
    "seconds",
)
FINETUNE_CONFIGS = ("train.json", "finetune.json")
# the tracing of axon stacks, whose somata lie outside the view (see the module docstring)
AXON_STACKS = {"trace_soma_in_view": False}


def stack_path(data: Path, work: Path, stack: str, condition: str) -> Path:
    """The image file of one stack in one condition; the weak version is made (once, atomically) on first use."""
    source = data / f"{stack}.tif"
    if condition == "bright":
        return source
    target = work / "stacks" / condition / f"{stack}.tif"
    if not target.is_file():
        image, spacing = read_tiff_stack(source)
        weak = degrade_to_weak(image, seed=int(stack.split("_")[1]))
        target.parent.mkdir(parents=True, exist_ok=True)
        write_tiff_stack(target, np.clip(np.round(weak), 0, 255).astype(np.uint8), spacing=spacing)
    return target


def fold_dir(data: Path, work: Path, held_out: str) -> Path:
    """A folder holding (links to) every stack and trace except ``held_out``: the fine-tuning data of that fold."""
    folder = work / "folds" / f"without_{held_out}"
    folder.mkdir(parents=True, exist_ok=True)
    for stack in STACKS:
        if stack == held_out:
            continue
        for suffix in (".tif", ".swc"):
            link = folder / f"{stack}{suffix}"
            if not link.exists():
                os.symlink((data / f"{stack}{suffix}").resolve(), link)
    return folder


def train_fold(data: Path, work: Path, held_out: str, pretrained: Path, overrides: dict[str, Any]) -> Path:
    """Fine-tune the fold without ``held_out`` through the bundle's training workflow; returns its weights file.

    A fold whose ``train.json`` record exists is not trained again.
    """
    run = work / "loso" / held_out
    weights = run / "models" / "model.pt"
    record_path = run / "train.json"
    if record_path.is_file() and weights.is_file():
        return weights
    settings = {
        "dataset_dir": str(fold_dir(data, work, held_out)),
        "pretrained_path": str(pretrained),
        "ckpt_dir": str(run / "models"),
        "log_dir": str(run / "runs"),
        "output_dir": str(run / "eval"),
        **overrides,
    }
    print(f"\n=== fine-tuning without {held_out}\n{_command(FINETUNE_CONFIGS, 'training', settings)}", flush=True)
    start = time.perf_counter()
    wf = _workflow(FINETUNE_CONFIGS, "train", settings)
    wf.run()
    wf.finalize()
    record = {"held_out": held_out, "train_seconds": time.perf_counter() - start, "overrides": settings}
    atomic_write_text(record_path, json.dumps(record, indent=1))
    return weights


def infer(
    image: Path, ckpt: Path, out_dir: Path, network: dict[str, Any] | None = None, extra: dict[str, Any] | None = None
) -> tuple[dict[str, Path], float]:
    """The bundle's inference workflow (image to probability, mask and SWC) on one stack; its outputs and seconds.

    The direction and distance maps are kept too, so that :func:`retrace` can trace the stack again. ``network``
    overrides entries of ``network_def`` (``{"norm": ["batch", {"affine": True}]}``), as ``--network`` does;
    ``extra`` other entries of ``inference.json`` (``--infer-override``).
    """
    paths = output_paths(out_dir, image)
    start = time.perf_counter()
    overrides = {"ckpt_path": str(ckpt), "input_path": [str(image)], "output_dir": str(out_dir), "dataset_dir": None,
                 "save_direction": True, "save_distance": True,
                 **{f"network_def#{k}": v for k, v in (network or {}).items()}, **(extra or {})}  # fmt: skip
    wf = _workflow(("inference.json",), "infer", overrides)
    wf.run()
    wf.finalize()
    return paths, time.perf_counter() - start


@functools.lru_cache(maxsize=2)
@functools.lru_cache(maxsize=2)
def signal_volume(image_path: Path, gold: Path) -> tuple[np.ndarray, np.ndarray]:
    """The gold trace's nodes resampled 1 voxel apart (``(N, 3)`` z, y, x, as :func:`node_prf` resamples them) and
    the image's signal at every voxel, in noise sigmas (``(D, H, W)``; kept for the last two stacks asked for).

    The stack is smoothed (Gaussian, sigma 1 voxel in-plane, 0.5 in z); the signal of a voxel is the brightest smoothed
    voxel within one voxel in-plane of it (the manual trace is accurate to 1-2 pixels) minus the local background,
    over the background noise (:func:`background_and_noise`, with the gold's neighbourhood left out). On pure noise
    this reads about 1 sigma (the brightest of nine smoothed voxels), so below 2 there is next to no neurite to see.
    """
    image, _ = read_tiff_stack(image_path)
    smooth = ndi.gaussian_filter(np.asarray(image, dtype=np.float32), (0.5, 1.0, 1.0))
    nodes = _trace_points(read_swc(gold), "gold trace")
    near_gold = np.zeros(image.shape, dtype=bool)
    near_gold[_voxels(nodes, image.shape)] = True
    background, noise = background_and_noise(smooth, ndi.binary_dilation(near_gold, iterations=2))
    peak = ndi.maximum_filter(smooth, size=(1, 3, 3))
    return nodes, (peak - background) / noise


def gold_signal(image_path: Path, gold: Path) -> tuple[np.ndarray, np.ndarray]:
    """The gold trace's nodes 1 voxel apart ``(N, 3)`` and the image's signal at each, in noise sigmas
    (:func:`signal_volume`)."""
    nodes, signal = signal_volume(image_path, gold)
    return nodes, signal[_voxels(nodes, signal.shape)]


def _trace_points(swc: np.ndarray, name: str) -> np.ndarray:
    """The nodes of ``swc`` resampled 1 voxel apart, ``(N, 3)`` z, y, x, as :func:`node_prf` resamples them."""
    return resample_graph(swc_to_graph(swc, name), 1.0).scaled().points if len(swc) else np.zeros((0, 3))


def _voxels(points: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, ...]:
    """Index of the voxels nearest to ``points`` ``(N, 3)``, clipped to a volume of ``shape``."""
    return tuple(np.clip(np.rint(points).astype(np.int64), 0, np.asarray(shape) - 1).T)


def signal_recall(swc: np.ndarray, image_path: Path, gold: Path, tolerance: float = 4.0) -> list[list[int]]:
    """``[recovered, gold nodes]`` per band of :data:`SIGNAL_BANDS` (:func:`gold_signal`): where along the gold trace,
    by the image's signal there, the reconstruction has a node within ``tolerance`` voxels (as the node recall)."""
    nodes, signal = gold_signal(image_path, gold)
    hit = matched_within(nodes, _trace_points(swc, "reconstruction"), tolerance)
    band = np.searchsorted(SIGNAL_BANDS, signal, side="right")
    return [[int(hit[band == b].sum()), int((band == b).sum())] for b in range(len(SIGNAL_BANDS) + 1)]


def off_gold(swc: np.ndarray, gold: Path, tolerance: float = 4.0) -> dict[str, Any]:
    """Where the reconstruction's nodes that match no gold node lie: how bright the RECORDED stack is there.

    The recorded stack is ``gold`` with the suffix ``.tif`` (the data folder's ``OP_k.tif`` beside ``OP_k.swc``; for
    a weak stack, the bright original it was made from), so a node on a neurite the gold leaves out reads bright even
    where the weak stack hides it, and a node traced on noise reads near the background. Its brightness is the signal
    of :func:`signal_volume`, over the gold trace's median signal in the same stack (1: as bright as the typical
    gold node; about 0: background).

    Returns:
        ``{"traced_nodes", "off_gold_nodes", "off_gold_brightness"}``: the reconstruction's nodes 1 voxel apart (the
        node precision's denominator), those farther than ``tolerance`` voxels from every gold node (the precision's
        misses) and their median brightness (NaN when there is none).
    """
    nodes, signal = signal_volume(gold.with_suffix(".tif"), gold)
    test = _trace_points(swc, "reconstruction")
    off = test[~matched_within(test, nodes, tolerance)]
    reference = float(np.median(signal[_voxels(nodes, signal.shape)]))
    brightness = float(np.median(signal[_voxels(off, signal.shape)])) / reference if len(off) else math.nan
    return {"traced_nodes": len(test), "off_gold_nodes": len(off), "off_gold_brightness": brightness}


def score(
    swc: np.ndarray, mask: np.ndarray, gold: Path, spacing: Sequence[float], jar: Path | None, image_path: Path
) -> dict[str, Any]:
    """Tree scores (all trees, and the first tree alone), the node recall by the image's signal along the gold trace
    (:func:`signal_recall`), the brightness of the recorded stack under the nodes off the gold (:func:`off_gold`),
    breaks of ``mask`` along the gold trace and the DIADEM metric (NaN without a scorer)."""
    gold_swc = read_swc(gold)
    out = reconstruction_scores(swc, gold_swc)
    first = first_tree(swc)
    tree1 = node_prf(first, gold_swc) if len(first) else {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    out.update({f"tree1_node_{key}": tree1[key] for key in ("precision", "recall", "f1")})
    out["signal_recall"] = signal_recall(swc, image_path, gold)
    out.update(off_gold(swc, gold))
    out["breaks"] = float(skeleton_continuity(mask, gold_swc, spacing=spacing)["breaks"])
    out["diadem"] = diadem_score(swc, gold, jar) if jar is not None else math.nan
    return out


def run_classical(image_path: Path, gold: Path, jar: Path | None, soma_in_view: bool = True) -> dict[str, float]:
    start = time.perf_counter()
    image, spacing = read_tiff_stack(image_path)
    swc = trace_classical(image, spacing, soma_in_view=soma_in_view)
    seconds = time.perf_counter() - start
    mask = classical_probability(image, spacing) >= 0.5
    return {**score(swc, mask, gold, spacing, jar, image_path), "seconds": seconds}


def run_model(
    image_path: Path,
    gold: Path,
    ckpt: Path,
    out_dir: Path,
    jar: Path | None,
    network: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, float]:
    paths, seconds = infer(image_path, ckpt, out_dir, network, extra)
    mask, spacing = read_tiff_stack(paths["seg"])
    swc = read_swc(paths["swc"])
    return {**score(swc, mask > 0, gold, spacing, jar, image_path), "seconds": seconds}


def bundle_tracer(overrides: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """The inference workflow's preprocessing and its tracing transform, as ``inference.json`` configures them.

    ``overrides`` (``{"trace_min_contrast": 3.0}``) change top-level entries of ``inference.json`` as a bundle
    command-line override would.
    """
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundle" / "configs" / "inference.json"))
    parser.update(dict(overrides or {}))
    return parser.get_parsed_content("preprocessing"), parser.get_parsed_content(trace_step_id(parser))


def stored_maps(preprocessing: Any, image_path: Path, out_dir: Path) -> dict[str, Any]:
    """The inference workflow's data dictionary for ``image_path`` rebuilt from what it stored in ``out_dir``: the
    preprocessed ``image`` and the ``prob``, ``pred_direction`` and ``pred_distance`` maps on its grid."""
    paths = output_paths(out_dir, image_path)
    data = preprocessing({"image": str(image_path)})
    maps = {"prob": paths["prob"], "pred_direction": paths["direction"], "pred_distance": paths["distance"]}
    for key, path in maps.items():
        array, _ = read_tiff_stack(path)
        data[key] = MetaTensor(torch.as_tensor(array if array.ndim == 4 else array[None]), affine=data["image"].affine)
    return data


def retrace(
    record: dict[str, Any],
    image_path: Path,
    gold: Path,
    out_dir: Path,
    jar: Path | None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Trace a model row's stored maps again with the current tracer and ``inference.json`` settings; rescore.

    ``overrides`` go to ``inference.json`` (:func:`bundle_tracer`). The new tracing time is kept as
    ``trace_seconds``; ``seconds`` becomes the network time plus it when the record holds the network time apart
    (``network_seconds``, from an earlier retrace of a split record), else it stays the full run's image-to-SWC time,
    whose network and tracing parts were not timed apart.
    """
    paths = output_paths(out_dir, image_path)
    preprocessing, tracer = bundle_tracer(overrides)
    data = stored_maps(preprocessing, image_path, out_dir)
    affine = data["image"].affine
    start = time.perf_counter()
    swc = tracer(data)["swc"]
    trace_seconds = time.perf_counter() - start
    write_swc(paths["swc"], swc)
    mask = np.asarray(data["prob"][0]) >= float(tracer.tracer.config.threshold)
    scores = score(swc, mask, gold, spacing_from_affine(affine), jar, image_path)
    network_seconds = record.get("network_seconds")
    seconds = record["seconds"] if network_seconds is None else network_seconds + trace_seconds
    return {**record, **scores, "seconds": seconds, "trace_seconds": trace_seconds}


def load_records(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.is_file() else []


def format_tables(records: list[dict[str, Any]]) -> str:
    """Per condition: one row per (method, stack) and the mean per method."""
    lines = []
    for condition in CONDITIONS:
        rows = [r for r in records if r["condition"] == condition]
        if not rows:
            continue
        lines += [f"\n**{condition}** (DIADEM OP stacks; node scores at 4 voxels, ESA/DSA/PDS at 2 voxels)\n"]
        lines += ["| method | stack | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
        for method in METHODS:
            sel = sorted((r for r in rows if r["method"] == method), key=lambda r: r["stack"])
            for r in sel:
                lines.append(f"| {method} | {r['stack']} | " + " | ".join(_fmt(r.get(m), m) for m in METRICS) + " |")
            if sel:
                means = [_fmt(_nanmean([r.get(m) for r in sel]), m) for m in METRICS]
                lines.append(f"| **{method}** | mean | " + " | ".join(means) + " |")
        lines += format_signal_table(rows)
    return "\n".join(lines)


def signal_bands() -> list[str]:
    """Column names of the bands of :data:`SIGNAL_BANDS`: ``< 2``, ``2-4``, ..., ``>= 16``."""
    edges = [f"{e:g}" for e in SIGNAL_BANDS]
    return [f"< {edges[0]}"] + [f"{lo}-{hi}" for lo, hi in zip(edges[:-1], edges[1:])] + [f">= {edges[-1]}"]


def format_signal_by_stack(records: list[dict[str, Any]]) -> str:
    """:func:`signal_recall` of every record, stack by stack: ``recovered / gold nodes`` per band."""
    bands = signal_bands()
    lines = ["| method | condition | stack | " + " | ".join(bands) + " |", "|---|---|---|" + "---|" * len(bands)]
    for r in records:
        if "signal_recall" in r:
            cells = " | ".join(f"{hit} / {total}" for hit, total in r["signal_recall"])
            lines.append(f"| {r['method']} | {r['condition']} | {r['stack']} | {cells} |")
    return "\n".join(lines)


def format_signal_table(rows: list[dict[str, Any]]) -> list[str]:
    """Node recall by the image's signal along the gold trace (:func:`signal_recall`), pooled over the stacks, one
    row per method; nothing when no record has it."""
    bands = signal_bands()
    lines: list[str] = []
    for method in METHODS:
        sel = [r["signal_recall"] for r in rows if r["method"] == method and "signal_recall" in r]
        if not sel:
            continue
        counts = np.sum(np.asarray(sel, dtype=np.int64), axis=0)  # (bands, [recovered, gold])
        if not lines:
            lines += ["", "Node recall by the image's signal along the gold trace, in noise sigmas (the "
                      f"{len(sel)} stacks pooled;", "gold nodes 1 voxel apart per band: " + ", ".join(
                      f"{b}: {n}" for b, n in zip(bands, counts[:, 1])) + ")", "", "| method | " + " | ".join(bands)
                      + " |", "|---|" + "---|" * len(bands)]  # fmt: skip
        cells = [f"{hit / total:.2f}" if total else "n/a" for hit, total in counts]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def format_off_gold(records: list[dict[str, Any]]) -> str:
    """:func:`off_gold` of every record that has it, one row per method, condition and stack: the traced nodes, those
    off the gold (the node precision's misses) and how bright the recorded stack is under them."""
    lines = ["| method | condition | stack | traced nodes | off the gold | their brightness (x the gold's median) |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(records, key=lambda r: (CONDITIONS.index(r["condition"]), METHODS.index(r["method"]), r["stack"])):
        if "off_gold_nodes" in r:
            brightness = _fmt(r["off_gold_brightness"], "off_gold_brightness")
            lines.append(f"| {r['method']} | {r['condition']} | {r['stack']} | {r['traced_nodes']} | "
                         f"{r['off_gold_nodes']} | {brightness} |")  # fmt: skip
    return "\n".join(lines)


def _nanmean(values: list[float]) -> float:
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(finite)) if finite else math.nan


def _fmt(value: float, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if metric == "off_gold_brightness":
        return f"{value:.2f}"
    return f"{value:.1f}" if metric in ("ESA", "DSA", "breaks", "seconds", "trees") else f"{value:.3f}"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    records = load_records(args.results)
    done = {(r["method"], r["condition"], r["stack"]) for r in records}
    jar = find_diadem_jar(args.diadem_jar)
    if jar is None:
        print(f"DIADEM scorer not found ({args.diadem_jar}, or java missing): the diadem column stays n/a")
    synthetic_ckpt = Path(args.synthetic_ckpt)
    network, extra = dict(args.network), {**tracing_overrides(args), **dict(args.infer_override)}
    fold = {f"network_def#{k}": v for k, v in network.items()}
    for method in args.methods:
        for condition in args.conditions:
            for stack in args.stacks:
                if (method, condition, stack) in done:
                    continue
                image = stack_path(args.data, args.work_dir, stack, condition)
                gold = args.data / f"{stack}.swc"
                out_dir = args.work_dir / "pred" / method / condition
                if method == "classical":
                    rec = run_classical(image, gold, jar, soma_in_view=args.soma_in_view)
                    rec["soma_in_view"] = args.soma_in_view
                elif method == "synthetic":
                    rec = run_model(image, gold, synthetic_ckpt, out_dir, jar, network, extra)
                else:
                    ckpt = train_fold(args.data, args.work_dir, stack, synthetic_ckpt, {**dict(args.override), **fold})
                    rec = run_model(image, gold, ckpt, out_dir, jar, network, extra)
                if method != "classical":
                    rec.update({"network": network} if network else {})
                    rec.update({"inference_overrides": extra} if extra else {})
                records.append({"method": method, "condition": condition, "stack": stack, **rec})
                print(f"{method:9s} {condition:6s} {stack}: " + ", ".join(f"{m} {_fmt(rec[m], m)}" for m in METRICS))
                args.results.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(args.results, json.dumps(records, indent=1))
    return records


def tracing_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``inference.json`` overrides of the model rows' tracing: :data:`AXON_STACKS` unless ``--soma-in-view``."""
    return {} if args.soma_in_view else dict(AXON_STACKS)


def retrace_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """:func:`retrace` every selected model row whose maps are stored; the records file is updated row by row."""
    records = load_records(args.results)
    jar = find_diadem_jar(args.diadem_jar)
    for i, rec in enumerate(records):
        method, condition, stack = rec["method"], rec["condition"], rec["stack"]
        if method == "classical" or method not in args.methods or condition not in args.conditions:
            continue
        if stack not in args.stacks:
            continue
        image = stack_path(args.data, args.work_dir, stack, condition)
        out_dir = args.work_dir / "pred" / method / condition
        if not output_paths(out_dir, image)["direction"].is_file():
            print(f"{method} {condition} {stack}: no stored maps in {out_dir}, run it again without --retrace")
            continue
        overrides = {**tracing_overrides(args), **dict(args.trace_override)}
        if args.gold_root:
            overrides["trace_root"] = [float(v) for v in read_swc(args.data / f"{stack}.swc")[0, 2:5]]
        records[i] = retrace(rec, image, args.data / f"{stack}.swc", out_dir, jar, overrides)
        records[i].pop("trace_overrides", None)  # those of an earlier retrace no longer hold
        if overrides:
            records[i]["trace_overrides"] = overrides
        print(f"{method:9s} {condition:6s} {stack}: " + ", ".join(f"{m} {_fmt(records[i][m], m)}" for m in METRICS))
        atomic_write_text(args.results, json.dumps(records, indent=1))
    return records


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of OP_k.tif + OP_k.swc")
    p.add_argument("--diadem-jar", type=Path, default=DEFAULT_JAR, help="DiademMetric.jar (JSAP-2.1.jar beside it)")
    p.add_argument("--synthetic-ckpt", type=Path, default=REPO / "bundle" / "models" / "synthetic_only.pt",
                   help="synthetic-only weights, also the start of the leave-one-out fine-tuning")  # fmt: skip
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    p.add_argument("--stacks", nargs="+", choices=STACKS, default=list(STACKS))
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    p.add_argument("--work-dir", type=Path, default=DEFAULT_WORK)
    p.add_argument("--override", type=_override, action="append", default=[],
                   help="KEY=VALUE override of the fine-tuning workflow (JSON values), repeatable")  # fmt: skip
    p.add_argument("--retrace", action="store_true",
                   help="trace the model rows' stored maps again with the current tracer and rescore (no network)")  # fmt: skip
    p.add_argument("--network", type=_override, action="append", default=[],
                   help="KEY=VALUE override of network_def (JSON values) for the fine-tuning and the inference, "
                        "e.g. norm='[\"batch\", {\"affine\": true}]', for weights trained that way")  # fmt: skip
    p.add_argument("--infer-override", type=_override, action="append", default=[],
                   help="KEY=VALUE override of inference.json (JSON values) for the model rows, e.g. context_margin=8")  # fmt: skip
    p.add_argument("--trace-override", type=_override, action="append", default=[],
                   help="with --retrace: KEY=VALUE override of inference.json (JSON values), repeatable")  # fmt: skip
    p.add_argument("--gold-root", action="store_true",
                   help="with --retrace: root the main tree at the gold SWC's root (trace_root), as a user who "
                   "knows where the neuron enters the stack would")  # fmt: skip
    p.add_argument("--soma-in-view", action="store_true",
                   help="trace with the bundle's default rooting (a thick blob may be a soma), not as axon stacks")  # fmt: skip
    p.add_argument("--table", action="store_true", help="print the tables of --results and exit")
    p.add_argument("--signal-by-stack", action="store_true",
                   help="print the node recall by signal of every row of --results, stack by stack, and where each "
                   "row's nodes off the gold lie (how bright the recorded stack is there), and exit")  # fmt: skip
    p.add_argument("--seeds", type=Path, nargs="+", metavar="RESULTS",
                   help="print the leave-one-out rows of these results files (one per training seed) side by side, "
                        "with their means, and exit")  # fmt: skip
    return p


SEED_METRICS = ("node_f1", "tree1_node_f1", "diadem")


def format_seed_summary(files: Sequence[Path]) -> str:
    """The ``loso`` rows of several results files (training seeds) side by side: per stack and condition each
    metric of :data:`SEED_METRICS` as ``seed 1 / seed 2 / ...``, the per-seed means, their mean over the seeds,
    and the classical rows of the first file that has them."""
    runs = [load_records(path) for path in files]
    classical = next(([r for r in run if r["method"] == "classical"] for run in runs if any(
        r["method"] == "classical" for r in run)), [])  # fmt: skip
    lines = [f"leave-one-out rows of {len(files)} results files: " + ", ".join(str(f) for f in files), "",
             "| condition | stack | " + " | ".join(SEED_METRICS) + " | classical " + " / ".join(SEED_METRICS) + " |",
             "|---|---|" + "---|" * (len(SEED_METRICS) + 1)]  # fmt: skip

    def cell(rows: list[dict[str, Any] | None], metric: str) -> str:
        return " / ".join(_fmt(None if r is None else r.get(metric), metric) for r in rows)

    for condition in CONDITIONS:
        per_stack = {
            stack: [next((r for r in run if (r["method"], r["condition"], r["stack"]) == ("loso", condition, stack)),
                         None) for run in runs]  # fmt: skip
            for stack in STACKS
        }
        ref = {r["stack"]: r for r in classical if r["condition"] == condition}
        for stack, rows in per_stack.items():
            reference = " / ".join(cell([ref.get(stack)], m) for m in SEED_METRICS)
            lines.append(f"| {condition} | {stack} | " + " | ".join(cell(rows, m) for m in SEED_METRICS)
                         + f" | {reference} |")  # fmt: skip
        means = []
        for m in SEED_METRICS:
            seed_means = [_nanmean([rows[i].get(m) for rows in per_stack.values() if rows[i] is not None])
                          for i in range(len(runs))]  # fmt: skip
            means.append(" / ".join(_fmt(v, m) for v in seed_means) + f" (mean {_fmt(_nanmean(seed_means), m)})")
        ref_means = " / ".join(_fmt(_nanmean([r.get(m) for r in ref.values()]), m) for m in SEED_METRICS)
        lines.append(f"| {condition} | mean | " + " | ".join(means) + f" | {ref_means} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.seeds:
        print(format_seed_summary(args.seeds))
        return 0
    if args.signal_by_stack:
        records = load_records(args.results)
        print(format_signal_by_stack(records) + "\n\n" + format_off_gold(records))
        return 0
    if not args.table:
        if not (args.data / "OP_1.tif").is_file():
            raise SystemExit(f"error: no DIADEM OP stacks in {args.data}; pass --data.")
        retrace_all(args) if args.retrace else run(args)
    print(format_tables(load_records(args.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
