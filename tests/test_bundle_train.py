# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The bundle's training workflow run through monai.bundle with tiny overrides: checkpoints, resume, stale
checkpoints, the training batch (mask under ``label``, stacked target under ``target``) and the two-process (gloo)
multi-GPU config."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from neurolink_monai.bundle_utils import PrepareKeyedBatch, latest_checkpoint

from helpers import (
    CONFIGS,
    META,
    REPO,
    TINY,
    bundle_configs,
    bundle_net,
    bundle_workflow,
    exception_messages,
    run_bundle,
)


def test_training_writes_best_and_last_checkpoints(trained):
    root = trained["root"]
    assert (root / "models" / "trained" / "model.pt").is_file()
    assert not (root / "models" / "model.pt").exists()  # a training never writes over the shipped weights
    state = torch.load(root / "models" / "trained" / "model.pt", weights_only=True)
    net = bundle_net("train.json", features=[4, 8])
    net.load_state_dict(state)  # the best model is a plain state dict of the network
    assert trained["ckpt1"].name == "checkpoint_epoch=1.pt"
    assert any((root / "runs").iterdir())  # TensorBoard event files


def test_resume_continues_where_training_stopped(trained):
    root = trained["root"]
    second = trained["second"]
    trainer = second.parser.get_parsed_content("train#trainer")
    n = trained["epoch_length"]
    assert trainer.state.epoch == 2
    assert trainer.state.iteration == 2 * n  # the first epoch was restored, not rerun
    optimizer = second.parser.get_parsed_content("optimizer")
    steps = {int(s["step"]) for s in optimizer.state.values()}
    assert steps == {2 * n}  # AdamW moments of the first run were restored
    scheduler = second.parser.get_parsed_content("lr_scheduler")
    assert scheduler.last_epoch == 2
    # the last checkpoint replaces the one it resumed from
    assert [p.name for p in (root / "models" / "trained" / "checkpoints").glob("*.pt")] == ["checkpoint_epoch=2.pt"]
    evaluator = second.parser.get_parsed_content("validate#evaluator")
    assert evaluator.state.best_metric >= trained["best1"]


def test_a_new_training_replaces_stale_checkpoints(tmp_path, tiny_dataset):
    stale = tmp_path / "models" / "trained" / "checkpoints" / "checkpoint_epoch=7.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over by a longer, earlier run")
    run_bundle(["train.json"], bundle_root=str(tmp_path), dataset_dir=str(tiny_dataset), max_epochs=1, **TINY)
    assert [p.name for p in stale.parent.iterdir()] == ["checkpoint_epoch=1.pt"]
    assert latest_checkpoint(stale.parent).name == "checkpoint_epoch=1.pt"


def test_resume_without_checkpoint_fails_clearly(tmp_path, tiny_dataset):
    wf = bundle_workflow(["train.json"], bundle_root=str(tmp_path), dataset_dir=str(tiny_dataset), resume=True, **TINY)
    with pytest.raises(Exception) as info:
        wf.run()
    assert "holds no checkpoint" in "".join(exception_messages(info.value))


def test_training_batch_keeps_the_mask_as_label_and_stacks_the_target(tiny_dataset, tmp_path):
    wf = bundle_workflow(
        ["train.json"], bundle_root=str(tmp_path), dataset_dir=str(tiny_dataset), cache_rate=0.0, **TINY
    )
    sample = wf.parser.get_parsed_content("train#dataset")[0][0]  # first random crop of the first stack
    assert tuple(sample["label"].shape) == (1, 16, 32, 32)
    assert tuple(sample["target"].shape) == (5, 16, 32, 32)  # [label, dir_z, dir_y, dir_x, distance]
    assert torch.equal(sample["target"][:1], sample["label"])
    assert set(torch.unique(sample["label"]).tolist()) <= {0.0, 1.0}
    prepare = wf.parser.get_parsed_content("train#trainer").prepare_batch
    assert isinstance(prepare, PrepareKeyedBatch)
    image, target = prepare({k: v[None] for k, v in sample.items() if k in ("image", "label", "target")}, "cpu")
    assert image.shape == (1, 1, 16, 32, 32) and target.shape == (1, 5, 16, 32, 32)
    with pytest.raises(KeyError, match="no \\['target'\\]"):
        prepare({"image": image, "label": target[:, :1]})


def test_logging_handlers_are_named_for_the_multi_gpu_config(tiny_dataset, tmp_path):
    wf = bundle_workflow(["train.json"], bundle_root=str(tmp_path), dataset_dir=str(tiny_dataset), **TINY)
    logging = wf.parser.get_parsed_content("train#logging_handlers")
    assert [type(h).__name__ for h in logging] == ["StatsHandler", "TensorBoardStatsHandler", "LossProgressBar"]
    every_rank = wf.parser.get_parsed_content("train#handlers")
    assert wf.parser.get_parsed_content("train#trainer#train_handlers") == every_rank + logging
    multi_gpu = json.loads((CONFIGS / "multi_gpu_train.json").read_text())["train#trainer#train_handlers"]
    assert "@train#logging_handlers if dist.get_rank() == 0" in multi_gpu


@pytest.mark.slow
def test_multi_gpu_train_runs_with_two_gloo_processes(tiny_dataset, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--meta_file",
        META,
        "--config_file",
        str(bundle_configs("train.json", "multi_gpu_train.json")),
        "--bundle_root",
        str(tmp_path),
        "--dataset_dir",
        str(tiny_dataset),
        "--max_epochs",
        "1",
        "--logging_file",
        str(CONFIGS / "logging.conf"),
    ]
    for key, value in TINY.items():
        cmd += [f"--{key}", json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "models" / "trained" / "model.pt").is_file()
    assert (tmp_path / "models" / "trained" / "checkpoints" / "checkpoint_epoch=1.pt").is_file()
