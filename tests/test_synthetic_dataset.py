# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Synthetic dataset on disk: determinism, dataset.json, refusal/overwrite rules, ensure_dataset reuse, CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import load_decathlon_datalist

from neurolink_monai.data.synthetic import (
    MANIFEST_NAME,
    SyntheticConfig,
    ensure_dataset,
    generate_dataset,
    generate_sample,
    read_manifest,
    regenerate_sample,
    split_counts,
)
from neurolink_monai.data.synthetic.__main__ import main
from neurolink_monai.io import read_swc, read_tiff_stack
from neurolink_monai.transforms import SWCToMask

SHAPE = (16, 32, 32)
REPO_ROOT = Path(__file__).resolve().parents[1]


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synth") / "ds"
    cfg = SyntheticConfig(spacing=(2.0, 0.5, 0.5))
    path = generate_dataset(folder, num_samples=5, shape=SHAPE, seed=3, config=cfg, progress=False, previews=True)
    assert path == folder / "dataset.json"
    return folder


def test_split_counts():
    assert split_counts(24) == (16, 4, 4)
    assert split_counts(3) == (1, 1, 1)
    assert split_counts(2) == (1, 1, 0)
    assert split_counts(1) == (1, 0, 0)
    assert split_counts(3, (0.01, 0.98, 0.01)) == (1, 1, 1)
    assert split_counts(10, (1.0, 0.0, 0.0)) == (10, 0, 0)
    with pytest.raises(ValueError, match="summing to 1"):
        split_counts(10, (0.5, 0.5, 0.5))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 500), st.floats(0.05, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_split_counts_properties(n, w_train, w_val, w_test):
    total = w_train + w_val + w_test
    splits = (w_train / total, w_val / total, w_test / total)
    counts = split_counts(n, splits)
    assert sum(counts) == n and counts[0] >= 1 and min(counts) >= 0
    for k in (1, 2):
        if splits[k] == 0:
            assert counts[k] == 0
        elif n >= 3:
            assert counts[k] >= 1


def test_dataset_json_is_msd_style_and_loads_with_monai(dataset):
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "neurite"}
    assert (meta["numTraining"], meta["numValidation"], meta["numTest"]) == (3, 1, 1)
    assert meta["tensorImageSize"] == "3D" and meta["spacing"] == [2.0, 0.5, 0.5]
    names = []
    for key, n in (("training", 3), ("validation", 1), ("test", 1)):
        items = load_decathlon_datalist(dataset / "dataset.json", data_list_key=key)
        assert len(items) == n
        for item in items:
            assert set(item) == {"image", "label", "swc"}
            assert all(Path(v).is_file() and Path(v).is_absolute() for v in item.values())
            names.append(Path(item["image"]).stem)
    assert names == [f"synth_{i:03d}" for i in range(5)]
    assert sorted(p.name for p in (dataset / "previews").iterdir()) == [f"synth_{i:03d}.png" for i in range(5)]


def test_files_hold_the_generated_sample(dataset):
    cfg = SyntheticConfig(spacing=(2.0, 0.5, 0.5))
    sample = generate_sample(SHAPE, np.random.SeedSequence(3, spawn_key=(2,)), cfg)
    image, spacing = read_tiff_stack(dataset / "imagesTr" / "synth_002.tif")
    label, _ = read_tiff_stack(dataset / "labelsTr" / "synth_002.tif")
    assert image.dtype == np.uint16 and label.dtype == np.uint8
    np.testing.assert_array_equal(image, sample["image"])
    np.testing.assert_array_equal(label, sample["label"])
    np.testing.assert_allclose(spacing, (2.0, 0.5, 0.5), rtol=1e-5)
    swc = read_swc(dataset / "swc" / "synth_002.swc")
    np.testing.assert_array_equal(swc, sample["swc"])
    # the label file is the project's rasterisation of the SWC file on the image grid
    np.testing.assert_array_equal(label, SWCToMask(image.shape, spacing)(swc)[0])


def test_regenerate_sample_matches_the_files_and_adds_the_weak_windows(dataset, tmp_path):
    sample = regenerate_sample(dataset, 4)
    np.testing.assert_array_equal(sample["image"], read_tiff_stack(dataset / "imagesTr" / "synth_004.tif")[0])
    np.testing.assert_array_equal(sample["swc"], read_swc(dataset / "swc" / "synth_004.swc"))
    weak = sample["node_weak"]
    assert weak.shape == (len(sample["swc"]),) and weak.min() >= 0.0 and weak.max() <= 1.0
    with pytest.raises(ValueError, match=r"index must be an int in \[0, 5\)"):
        regenerate_sample(dataset, 5)
    with pytest.raises(ValueError, match="no synthetic_manifest.json"):
        regenerate_sample(tmp_path, 0)


def test_same_settings_give_the_same_bytes(dataset, tmp_path):
    again = tmp_path / "again"
    cfg = SyntheticConfig(spacing=(2.0, 0.5, 0.5))
    generate_dataset(again, num_samples=5, shape=SHAPE, seed=3, config=cfg, progress=False, previews=True)
    assert _digests(again) == _digests(dataset)
    other = tmp_path / "other"
    generate_dataset(other, num_samples=2, shape=SHAPE, seed=4, config=cfg, progress=False)
    assert _digests(other)["imagesTr/synth_000.tif"] != _digests(dataset)["imagesTr/synth_000.tif"]
    # sample i does not depend on the number of samples
    assert _digests(tmp_path / "again")["swc/synth_001.swc"] == _digests(dataset)["swc/synth_001.swc"]


def test_refuses_foreign_folder_unless_overwrite(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_dataset(folder, num_samples=2, shape=SHAPE, seed=0, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name != "mine"]  # no temporary folder left behind
    generate_dataset(folder, num_samples=2, shape=SHAPE, seed=0, progress=False, overwrite=True)
    assert (folder / "notes.txt").read_text() == "keep me"
    assert len(load_decathlon_datalist(folder / "dataset.json")) == 1
    # an empty folder is fine without overwrite
    empty = tmp_path / "empty"
    empty.mkdir()
    generate_dataset(empty, num_samples=2, shape=SHAPE, seed=0, progress=False)
    assert read_manifest(empty)["settings"]["num_samples"] == 2


def test_rewriting_own_folder_replaces_it(tmp_path):
    folder = tmp_path / "ds"
    generate_dataset(folder, num_samples=4, shape=SHAPE, seed=0, progress=False)
    generate_dataset(folder, num_samples=3, shape=SHAPE, seed=0, progress=False)
    assert not (folder / "imagesTr" / "synth_003.tif").exists()
    assert read_manifest(folder)["settings"]["num_samples"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_ensure_dataset_generates_once_then_reuses(tmp_path):
    folder = tmp_path / "bundle" / "data" / "synthetic"
    path = ensure_dataset(folder, num_samples=3, shape=SHAPE, seed=1, progress=False)
    assert path == folder / "dataset.json" and path.is_file()
    stamp = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    assert ensure_dataset(folder, num_samples=3, shape=SHAPE, seed=1, progress=False) == path
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == stamp
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["settings"]["seed"] == 1 and "generator_version" in manifest

    with pytest.raises(ValueError, match="seed: 1 -> 2"):
        ensure_dataset(folder, num_samples=3, shape=SHAPE, seed=2, progress=False, on_mismatch="error")
    ensure_dataset(folder, num_samples=3, shape=SHAPE, seed=2, progress=False)
    assert read_manifest(folder)["settings"]["seed"] == 2

    (folder / "swc" / "synth_000.swc").unlink()  # damaged: regenerated
    ensure_dataset(folder, num_samples=3, shape=SHAPE, seed=2, progress=False)
    assert (folder / "swc" / "synth_000.swc").is_file()
    assert sorted(p.name for p in folder.parent.iterdir()) == ["synthetic"]


def test_ensure_dataset_never_touches_foreign_files(tmp_path):
    (tmp_path / "data.tif").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="did not write|no synthetic_manifest"):
        ensure_dataset(tmp_path, num_samples=2, shape=SHAPE, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["data.tif"]
    with pytest.raises(ValueError, match="on_mismatch"):
        ensure_dataset(tmp_path / "x", num_samples=2, shape=SHAPE, on_mismatch="ignore")


def test_cli_main_refusal_and_overwrite(tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    args = ["--output-dir", str(folder), "--num-samples", "3", "--shape", *map(str, SHAPE), "--no-progress"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--difficulty", "hard", "--weak-fraction", "0.3"]) == 0
    settings = read_manifest(folder)["settings"]["config"]
    assert settings["weak_fraction"] == 0.3 and settings["weak_depth"] == SyntheticConfig.preset("hard").weak_depth
    with pytest.raises(SystemExit) as exc:
        main(["--output-dir", str(tmp_path / "bad"), "--weak-depth", "2", "--no-progress"])
    assert exc.value.code == 2 and "weak_depth" in capsys.readouterr().err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "--overwrite" in out and "--weak-fraction" in out and "--shape D H W" in out


def test_cli_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "neurolink_monai.data.synthetic"]
    out = tmp_path / "cli"
    run = subprocess.run(
        cmd + ["--output-dir", str(out), "--num-samples", "3", "--shape", "12", "24", "24", "--seed", "7"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "synthetic neurons" in run.stderr  # the tqdm progress bar
    assert str(out / "dataset.json") in run.stdout
    ref = tmp_path / "ref"
    generate_dataset(ref, num_samples=3, shape=(12, 24, 24), seed=7, progress=False)
    assert _digests(out) == _digests(ref)
