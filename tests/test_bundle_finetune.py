# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Labels from SWC traces, folders of traced stacks, fine-tuning from the shipped weights, the DIADEM scorer."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai.transforms import Compose

from neurolink_monai.bundle_utils import (
    CheckpointError,
    LoadLabeld,
    MissingFileError,
    image_preprocessing_from_config,
    load_datalist,
    load_pretrained,
    paired_datalist,
    read_checkpoint,
    resolve_dataset_dir,
)
from neurolink_monai.data.synthetic import generate_dataset
from neurolink_monai.io import write_swc, write_tiff_stack
from neurolink_monai.metrics import diadem_score, find_diadem_jar
from neurolink_monai.networks import NeuroLinkNet

from helpers import CONFIGS, REPO, bundle_net, straight_swc

JAR = Path(os.environ.get("NEUROLINK_SHARED", REPO.parent / "shared")) / "reference" / "diadem" / "DiademMetric.jar"


def _chain(n: int = 30, y: float = 10.0, z: float = 4.0) -> np.ndarray:
    """A straight trace of ``n`` nodes along x from x = 2."""
    return straight_swc(2, n + 1, y, z)


@pytest.fixture
def traced_folder(tmp_path) -> Path:
    """Two stacks with SWC traces, one stack without (ignored), one stray SWC (ignored)."""
    rng = np.random.default_rng(0)
    for name in ("a", "b", "untraced"):
        write_tiff_stack(tmp_path / f"{name}.tif", rng.integers(0, 50, (8, 20, 40), dtype=np.uint8), spacing=(2, 1, 1))
    write_swc(tmp_path / "a.swc", _chain())
    write_swc(tmp_path / "b.swc", _chain(y=12.0))
    write_swc(tmp_path / "orphan.swc", _chain())
    return tmp_path


def test_paired_datalist_pairs_stacks_with_their_traces(traced_folder):
    pairs = paired_datalist(traced_folder)
    assert [Path(p["image"]).name for p in pairs] == ["a.tif", "b.tif"]
    assert [Path(p["label"]).name for p in pairs] == ["a.swc", "b.swc"]
    assert resolve_dataset_dir(str(traced_folder), REPO / "bundle") == str(traced_folder.absolute())
    for split in ("training", "validation", "test"):
        assert load_datalist(traced_folder, split, ["image", "label"]) == pairs


def test_folder_without_dataset_json_or_pairs_is_refused(tmp_path):
    with pytest.raises(MissingFileError, match="no dataset.json.*X.tif \\+ X.swc"):
        resolve_dataset_dir(str(tmp_path), REPO / "bundle")


def test_swc_label_is_rasterised_on_the_image_grid(traced_folder):
    d = Compose(image_preprocessing_from_config())({"image": str(traced_folder / "a.tif")})
    d["label"] = str(traced_folder / "a.swc")
    out = LoadLabeld("label")(d)
    label = out["label"]
    assert tuple(label.shape) == (1, 8, 20, 40)
    assert set(np.unique(np.asarray(label))) == {0, 1}
    assert label[0, 4, 10, 2:32].min() == 1 and label[0, 4, 2, :].max() == 0  # along the chain, not elsewhere
    assert isinstance(out["swc"], np.ndarray) and out["swc"].shape == (30, 7)  # kept for the direction targets


def test_image_label_still_loads_as_a_mask(tmp_path):
    mask = np.zeros((6, 10, 12), np.uint8)
    mask[3, 5, 2:10] = 1
    write_tiff_stack(tmp_path / "m.tif", mask)
    out = LoadLabeld("label")({"label": str(tmp_path / "m.tif")})
    assert tuple(out["label"].shape) == (1, 6, 10, 12) and float(out["label"].sum()) == 8


def test_load_pretrained_errors_name_the_file(tmp_path):
    net = NeuroLinkNet(features=(4, 8), kernel_size=3)
    with pytest.raises(CheckpointError, match="--pretrained_path .*missing.pt: no such file"):
        load_pretrained(net, tmp_path / "missing.pt")
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(CheckpointError, match="noise.pt"):
        load_pretrained(net, tmp_path / "noise.pt")
    torch.save(NeuroLinkNet(features=(8, 16), kernel_size=3).state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt"):
        load_pretrained(net, tmp_path / "other.pt")
    torch.save({"model": net.state_dict()}, tmp_path / "ckpt.pt")
    assert load_pretrained(NeuroLinkNet(features=(4, 8), kernel_size=3), tmp_path / "ckpt.pt") is not None


def test_damaged_checkpoint_bytes_always_give_a_checkpoint_error(tmp_path):
    """torch's unpickler raises many kinds of error on damaged bytes (KeyError, IndexError, struct.error, ...); each
    one must reach the user as a CheckpointError naming the file. Seeded random files, half of them behind a pickle
    protocol-2 header (as a truncated or overwritten legacy checkpoint starts)."""
    rng = np.random.default_rng(0)
    for i in range(400):
        path = tmp_path / f"damaged_{i}.pt"
        path.write_bytes((b"\x80\x02" if i % 2 else b"") + rng.bytes(int(rng.choice([8, 64, 256]))))
        with pytest.raises(CheckpointError, match=path.name):
            read_checkpoint(path)


@pytest.mark.slow
def test_finetune_workflow_starts_from_the_weights_and_leaves_them(tmp_path):
    synthetic = tmp_path / "synthetic"
    generate_dataset(synthetic, num_samples=4, shape=(24, 48, 48), seed=5, splits=(0.5, 0.25, 0.25), progress=False)
    traced = tmp_path / "traced"
    traced.mkdir()
    for entry in json.loads((synthetic / "dataset.json").read_text())["training"]:
        for key in ("image", "swc"):
            src = synthetic / entry[key]
            os.symlink(src, traced / (Path(entry["image"]).stem + src.suffix))
    pretrained = tmp_path / "pretrained.pt"
    torch.save(bundle_net("train.json", features=[4, 8]).state_dict(), pretrained)
    digest = hashlib.sha256(pretrained.read_bytes()).hexdigest()
    overrides = {
        "dataset_dir": str(traced),
        "synthetic_dir": str(synthetic),
        "pretrained_path": str(pretrained),
        "ckpt_dir": str(tmp_path / "out"),
        "log_dir": str(tmp_path / "runs"),
        "network_def#features": [4, 8],
        "patch_size": [16, 32, 32],
        "num_samples": 1,
        "val_roi_size": [24, 48, 48],
        "max_epochs": 1,
        "val_interval": 1,
        "real_repeats": 1,
    }
    wf = ConfigWorkflow(
        config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "finetune.json")],
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        **overrides,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    tuned = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    start = torch.load(pretrained, weights_only=True)
    assert tuned.keys() == start.keys()
    assert any(not torch.equal(tuned[k], start[k]) for k in start)  # it trained
    assert hashlib.sha256(pretrained.read_bytes()).hexdigest() == digest  # the starting weights are untouched


def test_finetune_config_parses():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / "finetune.json")])
    assert parser["validate"]["checkpoint_saver"]["save_final"] is True
    assert parser["validate"]["checkpoint_saver"]["save_key_metric"] is False
    assert parser["pretrained_path"].endswith("'models', 'model.pt')")
    assert "trained" in parser["ckpt_dir"]  # training writes beside, never over, the shipped weights


@pytest.mark.skipif(find_diadem_jar(JAR) is None, reason="DIADEM scorer (../shared/reference/diadem) or java absent")
def test_diadem_score_of_a_trace_against_itself_and_of_nothing(tmp_path):
    stem = _chain(60)
    branch = _chain(20, y=10.0)
    branch[:, 2], branch[:, 3] = 31.0, 11.0 + np.arange(20)  # leaves the stem at its middle node
    branch[:, 0] += 60
    branch[1:, 6] += 60
    branch[0, 6] = 30
    gold = np.concatenate([stem, branch])
    assert diadem_score(gold, gold, JAR) == pytest.approx(1.0)
    assert diadem_score(np.zeros((0, 7)), gold, JAR) == 0.0
    assert 0.0 < diadem_score(stem, gold, JAR) < 1.0  # the branch is missed


@pytest.mark.skipif(find_diadem_jar(JAR) is None, reason="DIADEM scorer (../shared/reference/diadem) or java absent")
def test_diadem_score_refuses_a_tree_the_scorer_reads_only_in_part(tmp_path):
    gold = _chain(60)
    gold[:, 4] = 1e-7
    clean = write_swc(tmp_path / "clean.swc", gold).read_text().splitlines()  # positional: "0.0000001"
    assert diadem_score(tmp_path / "clean.swc", gold, JAR) == pytest.approx(1.0)
    exponent = [line.replace("0.0000001", "1e-07") for line in clean]  # as other SWC writers emit it
    (tmp_path / "exponent.swc").write_text("\n".join(exponent) + "\n")
    with pytest.raises(ValueError, match=r"cannot read line 2 of .*exponent\.swc"):  # it would score nothing
        diadem_score(tmp_path / "exponent.swc", gold, JAR)
    second_tree = [
        f"{int(i) + 60} {' '.join(rest)} {int(p) + 60 if p != '-1' else -1}"
        for i, *rest, p in (line.split() for line in exponent[1:])
    ]
    (tmp_path / "second.swc").write_text("\n".join(clean + second_tree) + "\n")
    assert diadem_score(tmp_path / "second.swc", gold, JAR) == pytest.approx(1.0)  # past the scored first tree


def test_diadem_jar_lookup(tmp_path, monkeypatch):
    monkeypatch.delenv("NEUROLINK_DIADEM_JAR", raising=False)
    assert find_diadem_jar(tmp_path / "absent.jar") is None
    assert find_diadem_jar(None) is None
