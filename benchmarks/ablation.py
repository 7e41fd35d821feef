# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""NeuroLink's ablation (Yan et al., MICCAI 2024) on this implementation: four variants trained by the
bundle's own training workflow with identical data, seeds and budget, then run through the bundle's inference
workflow (sliding window, threshold, tracing to SWC) and scored.

Variants (everything else is the bundle's ``train.json``):

1. ``unet``: ``NeuroLinkNet(dsconv=False, multitask=False)``, Dice + CE only;
2. ``dsconv``: plus the DSConv3D branches;
3. ``dsconv_cont``: plus the morphology continuity loss (the bundle's weight and penalty);
4. ``neurolink``: plus the direction and distance heads and their losses: the bundle's default model.

Test sets: ``synthetic``, held-out stacks of the generator's default (weak-signal) setting with another data seed
than the training data; ``diadem_op_dev``, the three real DIADEM OP stacks zero-shot (gold masks rasterised from
the gold SWCs), when the folder exists.

Metrics per case (``neurolink_monai.metrics.segmentation_scores`` and ``reconstruction_scores``): voxel precision,
recall, F1, hard clDice, Betti-0 error, skeleton breaks and ERL fraction along the gold SWC, the recall of the gold
centreline inside the weak stretches of the synthetic neurons (``weak_recall``: gold nodes whose weak-stretch window,
regenerated from the data seed, is >= 0.5, and which the mask covers), and of the traced SWC:
Vaa3D ESA / DSA / PDS (2 voxels) and node precision / recall / F1 (4 voxels).

Results go to ``benchmarks/results/ablation.json`` (a list of records, see the README), written after every run;
rerunning the same command skips the records already there, so an interrupted ablation resumes. Checkpoints,
TensorBoard logs and the inference outputs (probability maps, masks, SWCs, MIPs) of each run stay in ``--work-dir``.

Usage:
    python benchmarks/ablation.py --preset cpu --seeds 0 1      # 2-core CPU: about 1 hour per seed
    python benchmarks/ablation.py --preset gpu --seeds 0 1 2    # train_full.json on a GPU
    python benchmarks/ablation.py --table                       # print the tables of ablation.json only
    python benchmarks/ablation.py --rescore                     # score the stored outputs again (new metrics)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from monai.bundle import ConfigWorkflow

from neurolink_monai.bundle_utils import input_stem, output_paths
from neurolink_monai.data.synthetic import ensure_dataset, regenerate_sample
from neurolink_monai.io import atomic_write_text, read_swc, read_tiff_stack
from neurolink_monai.metrics import centreline_recall, reconstruction_scores, segmentation_scores
from neurolink_monai.transforms import SWCToMask

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
DEFAULT_RESULTS = REPO / "benchmarks" / "results" / "ablation.json"
DEFAULT_WORK = REPO / "benchmarks" / "results" / "runs"
DEFAULT_DIADEM = REPO.parent / "shared" / "real" / "diadem_op_dev"

_SINGLE_TASK = {"network_def#multitask": False, "loss#lambda_dir": 0.0, "loss#lambda_dist": 0.0}
VARIANTS: dict[str, dict[str, Any]] = {
    "unet": {"network_def#dsconv": False, "loss#lambda_cont": 0.0, **_SINGLE_TASK},
    "dsconv": {"network_def#dsconv": True, "loss#lambda_cont": 0.0, **_SINGLE_TASK},
    "dsconv_cont": {"network_def#dsconv": True, **_SINGLE_TASK},
    "neurolink": {"network_def#dsconv": True},
}
"""Config overrides of each variant on top of the preset's training configs."""

METRICS = ("precision", "recall", "weak_recall", "f1", "cldice", "breaks", "erl_fraction", "betti0_error", "ESA",
           "DSA", "PDS", "node_precision", "node_recall", "node_f1")  # fmt: skip


@dataclass(frozen=True)
class Preset:
    """Training configs merged in order, overrides applied to training (and its network keys to inference),
    overrides of the inference workflow alone, and the number of held-out synthetic test stacks."""

    configs: tuple[str, ...]
    overrides: dict[str, Any] = field(default_factory=dict)
    infer_overrides: dict[str, Any] = field(default_factory=dict)
    synthetic_test: int = 8


PRESETS = {
    # the bundle's default training (12 epochs of 16 iterations, 32x64x64 patches, K=3, features 8..64); windows
    # without overlap at test time keep the DIADEM inference of the DSConv variants near 4 minutes on 2 cores
    "cpu": Preset(("train.json",), infer_overrides={"overlap": 0.0}),
    # the bundle's GPU preset merged on top (300 epochs, 64x128x128 patches, batches of 2)
    "gpu": Preset(("train.json", "train_full.json"), synthetic_test=24),
}


def _inference_overrides(train_overrides: dict[str, Any]) -> dict[str, Any]:
    """The training overrides that inference.json must share: the network and the sliding window."""
    out = {k: v for k, v in train_overrides.items() if k.startswith("network_def#")}
    for train_key, infer_key in (("val_roi_size", "roi_size"), ("threshold", "threshold")):
        if train_key in train_overrides:
            out[infer_key] = train_overrides[train_key]
    return out


def _workflow(configs: Sequence[str], workflow_type: str, overrides: dict[str, Any]) -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / c) for c in configs],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    wf.initialize()
    return wf


def _cli_value(value: Any) -> str:
    """A config value as the ``monai.bundle`` command line (python-fire) reads it back."""
    if isinstance(value, (bool, type(None))):
        return repr(value)
    return shlex.quote(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))


def _command(configs: Sequence[str], run_id: str, overrides: dict[str, Any]) -> str:
    """The equivalent ``python -m monai.bundle run`` command line of a workflow, to print and rerun."""
    files = [f"bundle/configs/{c}" for c in configs]
    config = files[0] if len(files) == 1 else '"[' + ",".join(f"'{f}'" for f in files) + ']"'
    args = " ".join(f"--{k} {_cli_value(v)}" for k, v in overrides.items())
    return f"python -m monai.bundle run {run_id} --meta_file bundle/configs/metadata.json --config_file {config} {args}"


def train_variant(preset: Preset, variant: str, seed: int, run_dir: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Train one variant with the bundle's training workflow; returns ``{"train_seconds", "best_val_dice", ...}``.

    A finished run (``run_dir/train.json`` present) is not trained again.
    """
    settings = {**preset.overrides, **VARIANTS[variant], **extra, "seed": seed}
    record_path = run_dir / "train.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("overrides") != settings:
            raise ValueError(
                f"{run_dir} holds a training with other settings ({record.get('overrides')}, not {settings}); "
                "use another --work-dir or remove the folder."
            )
        return record
    paths = {"ckpt_dir": str(run_dir / "models"), "log_dir": str(run_dir / "runs"), "output_dir": str(run_dir / "eval")}
    overrides = {**settings, **paths}
    print(f"\n=== training {variant}, seed {seed}\n{_command(preset.configs, 'training', overrides)}", flush=True)
    start = time.perf_counter()
    wf = _workflow(preset.configs, "train", overrides)
    wf.run()
    seconds = time.perf_counter() - start
    evaluator = wf.parser.get_parsed_content("validate#evaluator")
    record = {
        "train_seconds": seconds,
        "best_val_dice": float(evaluator.state.best_metric),
        "best_epoch": int(evaluator.state.best_metric_epoch),
        "epochs": int(wf.parser.get_parsed_content("max_epochs")),
        "iterations": int(wf.parser.get_parsed_content("train#trainer").state.iteration),
        "overrides": settings,
    }
    wf.finalize()
    atomic_write_text(record_path, json.dumps(record, indent=1))
    return record


@dataclass
class TestCase:
    """One test stack: its image file, gold mask (label file, else rasterised from the gold SWC), gold SWC (voxel
    coordinates) and, for synthetic stacks, the weak-stretch window of every gold node."""

    image: Path
    gold_swc: Path
    label: Path | None = None
    weak: np.ndarray | None = None  # (N,) weak-stretch window of each gold SWC node (synthetic stacks)

    @property
    def stem(self) -> str:
        return input_stem(self.image)

    def outputs(self, out_dir: Path) -> dict[str, Path]:
        """The bundle inference outputs of this stack in ``out_dir``."""
        return output_paths(out_dir, self.image)

    def gold_mask(self, shape: tuple[int, ...], spacing: Sequence[float]) -> np.ndarray:
        if self.label is not None:
            return read_tiff_stack(self.label)[0] > 0
        return SWCToMask(shape, spacing)(read_swc(self.gold_swc))[0] > 0


def synthetic_test_cases(work_dir: Path, num_samples: int, shape: Sequence[int], seed: int) -> list[TestCase]:
    """Held-out synthetic stacks (default weak-signal setting, data seed ``seed``); every split is a test case."""
    dataset_json = ensure_dataset(work_dir / f"synthetic_test_seed{seed}", num_samples, shape, seed, progress=False)
    root = dataset_json.parent
    entries = json.loads(dataset_json.read_text())
    items = [e for split in ("training", "validation", "test") for e in entries.get(split, [])]
    cases = []
    for index, e in enumerate(items):  # the generator lists the samples in index order, split after split
        sample = regenerate_sample(root, index)
        if not np.array_equal(sample["swc"], read_swc(root / e["swc"])):
            raise ValueError(f"{root / e['swc']}: not sample {index} of its dataset; cannot place its weak stretches.")
        cases.append(TestCase(root / e["image"], root / e["swc"], root / e["label"], sample["node_weak"]))
    return cases


def diadem_test_cases(folder: Path) -> list[TestCase]:
    """The DIADEM OP stacks with their gold SWCs; empty when the folder is absent."""
    return [
        TestCase(folder / f"OP_{k}.tif", folder / f"OP_{k}.swc")
        for k in (1, 2, 3)
        if (folder / f"OP_{k}.tif").is_file()
    ]


def infer_variant(
    preset: Preset, variant: str, cases: list[TestCase], run_dir: Path, out_dir: Path, extra: dict[str, Any]
) -> float:
    """Run the bundle's inference workflow with the run's best model on ``cases`` into ``out_dir``; the seconds."""
    overrides = {
        **_inference_overrides({**preset.overrides, **VARIANTS[variant], **extra}),
        **preset.infer_overrides,
        "ckpt_path": str(run_dir / "models" / "model.pt"),
        "input_path": [str(c.image) for c in cases],
        "output_dir": str(out_dir),
        "dataset_dir": None,
    }
    start = time.perf_counter()
    wf = _workflow(("inference.json",), "infer", overrides)
    wf.run()
    wf.finalize()
    return time.perf_counter() - start


def score_outputs(cases: list[TestCase], out_dir: Path) -> dict[str, Any]:
    """Score the inference outputs (``<stem>_seg.tif``, ``<stem>.swc``) of every case; per case and mean."""
    per_case = []
    for case in cases:
        image, spacing = read_tiff_stack(case.image)
        gold = case.gold_mask(image.shape, spacing)
        outputs = case.outputs(out_dir)
        seg = read_tiff_stack(outputs["seg"])[0] > 0
        gold_swc = read_swc(case.gold_swc)
        scores = segmentation_scores(seg, gold, gold_swc)
        scores["weak_recall"] = (
            float("nan") if case.weak is None else centreline_recall(seg, gold_swc, case.weak >= 0.5)
        )
        scores.update(reconstruction_scores(read_swc(outputs["swc"]), gold_swc))
        per_case.append({"case": case.stem, **scores})
    return {"metrics": {k: _nanmean([c[k] for c in per_case]) for k in METRICS + ("trees",)}, "cases": per_case}


def evaluate_variant(
    preset: Preset, variant: str, cases: list[TestCase], run_dir: Path, out_name: str, extra: dict[str, Any]
) -> dict[str, Any]:
    """Inference with the run's best model on ``cases`` (:func:`infer_variant`), then :func:`score_outputs`."""
    start = time.perf_counter()
    infer_seconds = infer_variant(preset, variant, cases, run_dir, run_dir / out_name, extra)
    scored = score_outputs(cases, run_dir / out_name)
    return {**scored, "eval_seconds": time.perf_counter() - start, "infer_seconds": infer_seconds,
            "infer_overrides": dict(preset.infer_overrides)}  # fmt: skip


def _nanmean(values: Iterable[float]) -> float:
    arr = np.asarray(list(values), dtype=float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def load_results(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.is_file() else []


def save_results(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(records, indent=1, allow_nan=True) + "\n")


def _fmt(values: list[float], digits: int) -> str:
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if arr.size == 0:
        return "n/a"
    if arr.size == 1:
        return f"{arr[0]:.{digits}f}"
    return f"{arr.mean():.{digits}f} ± {arr.std(ddof=1):.{digits}f}"


def seed_minutes(records: list[dict[str, Any]]) -> dict[int, float]:
    """Wall minutes per seed: each variant's training once plus every evaluation of it."""
    minutes: dict[int, float] = {}
    trained = set()
    for r in records:
        key = (r["variant"], r["seed"])
        seconds = r.get("eval_seconds", 0.0) + (r["train_seconds"] if key not in trained else 0.0)
        trained.add(key)
        minutes[r["seed"]] = minutes.get(r["seed"], 0.0) + seconds / 60
    return minutes


def format_tables(records: list[dict[str, Any]], preset: str | None = None, totals: bool = True) -> str:
    """Markdown tables, one per preset and dataset: mean ± sample standard deviation over seeds; with ``totals``,
    each preset's wall minutes per seed after its tables (``benchmarks/tables.py`` leaves them to the prose)."""
    lines = []
    presets = dict.fromkeys(r.get("preset", "cpu") for r in records)
    for p in presets:
        if preset is not None and p != preset:
            continue
        sel = [r for r in records if r.get("preset", "cpu") == p]
        for dataset in dict.fromkeys(r["dataset"] for r in sel):
            rows = [r for r in sel if r["dataset"] == dataset]
            seeds = sorted({r["seed"] for r in rows})
            lines.append(f"\n**{dataset}** (preset `{p}`, seeds {', '.join(map(str, seeds))}; mean ± std over seeds)\n")
            cols = ("recall", "weak_recall", "precision", "f1", "cldice", "breaks", "erl_fraction", "betti0_error",
                    "ESA", "DSA", "PDS", "node_f1")  # fmt: skip
            lines.append("| variant | " + " | ".join(cols) + " | train min |")
            lines.append("|---" * (len(cols) + 2) + "|")
            for variant in VARIANTS:
                vr = [r for r in rows if r["variant"] == variant]
                if not vr:
                    continue
                cells = [_fmt([r["metrics"][c] for r in vr], 1 if c in ("breaks", "betti0_error") else 3) for c in cols]
                cells.append(_fmt([r["train_seconds"] / 60 for r in vr], 1))
                lines.append(f"| {variant} | " + " | ".join(cells) + " |")
        if totals:
            minutes = ", ".join(f"seed {seed}: {m:.1f} min" for seed, m in seed_minutes(sel).items())
            lines.append(f"\nAll variants, training and testing (preset `{p}`): {minutes}.")
    return "\n".join(lines)


def run_tag(preset: str, extra: dict[str, Any]) -> str:
    """Folder name of a preset's runs in ``--work-dir``: the preset, plus a digest of any extra overrides, so that
    runs with other settings never reuse each other's checkpoints."""
    if not extra:
        return preset
    return f"{preset}-{hashlib.sha1(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:8]}"


def _test_sets(args: argparse.Namespace, preset: Preset) -> dict[str, list[TestCase]]:
    num = args.synthetic_test or preset.synthetic_test
    datasets = {"synthetic": synthetic_test_cases(args.work_dir, num, args.synthetic_shape, args.synthetic_seed)}
    diadem = diadem_test_cases(args.diadem) if args.diadem is not None else []
    if diadem:
        datasets["diadem_op_dev"] = diadem
    else:
        print(f"DIADEM stacks not found in {args.diadem}: scoring the synthetic test set only", flush=True)
    return datasets


def rescore(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Score the stored inference outputs of every record of ``--preset`` again (after a metric changed)."""
    datasets = _test_sets(args, PRESETS[args.preset])
    records = load_results(args.results)
    for r in records:
        if r.get("preset", "cpu") != args.preset or r["dataset"] not in datasets:
            continue
        run_dir = args.work_dir / run_tag(args.preset, dict(args.override)) / f"{r['variant']}_seed{r['seed']}"
        out_dir = run_dir / f"infer_{r['dataset']}"
        r.update(score_outputs(datasets[r["dataset"]], out_dir))
        print(f"rescored {r['variant']}, seed {r['seed']} on {r['dataset']}", flush=True)
    save_results(args.results, records)
    return records


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    preset = PRESETS[args.preset]
    extra = dict(args.override)
    records = load_results(args.results)
    done = {(r.get("preset", "cpu"), r["variant"], r["seed"], r["dataset"]) for r in records}
    datasets = _test_sets(args, preset)
    for seed in args.seeds:
        for variant in args.variants:
            todo = [name for name in datasets if (args.preset, variant, seed, name) not in done]
            if not todo:
                continue
            run_dir = args.work_dir / run_tag(args.preset, extra) / f"{variant}_seed{seed}"
            trained = train_variant(preset, variant, seed, run_dir, extra)
            for name in todo:
                print(f"=== evaluating {variant}, seed {seed} on {name} ({len(datasets[name])} stacks)", flush=True)
                result = evaluate_variant(preset, variant, datasets[name], run_dir, f"infer_{name}", extra)
                records.append({"variant": variant, "seed": seed, "dataset": name, "preset": args.preset,
                                **result, **trained})  # fmt: skip
                save_results(args.results, records)
                m = result["metrics"]
                print(f"    recall {m['recall']:.3f} precision {m['precision']:.3f} breaks {m['breaks']:.1f} "
                      f"node_f1 {m['node_f1']:.3f} ({result['eval_seconds']:.0f} s)", flush=True)  # fmt: skip
    return records


def _override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--override takes KEY=JSON_VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="records JSON (appended, resumable)")
    ap.add_argument("--work-dir", type=Path, default=DEFAULT_WORK, help="checkpoints, logs and inference outputs")
    ap.add_argument("--diadem", type=Path, default=DEFAULT_DIADEM, help="DIADEM OP folder (skipped when absent)")
    ap.add_argument("--synthetic-test", type=int, default=None, help="held-out synthetic stacks (preset default)")
    ap.add_argument("--synthetic-shape", type=int, nargs=3, default=[64, 128, 128], metavar=("D", "H", "W"))
    ap.add_argument("--synthetic-seed", type=int, default=1000, help="data seed of the held-out synthetic stacks")
    ap.add_argument("--override", type=_override, action="append", default=[], metavar="KEY=VALUE",
                    help="extra bundle config override for every run, e.g. max_epochs=2")  # fmt: skip
    ap.add_argument("--table", action="store_true", help="only print the tables of --results")
    ap.add_argument("--rescore", action="store_true", help="score the stored inference outputs again, no training")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.rescore:
        rescore(args)
    elif not args.table:
        run(args)
    records = load_results(args.results)
    if not records:
        print(f"no records in {args.results}", file=sys.stderr)
        return 1
    print(format_tables(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
