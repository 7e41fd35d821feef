# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""LossTermsHandler puts NeuroLinkLoss's terms into real ignite / MONAI engines, StatsHandler and TensorBoard."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedTrainer
from monai.handlers import StatsHandler, TensorBoardStatsHandler
from scipy import ndimage as ndi

from neurolink_monai.losses import LossTermsHandler, NeuroLinkLoss, from_loss_terms

SHAPE = (8, 16, 8)
TERMS = ("seg", "continuity", "direction", "distance")


def stacked_target() -> torch.Tensor:
    """(5, D, H, W) [label, dir_z, dir_y, dir_x, distance] of a straight neurite along H."""
    zz, yy, xx = np.indices(SHAPE)
    label = ((zz - 4) ** 2 + (xx - 4) ** 2 <= 2) & (yy >= 2) & (yy < 14)
    direction = np.zeros((3, *SHAPE), dtype=np.float32)
    direction[1][ndi.binary_dilation(label)] = 1.0
    distance = ndi.distance_transform_edt(label)[None].astype(np.float32)
    return torch.from_numpy(np.concatenate([label[None].astype(np.float32), direction, distance]))


def test_plain_ignite_engine_gets_iteration_terms_and_epoch_means():
    loss = NeuroLinkLoss()
    target = stacked_target()[None]
    preds = [torch.randn(1, 5, *SHAPE, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    seen: list[dict[str, float]] = []

    def step(engine: Engine, batch: torch.Tensor) -> float:
        value = loss(batch, target)
        seen.append(loss.last_terms)
        return value.item()

    engine = Engine(step)
    LossTermsHandler(loss).attach(engine)
    engine.run(preds, max_epochs=2)
    assert engine.state.loss_terms == {f"loss_{k}": v for k, v in seen[-1].items()}
    assert engine.state.output == pytest.approx(sum(seen[-1].values()))  # a scalar output is left alone
    for term in TERMS:  # the running mean of the second epoch only
        expected = np.mean([s[term] for s in seen[3:]])
        assert engine.state.metrics[f"loss_{term}_epoch"] == pytest.approx(expected)


def test_dict_output_gets_the_terms_and_from_loss_terms_reads_them():
    loss = NeuroLinkLoss(lambda_dir=0.0, lambda_dist=0.0)
    target = stacked_target()[None, :1]

    def step(engine: Engine, batch: torch.Tensor) -> dict:
        return {"loss": loss(batch, target), "pred": batch}

    engine = Engine(step)
    LossTermsHandler(loss, prefix="train_", epoch_metrics=False).attach(engine)
    engine.run([torch.randn(1, 1, *SHAPE)], max_epochs=1)
    assert set(engine.state.output) == {"loss", "pred", "train_seg", "train_continuity"}
    assert not any(k.startswith("train_") for k in engine.state.metrics)
    logged = from_loss_terms(prefix="train_")(engine.state.output)
    assert set(logged) == {"loss", "train_seg", "train_continuity"}
    assert logged["loss"] == pytest.approx(logged["train_seg"] + logged["train_continuity"])
    assert from_loss_terms()(torch.tensor(0.5)) == {"loss": 0.5}
    assert from_loss_terms()(None) == {}


def test_supervised_trainer_logs_every_term_to_tensorboard_and_stats(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    target = stacked_target()
    data = [{"image": target[:1] + 0.1 * torch.randn(1, *SHAPE), "label": target} for _ in range(4)]
    loader = DataLoader(Dataset(data), batch_size=2, num_workers=0)
    torch.manual_seed(0)
    net = torch.nn.Conv3d(1, 5, 3, padding=1)
    loss = NeuroLinkLoss()
    transform = from_loss_terms()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=2,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=1e-3),
        loss_function=loss,
        train_handlers=[
            # attached before LossTermsHandler on purpose: MONAI workflows get the terms before ITERATION_COMPLETED
            TensorBoardStatsHandler(log_dir=str(tmp_path), output_transform=transform),
            StatsHandler(name="neurolink_test", output_transform=transform),
            LossTermsHandler(loss),
        ],
    )
    logger = logging.getLogger("neurolink_test")
    stream = io.StringIO()
    log_handler = logging.StreamHandler(stream)
    logger.addHandler(log_handler)
    logger.setLevel(logging.INFO)
    try:
        trainer.run()
    finally:
        logger.removeHandler(log_handler)
    assert trainer.state.output[0]["loss_continuity"] == pytest.approx(loss.last_terms["continuity"])
    printed = stream.getvalue()
    assert "Iter: 2/2 -- loss: " in printed and "loss_direction: " in printed
    assert "Epoch[2] Metrics -- " in printed and "loss_distance_epoch: " in printed
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for term in TERMS:
        assert f"loss_{term}" in tags and f"loss_{term}_epoch" in tags
        assert [e.step for e in events.Scalars(f"loss_{term}")] == [1, 2, 3, 4]
        assert [e.step for e in events.Scalars(f"loss_{term}_epoch")] == [1, 2]
    assert "loss" in tags


def test_handler_rejects_a_loss_without_terms():
    with pytest.raises(TypeError, match="last_terms"):
        LossTermsHandler(torch.nn.MSELoss())
