# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""benchmarks/ablation.py end to end with tiny overrides: trains two variants through the bundle's training
workflow, infers through its inference workflow, scores, writes the records, resumes, and prints the tables."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from neurolink_monai.data.synthetic import generate_dataset

REPO = Path(__file__).resolve().parents[1]


def _ablation_module():
    spec = importlib.util.spec_from_file_location("ablation", REPO / "benchmarks" / "ablation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ablation"] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_variants_switch_one_component_at_a_time():
    ablation = _ablation_module()
    assert list(ablation.VARIANTS) == ["unet", "dsconv", "dsconv_cont", "neurolink"]
    v = ablation.VARIANTS
    assert v["unet"]["network_def#dsconv"] is False and v["dsconv"]["network_def#dsconv"] is True
    assert {k: x for k, x in v["unet"].items() if k != "network_def#dsconv"} == {
        k: x for k, x in v["dsconv"].items() if k != "network_def#dsconv"
    }
    assert v["dsconv"]["loss#lambda_cont"] == 0.0 and "loss#lambda_cont" not in v["dsconv_cont"]
    assert v["dsconv_cont"]["network_def#multitask"] is False and v["neurolink"] == {"network_def#dsconv": True}
    cmd = ablation._command(("train.json", "train_full.json"), "training", {"network_def#features": [4, 8], "x": True})
    assert "--config_file \"['bundle/configs/train.json','bundle/configs/train_full.json']\"" in cmd
    assert cmd.endswith("--network_def#features '[4,8]' --x True")


def test_ablation_trains_evaluates_records_and_resumes(tmp_path, capsys):
    ablation = _ablation_module()
    data = tmp_path / "data"
    generate_dataset(data, num_samples=4, shape=(24, 48, 48), seed=5, splits=(0.5, 0.25, 0.25), progress=False)
    results = tmp_path / "ablation.json"
    overrides = [f"dataset_dir={data}", "network_def#features=[4,8]", "patch_size=[16,32,32]", "num_samples=1",
                 "val_roi_size=[24,48,48]", "max_epochs=1", "val_interval=1"]  # fmt: skip
    args = ["--seeds", "0", "--variants", "unet", "neurolink", "--results", str(results), "--work-dir",
            str(tmp_path / "work"), "--diadem", str(tmp_path / "no_diadem"), "--synthetic-test", "2",
            "--synthetic-shape", "24", "48", "48"]  # fmt: skip
    for item in overrides:
        args += ["--override", item]
    assert ablation.main(args) == 0
    out = capsys.readouterr().out
    assert "DIADEM stacks not found" in out and "| unet |" in out and "| neurolink |" in out

    records = json.loads(results.read_text())
    assert [(r["variant"], r["seed"], r["dataset"]) for r in records] == [
        ("unet", 0, "synthetic"),
        ("neurolink", 0, "synthetic"),
    ]
    for r in records:
        assert set(ablation.METRICS) <= set(r["metrics"])
        assert r["train_seconds"] > 0 and r["epochs"] == 1 and len(r["cases"]) == 2
        for name in ("precision", "recall", "f1", "cldice", "node_f1"):
            assert math.isnan(r["metrics"][name]) or 0.0 <= r["metrics"][name] <= 1.0
        assert all(0.0 <= c["weak_recall"] <= 1.0 or math.isnan(c["weak_recall"]) for c in r["cases"])
    assert records[0]["overrides"]["network_def#dsconv"] is False
    (tag,) = [p.name for p in (tmp_path / "work").iterdir() if p.name.startswith("cpu")]
    assert tag == ablation.run_tag("cpu", dict(ablation._override(item) for item in overrides))
    run_dir = tmp_path / "work" / tag / "neurolink_seed0"
    assert (run_dir / "models" / "model.pt").is_file()
    assert len(list((run_dir / "infer_synthetic").glob("*.swc"))) == 2

    stamp = results.stat().st_mtime_ns
    assert ablation.main(args) == 0  # everything recorded already: nothing is trained or evaluated again
    assert results.stat().st_mtime_ns == stamp
    assert ablation.main(["--table", "--results", str(results)]) == 0
    tables = capsys.readouterr().out
    assert "train min" in tables and "All variants, training and testing (preset `cpu`): seed 0: " in tables

    assert ablation.main(args + ["--rescore"]) == 0  # the stored outputs scored again give the same records
    rescored = json.loads(results.read_text())
    for old, new in zip(records, rescored):
        assert old["cases"] == new["cases"] or json.dumps(old["cases"]) == json.dumps(new["cases"])
        assert old["train_seconds"] == new["train_seconds"]


def test_table_reports_mean_and_spread_over_seeds():
    ablation = _ablation_module()
    metrics = {name: 0.5 for name in ablation.METRICS}
    records = [
        {"variant": "unet", "seed": s, "dataset": "synthetic", "preset": "cpu", "train_seconds": 60.0 * (s + 1),
         "metrics": {**metrics, "recall": r}}
        for s, r in ((0, 0.4), (1, 0.6))
    ]  # fmt: skip
    table = ablation.format_tables(records)
    assert "seeds 0, 1" in table
    assert "| unet | 0.500 ± 0.141 | 0.500 ± 0.000 |" in table  # recall: mean 0.5, sample std 0.1414
    assert "| 1.5 ± 0.7 |" in table
    assert table.rstrip().endswith("seed 0: 1.0 min, seed 1: 2.0 min.")
    assert ablation.seed_minutes([{**records[0], "eval_seconds": 30.0}] * 2) == {0: 2.0}  # trained once, tested twice


def test_a_run_folder_with_other_settings_is_not_reused(tmp_path):
    ablation = _ablation_module()
    run_dir = tmp_path / "cpu" / "neurolink_seed0"
    run_dir.mkdir(parents=True)
    (run_dir / "train.json").write_text(json.dumps({"overrides": {"network_def#dsconv": True, "seed": 0}}))
    preset = ablation.PRESETS["cpu"]
    assert ablation.train_variant(preset, "neurolink", 0, run_dir, {})["overrides"]["seed"] == 0  # same: reused
    with pytest.raises(ValueError, match="holds a training with other settings"):
        ablation.train_variant(preset, "neurolink", 0, run_dir, {"loss#lambda_dir": 0.2})
    assert ablation.run_tag("cpu", {}) == "cpu" and ablation.run_tag("cpu", {"a": 1}).startswith("cpu-")
    assert ablation.run_tag("cpu", {"a": 1}) != ablation.run_tag("cpu", {"a": 2})
