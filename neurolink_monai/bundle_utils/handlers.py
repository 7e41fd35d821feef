# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Ignite handlers of the bundle: last checkpoint and resume, a progress bar, keep the best-metric state across resumes,
and write the evaluation report (per-case and mean metrics as CSV and JSON, plus a printed table)."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.handlers import CheckpointSaver
from monai.transforms import Compose, Randomizable

from neurolink_monai.io.atomic import atomic_write_bytes

from ..errors import MissingFileError
from ..utils import as_positive_int, describe_source
from .checkpoint import CheckedCheckpointLoader
from .flags import as_bool
from .naming import input_stem
from .paths import check_output_dir

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = [
    "EvaluationReport",
    "LossProgressBar",
    "TrainingCheckpoint",
    "TrainingRandomState",
    "ValidationState",
    "latest_checkpoint",
]

logger = logging.getLogger(__name__)

_STEP = re.compile(r"(epoch|iteration)=(\d+)")


def latest_checkpoint(checkpoint_dir: str | os.PathLike) -> Path | None:
    """The ``*.pt`` file of ``checkpoint_dir`` with the highest ``epoch=N`` (or ``iteration=N``) in its name.

    ``CheckpointSaver(save_interval=...)`` names its files ``..._epoch=N.pt``; files without a step are ignored.
    Returns None when there is none.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    best: tuple[int, Path] | None = None
    for path in folder.glob("*.pt"):
        match = _STEP.search(path.name)
        if match is None:
            continue
        step = int(match.group(2))
        if best is None or step > best[0]:
            best = (step, path)
    return None if best is None else best[1]


def _transform_random_states(root: Any) -> list[np.random.RandomState]:
    """The ``np.random.RandomState`` of every random MONAI transform reachable from ``root`` (a ``Compose``, a
    transform, or a list of them), in a fixed traversal order, each once."""
    out: list[np.random.RandomState] = []
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, (list, tuple)):
            for item in obj:
                visit(item)
            return
        if not isinstance(obj, (Randomizable, Compose)) and not hasattr(obj, "transforms"):
            if not type(obj).__module__.startswith(("monai.transforms", "neurolink_monai.transforms")):
                return
        state = getattr(obj, "R", None)
        if isinstance(state, np.random.RandomState) and id(state) not in seen:
            seen.add(id(state))
            out.append(state)
        for value in vars(obj).values() if hasattr(obj, "__dict__") else ():
            if isinstance(value, (list, tuple)) or type(value).__module__.startswith(
                ("monai.transforms", "neurolink_monai")
            ):
                visit(value)

    visit(root)
    return out


def _numpy_state_to_dict(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _numpy_state_from_dict(d: Mapping[str, Any]) -> tuple:
    keys = np.asarray(torch.as_tensor(d["keys"]).numpy(), dtype=np.uint32)
    return (d["name"], keys, int(d["pos"]), int(d["has_gauss"]), float(d["cached_gaussian"]))


class TrainingRandomState:
    """Checkpointable random state of a training run, so that a resumed training repeats an uninterrupted one.

    :class:`TrainingCheckpoint` adds it to every checkpoint (as ``"random_state"``). It holds the global torch
    (CPU and CUDA), numpy and Python ``random`` generators, which decide the data order (the ``DataLoader``
    shuffle and worker seeds) and anything else drawn globally, and the ``np.random.RandomState`` of every random
    transform of the training data set (crops, flips, intensity augmentation: MONAI seeds them once, when the
    ``DataLoader`` is built, and they then run on across epochs). Saved at the end of an epoch and restored when
    the run resumes, they make the rest of the run draw exactly what the uninterrupted run drew.

    Args:
        transform: the training data set's transform (a ``Compose``), whose random transforms are captured.
    """

    def __init__(self, transform: Any = None) -> None:
        self.transform = transform

    def _states(self) -> list[np.random.RandomState]:
        return [] if self.transform is None else _transform_random_states(self.transform)

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = random.getstate()
        out: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state_to_dict(np.random.get_state()),
            "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
            "transforms": [_numpy_state_to_dict(r.get_state()) for r in self._states()],
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["cuda"] = torch.cuda.get_rng_state_all()
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        torch.set_rng_state(torch.as_tensor(state_dict["torch"], dtype=torch.uint8).cpu())
        np.random.set_state(_numpy_state_from_dict(state_dict["numpy"]))
        py = state_dict["python"]
        random.setstate((int(py["version"]), tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
        saved = list(state_dict.get("transforms", []))
        states = self._states()
        if len(saved) != len(states):
            raise ValueError(
                f"the checkpoint holds the random state of {len(saved)} random transforms but the training "
                f"pipeline has {len(states)}; resume with the configuration the checkpoint was made with."
            )
        for generator, s in zip(states, saved):
            generator.set_state(_numpy_state_from_dict(s))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([torch.as_tensor(s, dtype=torch.uint8) for s in state_dict["cuda"]])


class TrainingCheckpoint:
    """Save the trainer's full state every epoch and, with ``resume=True``, continue from the last one.

    At attach the trainer itself is added to ``save_dict`` as ``"trainer"`` (a config cannot reference the trainer
    from inside its own handler list) and the random state as ``"random_state"`` (:class:`TrainingRandomState`
    of the trainer's data set transform), then:

    - a MONAI ``CheckpointSaver`` writes ``<save_dir>/checkpoint_epoch=N.pt`` every ``save_interval`` epochs,
      keeping the last ``n_saved`` (only on rank 0 of a distributed run);
    - with ``resume=True``, a :class:`~neurolink_monai.bundle_utils.CheckedCheckpointLoader` checks the file from
      :func:`latest_checkpoint` at attach and restores every object at ``Events.STARTED`` (network, optimizer, LR
      scheduler, epoch/iteration counters, :class:`ValidationState`, random state); ignite then continues with the
      epoch after the saved one, up to the configured ``max_epochs``. On the CPU the resumed run ends with the
      same weights, bit for bit, as an uninterrupted one (``tests/test_bad_input.py``).

    Attach it after the ``ValidationHandler`` so that each checkpoint includes that epoch's validation state.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: name -> object with ``state_dict``/``load_state_dict`` (``"trainer"`` is added).
        resume: continue from the last checkpoint (``--resume true``).
        map_location: ``torch.load`` map location when resuming (e.g. the training device).
        save_interval: epochs between checkpoints.
        n_saved: how many checkpoints to keep.

    Raises (at attach):
        FileNotFoundError: ``resume`` but ``save_dir`` holds no checkpoint.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        resume: bool = False,
        map_location: Any = None,
        save_interval: int = 1,
        n_saved: int = 1,
    ) -> None:
        for reserved in ("trainer", "random_state"):
            if reserved in save_dict:
                raise ValueError(f"save_dict must not name {reserved!r}: this handler adds it.")
        as_positive_int(save_interval, "save_interval")
        as_positive_int(n_saved, "n_saved")
        self.save_dir = Path(save_dir)
        self.save_dict = dict(save_dict)
        self.resume = as_bool(resume, "resume")
        self.map_location = map_location
        self.save_interval = save_interval
        self.n_saved = n_saved
        self.loaded_from: Path | None = None

    def attach(self, engine: Engine) -> None:
        loader = getattr(engine, "data_loader", None)
        transform = getattr(getattr(loader, "dataset", None), "transform", None)
        objects = {**self.save_dict, "trainer": engine, "random_state": TrainingRandomState(transform)}
        if self.resume:
            self.loaded_from = latest_checkpoint(self.save_dir)
            if self.loaded_from is None:
                raise MissingFileError(
                    f"--resume true but {self.save_dir} holds no checkpoint (checkpoint_epoch=N.pt) to resume from; "
                    "start a new training without --resume."
                )
            logger.info(f"resuming from {self.loaded_from}")
            CheckedCheckpointLoader(
                load_path=str(self.loaded_from),
                load_dict=objects,
                map_location=self.map_location,
                option="resume checkpoint",
                optional=("random_state",),
            ).attach(engine)
        if _rank() == 0:
            from ignite.engine import Events

            self.save_dir.mkdir(parents=True, exist_ok=True)
            CheckpointSaver(
                save_dir=str(self.save_dir),
                save_dict=objects,
                file_prefix="",
                save_interval=self.save_interval,
                n_saved=self.n_saved,
                epoch_level=True,
            ).attach(engine)
            engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self._drop_older)

    def _drop_older(self, engine: Engine) -> None:
        # The saver only rotates the files it wrote itself. Files of an earlier run (the checkpoint a resumed run
        # started from, or a stale one of a longer run) would later mislead latest_checkpoint: remove them once
        # this run has saved its own.
        keep = {engine.state.epoch - i * self.save_interval for i in range(self.n_saved)}
        for path in self.save_dir.glob("checkpoint_epoch=*.pt"):
            match = _STEP.search(path.name)
            if match is not None and int(match.group(2)) not in keep:
                logger.info(f"removing the checkpoint of an earlier run: {path}")
                path.unlink(missing_ok=True)


class LossProgressBar:
    """An ignite ``ProgressBar`` (tqdm) over the iterations of each epoch showing the loss and its terms.

    Args:
        persist: keep the finished bar of each epoch on screen.
        output_transform: maps ``engine.state.output`` to the dict of values shown; defaults to
            :func:`neurolink_monai.losses.from_loss_terms`.
    """

    def __init__(self, persist: bool = True, output_transform: Any = None) -> None:
        from ignite.handlers import ProgressBar

        from neurolink_monai.losses import from_loss_terms

        self.bar = ProgressBar(persist=persist)
        self.output_transform = output_transform or from_loss_terms()

    def attach(self, engine: Engine) -> None:
        self.bar.attach(engine, output_transform=self.output_transform)


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return 0


class ValidationState:
    """Checkpointable best-metric state of a validation evaluator, so that a resumed training keeps it.

    Put it in the trainer's ``CheckpointSaver`` ``save_dict`` (and the resume ``load_dict``). It stores the
    evaluator's ``best_metric`` / ``best_metric_epoch`` and, when ``key_metric_saver`` (the evaluator's
    ``CheckpointSaver`` of the best model) is given, the list of best checkpoints it keeps, so that after a resume
    the best model is only replaced by a better one.

    Args:
        evaluator: the validation ``SupervisedEvaluator``.
        key_metric_saver: the evaluator's ``CheckpointSaver`` with ``save_key_metric=True``, or None.
    """

    def __init__(self, evaluator: Any, key_metric_saver: Any = None) -> None:
        self.evaluator = evaluator
        self.key_metric_saver = key_metric_saver

    def _key_checkpoint(self) -> Any:
        # MONAI keeps ignite's key-metric Checkpoint private; CheckpointSaver.load_state_dict is its public setter.
        return getattr(self.key_metric_saver, "_key_metric_checkpoint", None)

    def state_dict(self) -> dict[str, Any]:
        state = self.evaluator.state
        out: dict[str, Any] = {
            "best_metric": float(getattr(state, "best_metric", -1.0)),
            "best_metric_epoch": int(getattr(state, "best_metric_epoch", -1)),
        }
        ckpt = self._key_checkpoint()
        if ckpt is not None:
            out["key_metric_saved"] = [[float(p), str(f)] for p, f in ckpt.state_dict()["_saved"]]
        return out

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.evaluator.state.best_metric = float(state_dict["best_metric"])
        self.evaluator.state.best_metric_epoch = int(state_dict["best_metric_epoch"])
        saved = state_dict.get("key_metric_saved")
        if saved is not None and self.key_metric_saver is not None:
            self.key_metric_saver.load_state_dict({"_saved": [(float(p), str(f)) for p, f in saved]})


def _as_list(value: Any) -> list[float]:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().reshape(-1).tolist()
    elif isinstance(value, (int, float)):
        value = [value]
    return [float(v) for v in value]


def _detail_column(details: Any, handler: Any) -> list[float]:
    """Per-case values of one metric from ``metric_details``: ``(N,)``, ``(N, 1)``, or ``(N, K)`` buffers that hold
    one column per name of ``handler.metric_fn.metric_names`` (the column of its ``metric_name`` is taken)."""
    data = torch.as_tensor(details).detach().cpu().float()
    if data.ndim <= 1:
        return _as_list(data)
    data = data.reshape(data.shape[0], -1)
    if data.shape[1] == 1:
        return _as_list(data[:, 0])
    fn = getattr(handler, "metric_fn", None)
    names = getattr(fn, "metric_names", None)
    chosen = getattr(fn, "metric_name", None)
    if isinstance(chosen, (list, tuple)) and len(chosen) == 1:
        chosen = chosen[0]
    if names and isinstance(chosen, str) and chosen in names and len(names) == data.shape[1]:
        return _as_list(data[:, list(names).index(chosen)])
    return _as_list(torch.nanmean(data, dim=1))  # e.g. MeanDice over several channels


def _fmt(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


class EvaluationReport:
    """Write per-case and mean metrics of an evaluator run as CSV and JSON, and print them as a table.

    At every iteration the case names (input stems) are collected from ``engine.state.batch``; at the end the
    per-case values come from ``engine.state.metric_details`` (metric handlers with ``save_details=True``) and the
    means from ``engine.state.metrics``. Files (atomic writes), in ``output_dir``:

    - ``metrics.csv``: one row per case, then a ``mean`` row; one column per metric;
    - ``metrics.json``: ``{"mean": {metric: value}, "cases": [{"case": stem, metric: value, ...}], "num_cases": N}``.

    Args:
        output_dir: destination folder (created if needed).
        metrics: metric names to report, or a mapping name -> metric handler (e.g.
            ``"$dict(@validate#key_metric, **@validate#additional_metrics)"``), which lets the report pick the right
            column of handlers whose per-case details hold several scores; None reports every metric with details.
        image_key: batch key whose metadata names the case.
        prefix: file name prefix (``metrics`` gives ``metrics.csv``/``metrics.json``).
        print_table: print the table to stdout (also logged).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        metrics: Sequence[str] | Mapping[str, Any] | None = None,
        image_key: str = "image",
        prefix: str = "metrics",
        print_table: bool = True,
    ) -> None:
        self.output_dir = check_output_dir(output_dir)
        self.handlers: dict[str, Any] = dict(metrics) if isinstance(metrics, Mapping) else {}
        self.metrics = None if metrics is None else list(metrics)
        self.image_key = image_key
        self.prefix = prefix
        self.print_table = bool(print_table)
        self.cases: list[str] = []
        self.report: dict[str, Any] | None = None

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self._write)

    def _reset(self, engine: Engine) -> None:
        self.cases = []

    def _collect(self, engine: Engine) -> None:
        batch = engine.state.batch
        items = batch if isinstance(batch, list) else [batch]
        for item in items:
            img = item.get(self.image_key) if isinstance(item, Mapping) else None
            name = describe_source(img, "")
            self.cases.append(input_stem(name) if name else f"case_{len(self.cases):03d}")

    def _write(self, engine: Engine) -> None:
        if _rank() != 0:
            return
        details = dict(getattr(engine.state, "metric_details", {}) or {})
        names = self.metrics if self.metrics is not None else [k for k in engine.state.metrics if k in details]
        per_case: dict[str, list[float]] = {}
        for name in names:
            values = _detail_column(details[name], self.handlers.get(name)) if name in details else []
            if len(values) != len(self.cases):
                logger.warning(f"metric {name!r}: {len(values)} per-case values for {len(self.cases)} cases; left out.")
                continue
            per_case[name] = values
        means = {
            name: float(_as_list(engine.state.metrics[name])[0]) for name in per_case if name in engine.state.metrics
        }
        rows = [{"case": case, **{n: per_case[n][i] for n in per_case}} for i, case in enumerate(self.cases)]
        self.report = {"num_cases": len(self.cases), "mean": means, "cases": rows}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.report, indent=2, allow_nan=True) + "\n"
        atomic_write_bytes(self.output_dir / f"{self.prefix}.json", text.encode("utf-8"))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["case", *per_case])
        for row in rows:
            writer.writerow([row["case"], *(_fmt(row[n]) for n in per_case)])
        writer.writerow(["mean", *(_fmt(means.get(n, float("nan"))) for n in per_case)])
        atomic_write_bytes(self.output_dir / f"{self.prefix}.csv", buf.getvalue().encode("utf-8"))
        logger.info(f"wrote {self.output_dir / (self.prefix + '.csv')} and {self.prefix}.json ({len(rows)} cases)")
        if self.print_table:
            print(self.format_table(), flush=True)

    def format_table(self) -> str:
        """The last report as a fixed-width text table (cases, then the mean)."""
        if self.report is None:
            return ""
        names = list(self.report["mean"]) or [
            k for k in (self.report["cases"][0] if self.report["cases"] else {}) if k != "case"
        ]
        width = max([len("case"), len("mean")] + [len(r["case"]) for r in self.report["cases"]])
        cols = [max(len(n), 8) for n in names]
        lines = ["  ".join(["case".ljust(width), *(n.rjust(c) for n, c in zip(names, cols))])]
        lines.append("-" * len(lines[0]))
        for row in self.report["cases"]:
            lines.append("  ".join([row["case"].ljust(width), *(_fmt(row[n]).rjust(c) for n, c in zip(names, cols))]))
        lines.append("-" * len(lines[0]))
        mean = self.report["mean"]
        lines.append("  ".join(["mean".ljust(width), *(_fmt(mean.get(n)).rjust(c) for n, c in zip(names, cols))]))
        return "\n".join(lines)
