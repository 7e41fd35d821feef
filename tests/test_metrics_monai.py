# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""MONAI cumulative metrics and ignite handlers of neurolink_monai.metrics, in plain loops, an ignite Engine and a
MONAI SupervisedEvaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset, decollate_batch
from monai.engines import SupervisedEvaluator
from monai.handlers import from_engine
from monai.transforms import AsDiscreted

from neurolink_monai.metrics import (
    BettiErrorHandler,
    BettiErrorMetric,
    ClDiceHandler,
    ClDiceMetric,
    SkeletonBreaksMetric,
    SkeletonContinuityHandler,
    SkeletonContinuityMetric,
    VoxelPRFHandler,
    VoxelPRFMetric,
)


def line_pair() -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 1, 5, 5, 30) gold: a 20-voxel line; pred: item 0 the full line (clDice 1), item 1 its first half
    (Tprec 1, Tsens 1/2, clDice 2/3)."""
    gold = torch.zeros(2, 1, 5, 5, 30)
    gold[:, 0, 2, 2, 5:25] = 1
    pred = gold.clone()
    pred[1, 0, 2, 2, 15:25] = 0
    return pred, gold


def test_cldice_metric_batches_and_lists():
    pred, gold = line_pair()
    metric = ClDiceMetric()
    out = metric(pred, gold)
    assert out.shape == (2, 3) and torch.allclose(out[:, 0], torch.tensor([1.0, 2 / 3]))
    metric(list(pred), list(gold))  # decollated channel-first items are accepted too
    assert metric.aggregate().item() == pytest.approx((1 + 2 / 3) / 2)
    assert metric.get_buffer().shape == (4, 3)
    metric.reset()
    metric(pred[1:], gold[1:])
    assert metric.aggregate().item() == pytest.approx(2 / 3)
    both = ClDiceMetric(metric_name=("tprec", "tsens"), reduction="none")
    both(pred, gold)
    tprec, tsens = both.aggregate()
    assert tprec.flatten().tolist() == [1.0, 1.0] and tsens.flatten().tolist() == pytest.approx([1.0, 0.5])


def test_voxel_prf_metric_one_hot_and_names():
    pred, gold = line_pair()
    one_hot_pred = torch.cat([1 - pred, pred], dim=1)  # (B, 2, ...) background/foreground
    metric = VoxelPRFMetric(metric_name=["precision", "recall", "dice"])
    metric(one_hot_pred, gold)
    precision, recall, dice = metric.aggregate()
    assert (
        precision.item() == 1.0
        and recall.item() == pytest.approx(0.75)
        and dice.item() == pytest.approx((1 + 2 * 10 / 30) / 2)
    )
    with pytest.raises(ValueError, match="metric_name must be among"):
        VoxelPRFMetric(metric_name="accuracy")


def test_betti_and_continuity_metrics():
    pred, gold = line_pair()
    betti = BettiErrorMetric(metric_name=("betti0_error", "betti1_error"))
    cut = gold.clone()
    cut[0, 0, 2, 2, 15] = 0  # item 0: two pieces (betti0 error 1)
    betti(cut, gold)
    b0, b1 = betti.aggregate()
    assert b0.item() == pytest.approx(0.5) and b1.item() == 0.0
    cont = SkeletonContinuityMetric(metric_name=("breaks", "erl_fraction"), reduction="none")
    cont(cut, gold)
    breaks, erl_fraction = cont.aggregate()
    assert breaks.flatten().tolist() == [1.0, 0.0]
    assert erl_fraction[1].item() == pytest.approx(1.0) and erl_fraction[0].item() < 0.6
    assert SkeletonBreaksMetric is SkeletonContinuityMetric


def test_continuity_metric_skips_empty_gold():
    pred, gold = line_pair()
    gold[1] = 0
    metric = SkeletonContinuityMetric(metric_name="erl_fraction", get_not_nans=True)
    metric(pred, gold)
    value, not_nans = metric.aggregate()
    assert value.item() == pytest.approx(1.0) and not_nans.item() == 1
    assert math.isnan(metric.get_buffer()[1, 0].item())


def test_metric_input_errors():
    pred, gold = line_pair()
    with pytest.raises(ValueError, match="binary mask.*AsDiscrete"):
        ClDiceMetric()(pred * 0.5, gold)
    with pytest.raises(ValueError, match="split_outputs"):
        ClDiceMetric()(torch.zeros(2, 5, 5, 5, 30), gold)
    with pytest.raises(ValueError, match="same shape"):
        VoxelPRFMetric()(pred[:, :, :4], gold)
    with pytest.raises(ValueError, match="needs the ground truth"):
        ClDiceMetric()(pred)
    with pytest.raises(ValueError, match="spatial dims"):
        SkeletonContinuityMetric()(pred[:, :, 2], gold[:, :, 2])


def test_handlers_in_ignite_engine():
    pred, gold = line_pair()
    batches = [{"pred": pred, "label": gold}, {"pred": gold, "label": gold}]
    engine = Engine(lambda eng, batch: batch)
    transform = from_engine(["pred", "label"])
    ClDiceHandler(output_transform=transform).attach(engine, "cldice")
    VoxelPRFHandler("recall", output_transform=transform).attach(engine, "recall")
    BettiErrorHandler("betti0_error", output_transform=transform).attach(engine, "betti0")
    SkeletonContinuityHandler("erl_fraction", output_transform=transform).attach(engine, "erl_fraction")
    engine.run(batches, max_epochs=1)
    m = engine.state.metrics
    assert m["cldice"] == pytest.approx((1 + 2 / 3 + 1 + 1) / 4)
    assert m["recall"] == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert m["betti0"] == 0.0 and m["erl_fraction"] == pytest.approx((1 + 9**2 / 19**2 + 1 + 1) / 4)
    assert engine.state.metric_details["cldice"].shape == (4, 3)


def test_handlers_in_supervised_evaluator():
    gold = torch.zeros(1, 5, 5, 30)
    gold[0, 2, 2, 5:25] = 1
    half = gold.clone()
    half[0, 2, 2, 15:25] = 0
    # the "network" is the identity and the image holds probabilities, thresholded by the post-transform
    data = [{"image": 0.9 * gold, "label": gold}, {"image": 0.2 + 0.6 * half, "label": gold}]
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(data), batch_size=2),
        network=torch.nn.Identity(),
        postprocessing=AsDiscreted(keys="pred", threshold=0.5),
        key_val_metric={"val_cldice": ClDiceHandler(output_transform=from_engine(["pred", "label"]))},
        additional_metrics={
            "val_f1": VoxelPRFHandler(output_transform=from_engine(["pred", "label"])),
            "val_breaks": SkeletonContinuityHandler(output_transform=from_engine(["pred", "label"])),
        },
    )
    evaluator.run()
    m = evaluator.state.metrics
    assert m["val_cldice"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["val_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["val_breaks"] == 0.0
    assert evaluator.state.best_metric == pytest.approx(m["val_cldice"])


def test_metric_matches_function_on_random_blobs():
    from neurolink_monai.metrics import betti_errors, cldice

    rng = np.random.default_rng(0)
    pred = torch.as_tensor(rng.random((3, 1, 12, 12, 12)) > 0.7).float()
    gold = torch.as_tensor(rng.random((3, 1, 12, 12, 12)) > 0.7).float()
    cl = ClDiceMetric(reduction="none")
    cl(pred, gold)
    expected = [cldice(p[0].numpy(), g[0].numpy()) for p, g in zip(pred, gold)]
    assert cl.aggregate().flatten().tolist() == pytest.approx(expected, abs=1e-6)
    be = BettiErrorMetric("betti1_error", reduction="none")
    be(list(decollate_batch(pred)), list(decollate_batch(gold)))
    expected = [betti_errors(p[0].numpy(), g[0].numpy())["betti1_error"] for p, g in zip(pred, gold)]
    assert be.aggregate().flatten().tolist() == expected
