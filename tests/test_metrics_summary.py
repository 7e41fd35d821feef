# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The per-case score records (segmentation_scores, reconstruction_scores) and centreline_recall on hand-computed
cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neurolink_monai.io import write_swc
from neurolink_monai.metrics import (
    RECONSTRUCTION_SCORES,
    SEGMENTATION_SCORES,
    centreline_recall,
    reconstruction_scores,
    segmentation_scores,
)

from helpers import straight_swc


def rod(shape=(5, 9, 30), x0=2, x1=27) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[2, 4, x0 : x1 + 1] = True
    return m


def test_segmentation_scores_perfect_and_cut():
    gold = rod()
    perfect = segmentation_scores(gold, gold, straight_swc(2, 27, y=4.0, z=2.0))
    assert tuple(perfect) == SEGMENTATION_SCORES
    assert perfect["precision"] == perfect["recall"] == perfect["f1"] == perfect["cldice"] == 1.0
    assert perfect["betti0_error"] == 0.0 and perfect["breaks"] == 0.0
    assert perfect["erl_fraction"] == pytest.approx(1.0)

    cut = gold.copy()
    cut[2, 4, 14] = False  # one voxel missing: two pieces, one break
    scores = segmentation_scores(cut, gold, straight_swc(2, 27, y=4.0, z=2.0))
    assert scores["precision"] == 1.0
    assert scores["recall"] == pytest.approx(25 / 26)
    assert scores["betti0_error"] == 1.0
    assert scores["breaks"] == 1.0
    assert scores["erl_fraction"] < 0.6  # two runs of ~12 voxels out of 25: (12^2 + 13^2) / 25^2 ~ 0.5


def test_segmentation_scores_skeletonises_gold_without_swc():
    gold = rod()
    cut = gold.copy()
    cut[2, 4, 14] = False
    assert segmentation_scores(cut, gold)["breaks"] == 1.0


def test_reconstruction_scores_identity_shift_and_empty(tmp_path):
    gold = straight_swc(0, 20, y=4.0, z=2.0)
    same = reconstruction_scores(gold, gold)
    assert tuple(same) == RECONSTRUCTION_SCORES
    assert same["ESA"] == 0.0 and same["PDS"] == 0.0 and same["node_f1"] == 1.0 and same["trees"] == 1.0

    shifted = gold.copy()
    shifted[:, 3] += 3.0  # 3 voxels off: every sample is "different structure" at threshold 2, matched at 4
    scores = reconstruction_scores(shifted, gold)
    assert scores["ESA"] == pytest.approx(3.0)
    assert scores["PDS"] == pytest.approx(1.0)
    assert scores["node_f1"] == 1.0
    assert reconstruction_scores(shifted, gold, tolerance=2.0)["node_f1"] == 0.0

    half = straight_swc(0, 10, y=4.0, z=2.0)
    path = write_swc(tmp_path / "half.swc", half)
    from_file = reconstruction_scores(path, gold)
    assert from_file["node_precision"] == 1.0 and from_file["node_recall"] == pytest.approx(
        15 / 21
    )  # gold x = 0..14 lie within 4 of x <= 10

    empty = reconstruction_scores(np.zeros((0, 7)), gold)
    assert math.isnan(empty["ESA"]) and empty["PDS"] == 1.0 and empty["node_f1"] == 0.0 and empty["trees"] == 0.0


def test_centreline_recall_counts_covered_nodes_and_selections():
    gold = rod()
    swc = straight_swc(2, 27, y=4.0, z=2.0)  # 26 nodes along x at y = 4, z = 2
    pred = gold.copy()
    pred[2, 4, 2:8] = False  # the first 6 nodes are missed
    assert centreline_recall(pred, swc) == pytest.approx(20 / 26)
    first_half = np.arange(26) < 13
    assert centreline_recall(pred, swc, first_half) == pytest.approx(7 / 13)
    assert centreline_recall(pred, swc, ~first_half) == 1.0
    assert math.isnan(centreline_recall(pred, swc, np.zeros(26, bool)))
    outside = swc.copy()
    outside[:, 2] += 10  # x = 12..37: 28..29 are background, 30..37 lie outside the image (missed, no error)
    assert centreline_recall(gold, outside) == pytest.approx(16 / 26)
    with pytest.raises(ValueError, match="one entry per SWC node"):
        centreline_recall(pred, swc, np.ones(5, bool))
