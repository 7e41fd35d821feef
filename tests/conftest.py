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
