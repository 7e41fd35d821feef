# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The bundle's evaluation workflow: per-case and mean metrics, and the report handler."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from neurolink_monai.bundle_utils import EvaluationReport, input_stem, load_datalist

from helpers import TINY, run_bundle


def test_evaluate_writes_per_case_and_mean_metrics(trained, tiny_dataset, capsys):
    root = trained["root"]
    run_bundle(
        ["train.json", "evaluate.json"],
        bundle_root=str(root),
        dataset_dir=str(tiny_dataset),
        **{k: v for k, v in TINY.items() if k != "val_interval"},
    )
    report = json.loads((root / "eval" / "metrics.json").read_text())
    test_stems = [input_stem(i["image"]) for i in load_datalist(tiny_dataset, "test")]
    assert [c["case"] for c in report["cases"]] == test_stems
    expected = {"mean_dice", "precision", "recall", "cldice", "betti0_error", "skeleton_breaks", "erl_fraction"}
    assert set(report["mean"]) == expected
    for name in ("mean_dice", "precision", "recall", "cldice"):
        values = [c[name] for c in report["cases"]]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert report["mean"][name] == pytest.approx(float(np.mean(values)), abs=1e-5)
    with open(root / "eval" / "metrics.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "case" and set(rows[0][1:]) == expected
    assert [r[0] for r in rows[1:]] == test_stems + ["mean"]
    out = capsys.readouterr().out
    assert "mean_dice" in out and test_stems[0] in out


def test_evaluation_report_picks_the_metric_column(tmp_path):
    from ignite.engine import Engine, Events
    from monai.data import MetaTensor

    from neurolink_monai.metrics import VoxelPRFHandler

    report = EvaluationReport(tmp_path, metrics={"recall": VoxelPRFHandler("recall")}, print_table=False)
    engine = Engine(lambda e, b: None)
    report.attach(engine)

    def results(e):  # what a VoxelPRFHandler leaves: (N, 4) details (precision, recall, f1, dice) and the mean
        e.state.metric_details = {"recall": torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]])}
        e.state.metrics["recall"] = 0.4

    engine.add_event_handler(Events.EPOCH_COMPLETED, results)
    batches = [
        [{"image": MetaTensor(torch.zeros(1, 2, 2, 2), meta={"filename_or_obj": f"/d/c{i}.tif"})}] for i in (1, 2)
    ]
    engine.run(batches, max_epochs=1)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert [c["case"] for c in data["cases"]] == ["c1", "c2"]
    assert [c["recall"] for c in data["cases"]] == pytest.approx([0.2, 0.6])
    assert data["mean"] == {"recall": 0.4}
    assert (tmp_path / "metrics.csv").read_text().splitlines()[-1] == "mean,0.4000"
