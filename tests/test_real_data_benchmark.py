# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""benchmarks/real_data.py: weak stacks, leave-one-out folds, the classical rows and the tables, on tiny stacks."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neurolink_monai.io import read_tiff_stack, write_swc, write_tiff_stack

from helpers import bundle_net

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import real_data  # noqa: E402
import real_data_figure  # noqa: E402


@pytest.fixture
def op_folder(tmp_path) -> Path:
    """Three tiny OP-like stacks, each a bright neurite along x in Poisson background, with their gold SWCs."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "op"
    folder.mkdir()
    x = np.arange(4, 60)
    for k, y in zip((1, 2, 3), (10, 14, 18)):
        image = rng.poisson(3.0, size=(8, 28, 64)).astype(np.float64)
        image[3:6, y - 1 : y + 2, 4:60] += 150.0
        write_tiff_stack(folder / f"OP_{k}.tif", np.clip(image, 0, 255).astype(np.uint8), spacing=(1.0, 0.5, 0.5))
        gold = np.zeros((len(x), 7))
        gold[:, 0], gold[:, 1] = np.arange(1, len(x) + 1), 2
        gold[:, 2], gold[:, 3], gold[:, 4], gold[:, 5] = x, y, 4, 1.0
        gold[:, 6] = np.arange(0, len(x))
        gold[0, 6] = -1
        write_swc(folder / f"OP_{k}.swc", gold)
    return folder


def test_weak_stack_is_made_once_and_bright_is_the_original(op_folder, tmp_path):
    work = tmp_path / "work"
    assert real_data.stack_path(op_folder, work, "OP_1", "bright") == op_folder / "OP_1.tif"
    weak = real_data.stack_path(op_folder, work, "OP_1", "weak")
    image, spacing = read_tiff_stack(weak)
    original, _ = read_tiff_stack(op_folder / "OP_1.tif")
    assert image.dtype == np.uint8 and image.shape == original.shape and np.allclose(spacing, (1.0, 0.5, 0.5))
    assert image[3:6, 9:12, 4:60].mean() < original[3:6, 9:12, 4:60].mean()  # dimmer neurite
    stamp = weak.stat().st_mtime_ns
    real_data.stack_path(op_folder, work, "OP_1", "weak")
    assert weak.stat().st_mtime_ns == stamp


def test_fold_leaves_the_scored_stack_out(op_folder, tmp_path):
    folder = real_data.fold_dir(op_folder, tmp_path / "work", "OP_2")
    assert sorted(p.name for p in folder.iterdir()) == ["OP_1.swc", "OP_1.tif", "OP_3.swc", "OP_3.tif"]


def test_classical_rows_and_tables(op_folder, tmp_path):
    results = tmp_path / "results.json"
    argv = ["--data", str(op_folder), "--work-dir", str(tmp_path / "work"), "--results", str(results),
            "--methods", "classical", "--diadem-jar", str(tmp_path / "absent.jar")]  # fmt: skip
    assert real_data.main(argv) == 0
    records = json.loads(results.read_text())
    assert len(records) == 6 and {r["condition"] for r in records} == {"bright", "weak"}
    for r in records:
        assert set(real_data.METRICS) <= set(r)
        assert math.isnan(r["diadem"])  # no scorer given
        assert r["trees"] <= 3
        # the first tree is a subset of the nodes: it recovers no more of the gold
        assert r["tree1_node_recall"] <= r["node_recall"] + 1e-9
        if r["trees"] == 1:
            assert r["tree1_node_f1"] == r["node_f1"]
        assert sum(total for _, total in r["signal_recall"]) > 0
        # the nodes off the gold are exactly the node precision's misses
        assert r["traced_nodes"] - r["off_gold_nodes"] == pytest.approx(r["node_precision"] * r["traced_nodes"])
    bright = [r for r in records if r["condition"] == "bright"]
    assert all(r["node_f1"] > 0.8 for r in bright)
    table = real_data.format_tables(records)
    assert "| **classical** | mean |" in table and "**weak**" in table
    stamp = results.stat().st_mtime_ns
    assert real_data.main(argv) == 0  # all recorded: nothing is run again
    assert results.stat().st_mtime_ns == stamp


def test_seed_summary_puts_the_seeds_side_by_side(tmp_path, capsys):
    def row(method, condition, stack, value):
        return {"method": method, "condition": condition, "stack": stack, "node_f1": value, "tree1_node_f1": value,
                "diadem": value}  # fmt: skip

    files = []
    for seed, value in enumerate((0.5, 0.7)):
        rows = [row("loso", c, s, value) for c in real_data.CONDITIONS for s in real_data.STACKS]
        if seed == 1:
            rows += [row("classical", c, s, 0.1) for c in real_data.CONDITIONS for s in real_data.STACKS]
        files.append(tmp_path / f"seed{seed}.json")
        files[-1].write_text(json.dumps(rows))
    assert real_data.main(["--seeds", *map(str, files)]) == 0
    text = capsys.readouterr().out
    assert "| bright | OP_1 | 0.500 / 0.700 | 0.500 / 0.700 | 0.500 / 0.700 | 0.100 / 0.100 / 0.100 |" in text
    assert "| weak | mean | 0.500 / 0.700 (mean 0.600) |" in text


def test_signal_recall_bands_follow_the_image(tmp_path):
    # one gold line along x: bright for x < 32, absent beyond, in Poisson background
    rng = np.random.default_rng(1)
    image = rng.poisson(20.0, size=(8, 24, 64)).astype(np.float64)
    image[3:6, 11:14, :32] += 200.0
    path = tmp_path / "s.tif"
    write_tiff_stack(path, np.clip(image, 0, 255).astype(np.uint8), spacing=(1.0, 1.0, 1.0))
    gold = np.array([[1, 2, 4, 12, 4, 1, -1], [2, 2, 60, 12, 4, 1, 1]], dtype=float)
    write_swc(tmp_path / "g.swc", gold)
    nodes, signal = real_data.gold_signal(path, tmp_path / "g.swc")
    assert len(nodes) == 57 and (signal[nodes[:, 2] < 28] >= 16).all() and (signal[nodes[:, 2] > 36] < 4).all()
    assert 0.5 < np.median(signal[nodes[:, 2] > 36]) < 2.0  # pure noise reads about 1 sigma
    half = np.array([[1, 2, 4, 12, 4, 1, -1], [2, 2, 30, 12, 4, 1, 1]], dtype=float)
    bands = real_data.signal_recall(half, path, tmp_path / "g.swc")
    assert len(bands) == len(real_data.SIGNAL_BANDS) + 1 and sum(total for _, total in bands) == 57
    assert bands[-1][0] == bands[-1][1] > 20  # the bright half: all recovered
    assert bands[0][0] == 0 < bands[0][1]  # the dark half: none
    assert sum(hit for hit, _ in real_data.signal_recall(np.zeros((0, 7)), path, tmp_path / "g.swc")) == 0
    table = "\n".join(real_data.format_signal_table([{"method": "loso", "signal_recall": bands}]))
    assert "| loso | 0.00 |" in table and "| 1.00 |" in table
    by_stack = real_data.format_signal_by_stack([{"method": "loso", "condition": "weak", "stack": "OP_3",
                                                  "signal_recall": bands}])  # fmt: skip
    assert f"| loso | weak | OP_3 | 0 / {bands[0][1]} |" in by_stack


def test_off_gold_reads_the_recorded_stack_under_the_extra_nodes(tmp_path, capsys):
    # the gold traces one of two equally bright lines; the weak copy hides the second one in noise
    rng = np.random.default_rng(2)
    recorded = rng.poisson(20.0, size=(8, 32, 64)).astype(np.float64)
    recorded[3:6, 7:10, 4:60] += 200.0
    recorded[3:6, 23:26, 4:60] += 200.0
    write_tiff_stack(tmp_path / "OP_1.tif", np.clip(recorded, 0, 255).astype(np.uint8), spacing=(1.0, 1.0, 1.0))
    gold = tmp_path / "OP_1.swc"
    write_swc(gold, np.array([[1, 2, 4, 8, 4, 1, -1], [2, 2, 59, 8, 4, 1, 1]], dtype=float))
    line = np.array([[1, 2, 4, 8, 4, 1, -1], [2, 2, 59, 8, 4, 1, 1]], dtype=float)
    second = np.array([[3, 2, 4, 24, 4, 1, -1], [4, 2, 59, 24, 4, 1, 3]], dtype=float)
    noise = np.array([[3, 2, 20, 16, 1, 1, -1], [4, 2, 40, 16, 1, 1, 3]], dtype=float)
    alone = real_data.off_gold(line, gold)
    assert alone["traced_nodes"] == 56 and alone["off_gold_nodes"] == 0 and math.isnan(alone["off_gold_brightness"])
    both = real_data.off_gold(np.concatenate([line, second]), gold)
    assert both["traced_nodes"] == 112 and both["off_gold_nodes"] == 56
    assert 0.8 < both["off_gold_brightness"] < 1.2  # a neuron as bright as the gold's: unlabelled, not noise
    specks = real_data.off_gold(np.concatenate([line, noise]), gold)
    assert specks["off_gold_nodes"] == 21 and specks["off_gold_brightness"] < 0.05  # traced on the background
    records = [{"method": "loso", "condition": "weak", "stack": "OP_1", **both}, {"method": "classical",
               "condition": "bright", "stack": "OP_1", "signal_recall": [[0, 1]] * 5, **specks}]  # fmt: skip
    table = real_data.format_off_gold(records)
    assert table.splitlines()[2].startswith("| classical | bright | OP_1 | 77 | 21 | ")  # bright rows first
    assert "| loso | weak | OP_1 | 112 | 56 | " in table
    results = tmp_path / "r.json"
    results.write_text(json.dumps(records))
    assert real_data.main(["--signal-by-stack", "--results", str(results)]) == 0
    assert "| loso | weak | OP_1 | 112 | 56 |" in capsys.readouterr().out


def test_model_rows_keep_their_maps_and_retrace_rescores_them(op_folder, tmp_path):
    import torch

    ckpt = tmp_path / "random.pt"
    torch.manual_seed(0)
    torch.save(bundle_net().state_dict(), ckpt)
    results = tmp_path / "results.json"
    argv = ["--data", str(op_folder), "--work-dir", str(tmp_path / "work"), "--results", str(results),
            "--methods", "synthetic", "--conditions", "bright", "--stacks", "OP_1", "--synthetic-ckpt", str(ckpt),
            "--diadem-jar", str(tmp_path / "absent.jar")]  # fmt: skip
    assert real_data.main(argv) == 0
    (row,) = json.loads(results.read_text())
    out = tmp_path / "work" / "pred" / "synthetic" / "bright"
    assert {"OP_1_prob.tif", "OP_1_dir.tif", "OP_1_dist.tif", "OP_1.swc"} <= {p.name for p in out.iterdir()}
    assert real_data.main([*argv, "--retrace"]) == 0
    (again,) = json.loads(results.read_text())
    # a full run's seconds hold the network and its tracing, not timed apart: kept, not added to the new tracing
    assert again["seconds"] == row["seconds"] and again["trace_seconds"] > 0 and "network_seconds" not in again
    split = {**again, "seconds": 9.0, "network_seconds": 5.0}
    results.write_text(json.dumps([split]))
    assert real_data.main([*argv, "--retrace"]) == 0
    (resplit,) = json.loads(results.read_text())
    assert resplit["seconds"] == pytest.approx(5.0 + resplit["trace_seconds"])
    assert set(real_data.METRICS) <= set(again)
    assert real_data.main([*argv, "--retrace", "--gold-root"]) == 0
    (rooted,) = json.loads(results.read_text())
    assert rooted["trace_overrides"] == {"trace_soma_in_view": False, "trace_root": [4.0, 10.0, 4.0]}
    assert real_data.main([*argv, "--retrace", "--soma-in-view"]) == 0  # the default rooting: no overrides left
    assert "trace_overrides" not in json.loads(results.read_text())[0]
    figure = tmp_path / "figure.png"
    figure_argv = ["--data", str(op_folder), "--work-dir", str(tmp_path / "work"), "--method", "synthetic",
                   "--stack", "OP_1", "--output", str(figure)]  # fmt: skip
    assert real_data_figure.main(figure_argv) == 0
    assert Image.open(figure).size == (3 * 64, 28)  # gold, model and classical panels side by side
    with pytest.raises(SystemExit):
        real_data_figure.main([*figure_argv[:-1], str(tmp_path / "figure.jpg")])
    with pytest.raises(SystemExit, match="no stored maps"):
        real_data_figure.main([*figure_argv[:-3], "OP_2", "--output", str(figure)])
