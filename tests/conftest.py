# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("NEUROLINK_SHARED", REPO_ROOT.parent / "shared"))
DIADEM_DIR = SHARED_DIR / "real" / "diadem_op_dev"


@pytest.fixture(scope="session")
def diadem_dir() -> Path:
    """The real DIADEM OP stacks beside the project root; tests using it skip when it is absent."""
    if not (DIADEM_DIR / "OP_1.tif").is_file():
        pytest.skip(f"real data not found at {DIADEM_DIR}")
    return DIADEM_DIR


@pytest.fixture
def one_torch_thread():
    """Run a test with one intra-op torch thread: tiny windows are much faster single-threaded on a shared 2-core box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """Six synthetic stacks of 24x48x48 voxels: 2 training, 2 validation, 2 test."""
    from neurolink_monai.data.synthetic import generate_dataset

    folder = tmp_path_factory.mktemp("tiny_dataset")
    generate_dataset(folder, num_samples=6, shape=(24, 48, 48), seed=3, splits=(0.34, 0.33, 0.33), progress=False)
    return folder


@pytest.fixture(scope="session")
def trained(tmp_path_factory, tiny_dataset) -> dict:
    """One epoch of the real training workflow, then a resumed second epoch (both with the tiny overrides); shared
    by the training, evaluation, inference and export tests."""
    from neurolink_monai.bundle_utils import latest_checkpoint

    from helpers import TINY, run_bundle

    root = tmp_path_factory.mktemp("bundle_root")
    first = run_bundle(["train.json"], bundle_root=str(root), dataset_dir=str(tiny_dataset), max_epochs=1, **TINY)
    trainer = first.parser.get_parsed_content("train#trainer")
    epoch_length = trainer.state.epoch_length
    ckpt1 = latest_checkpoint(root / "models" / "trained" / "checkpoints")
    best1 = first.parser.get_parsed_content("validate#evaluator").state.best_metric
    second = run_bundle(
        ["train.json"], bundle_root=str(root), dataset_dir=str(tiny_dataset), max_epochs=2, resume="true", **TINY
    )
    return {
        "root": root,
        "epoch_length": epoch_length,
        "ckpt1": ckpt1,
        "best1": best1,
        "first": first,
        "second": second,
    }
