# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The classical reference tracer: a bright neurite in noise is traced as one tree; specks and constant stacks are
not turned into neurites."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from neurolink_monai.io import read_swc, write_tiff_stack
from neurolink_monai.metrics import node_prf
from neurolink_monai.tracing import ClassicalConfig, classical_probability, classical_threshold, trace_classical


def _stack(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A uint8 stack with a bright neurite along x (with a dimmer stretch), Poisson background, one bright speck."""
    rng = np.random.default_rng(seed)
    image = rng.poisson(4.0, size=(16, 48, 96)).astype(np.float64)
    x = np.arange(6, 90)
    image[7:10, 23:26, 6:90] += np.where((x > 40) & (x < 50), 40.0, 120.0)[None, None, :]
    image[3, 5, 70] = 250.0  # a hot pixel
    gold = np.zeros((len(x), 7))
    gold[:, 0] = np.arange(1, len(x) + 1)
    gold[:, 1] = 3
    gold[:, 2], gold[:, 3], gold[:, 4], gold[:, 5] = x, 24, 8, 1.5
    gold[:, 6] = np.arange(0, len(x))
    gold[0, 6] = -1
    return np.clip(image, 0, 255).astype(np.uint8), gold


def test_bright_neurite_is_one_tree_and_the_speck_is_gone():
    image, gold = _stack()
    swc = trace_classical(image, spacing=(1.0, 1.0, 1.0))
    assert (swc[:, 6] == -1).sum() == 1
    scores = node_prf(swc, gold, tolerance=3.0)
    assert scores["recall"] > 0.9 and scores["precision"] > 0.9


def test_probability_is_half_at_the_threshold_and_small_components_fall_below():
    image, _ = _stack()
    prob = classical_probability(image, config=ClassicalConfig(sigma=1.0, min_component_voxels=50))
    assert prob.dtype == np.float32 and prob.shape == image.shape
    assert prob[8, 24, 20] >= 0.5  # the neurite
    assert prob[3, 5, 70] < 0.5  # the hot pixel, a component far smaller than 50 voxels
    assert 0.0 <= prob.min() and prob.max() <= 1.0


def test_threshold_is_the_higher_of_otsu_and_the_noise_rule():
    rng = np.random.default_rng(1)
    noise_only = rng.normal(100.0, 5.0, size=(8, 32, 32)).astype(np.float32)
    noise_only[4, 16, 16] = 200.0  # Otsu alone would split the noise
    thr = classical_threshold(noise_only, noise_k=6.0)
    assert thr >= 100.0 + 6.0 * 4.5


@pytest.mark.parametrize("value", [0, 7])
def test_constant_stack_is_refused(value):
    with pytest.raises(ValueError, match="constant"):
        classical_probability(np.full((4, 8, 8), value, dtype=np.uint8))


@pytest.mark.parametrize("kwargs", [{"sigma": -1.0}, {"noise_k": float("nan")}, {"min_component_voxels": 2.5}])
def test_bad_config(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ClassicalConfig(**kwargs)


def test_cli_classical(tmp_path):
    image, gold = _stack()
    write_tiff_stack(tmp_path / "stack.tif", image, spacing=(1.0, 1.0, 1.0))
    out = tmp_path / "stack.swc"
    cmd = [sys.executable, "-m", "neurolink_monai.tracing", str(tmp_path / "stack.tif"), "--classical", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    swc = read_swc(out)
    assert (swc[:, 6] == -1).sum() == 1 and node_prf(swc, gold, tolerance=3.0)["f1"] > 0.9


def test_cli_classical_traces_as_the_classical_reference(tmp_path):
    """--classical takes all of the reference's tracing settings (CLASSICAL_TRACE): a short piece beside the neurite,
    longer than the tracer's default minimum length (6) but shorter than the reference's (20), does not join it."""
    image, _ = _stack()
    image[6:11, 32:38, 20:34] = 200
    write_tiff_stack(tmp_path / "stack.tif", image, spacing=(1.0, 1.0, 1.0))
    out = tmp_path / "stack.swc"
    cmd = [sys.executable, "-m", "neurolink_monai.tracing", str(tmp_path / "stack.tif"), "--classical", "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    reference = trace_classical(image, spacing=(1.0, 1.0, 1.0))
    assert (reference[:, 6] == -1).sum() == 1
    np.testing.assert_allclose(read_swc(out), reference, atol=1e-3)


def test_cli_classical_constant_stack_names_the_file(tmp_path):
    write_tiff_stack(tmp_path / "flat.tif", np.zeros((4, 8, 8), np.uint8))
    cmd = [sys.executable, "-m", "neurolink_monai.tracing", str(tmp_path / "flat.tif"), "--classical", "-o",
           str(tmp_path / "flat.swc")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "flat.tif" in proc.stderr.strip().splitlines()[-1] and "constant" in proc.stderr
    assert not (tmp_path / "flat.swc").exists()
