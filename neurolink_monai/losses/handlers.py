# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Ignite glue that makes the individual loss terms visible to the trainer's logging (StatsHandler, TensorBoard)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["LossTermsHandler", "from_loss_terms"]


class LossTermsHandler:
    """Copy ``loss.last_terms`` (e.g. of :class:`~neurolink_monai.losses.NeuroLinkLoss`) into the engine state.

    After every iteration, each term ``name`` becomes ``prefix + name`` (``"loss_seg"``, ``"loss_continuity"``,
    ``"loss_direction"``, ``"loss_distance"``):

    - in ``engine.state.output`` next to ``"loss"`` when the output is a dict or a decollated list of dicts (MONAI
      workflows), so ``StatsHandler`` / ``TensorBoardStatsHandler`` with ``output_transform=from_loss_terms()``
      log them at every iteration;
    - in ``engine.state.loss_terms`` (a dict of floats) for any engine;
    - in ``engine.state.metrics`` as ``prefix + name + "_epoch"``, the running mean over the current epoch (when
      ``epoch_metrics``), so the epoch-level StatsHandler / TensorBoardStatsHandler output shows the epoch average
      of each term under its own TensorBoard tag.

    On a MONAI workflow (``SupervisedTrainer``...) the copy happens at ``IterationEvents.MODEL_COMPLETED``, before
    any ``ITERATION_COMPLETED`` handler runs, so the attach order does not matter; on a plain ignite ``Engine`` it
    happens at ``ITERATION_COMPLETED``, so attach this handler before the logging handlers there.

    Args:
        loss: an object with a ``last_terms`` attribute mapping term names to numbers, updated at each call.
        prefix: prepended to every term name.
        epoch_metrics: also keep the epoch running means in ``engine.state.metrics``.
        epoch_suffix: appended to the metric names of the epoch means.

    Example::

        loss = NeuroLinkLoss()
        trainer = SupervisedTrainer(..., loss_function=loss, train_handlers=[
            LossTermsHandler(loss),
            TensorBoardStatsHandler(log_dir, output_transform=from_loss_terms()),
        ])
    """

    def __init__(
        self, loss: Any, prefix: str = "loss_", epoch_metrics: bool = True, epoch_suffix: str = "_epoch"
    ) -> None:
        if not hasattr(loss, "last_terms"):
            raise TypeError(f"loss must expose a 'last_terms' mapping (e.g. NeuroLinkLoss), got {type(loss).__name__}.")
        if not isinstance(prefix, str) or not isinstance(epoch_suffix, str):
            raise TypeError(f"prefix and epoch_suffix must be str, got {prefix!r} and {epoch_suffix!r}.")
        self.loss = loss
        self.prefix = prefix
        self.epoch_metrics = bool(epoch_metrics)
        self.epoch_suffix = epoch_suffix
        self._sums: dict[str, float] = {}
        self._count = 0

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events
        from monai.engines import Workflow
        from monai.engines.utils import IterationEvents

        event = IterationEvents.MODEL_COMPLETED if isinstance(engine, Workflow) else Events.ITERATION_COMPLETED
        engine.add_event_handler(event, self)
        engine.add_event_handler(Events.EPOCH_STARTED, self.epoch_started)

    def epoch_started(self, engine: Engine) -> None:
        self._sums = {}
        self._count = 0

    def __call__(self, engine: Engine) -> None:
        terms = {self.prefix + name: _scalar(value) for name, value in dict(self.loss.last_terms).items()}
        engine.state.loss_terms = terms
        output = engine.state.output
        if isinstance(output, dict):
            output.update(terms)
        elif isinstance(output, list) and output and all(isinstance(item, dict) for item in output):
            for item in output:  # replicated in every decollated item, like MONAI does with "loss"
                item.update(terms)
        if self.epoch_metrics and terms:
            self._count += 1
            for key, value in terms.items():
                self._sums[key] = self._sums.get(key, 0.0) + value
            suffix = self.epoch_suffix
            engine.state.metrics.update({key + suffix: total / self._count for key, total in self._sums.items()})


def from_loss_terms(prefix: str = "loss_", loss_key: str | None = "loss") -> Callable[[Any], dict[str, float]]:
    """``output_transform`` for ``StatsHandler`` / ``TensorBoardStatsHandler``: the total loss and every term.

    Returns a callable mapping ``engine.state.output`` (a dict, a decollated list of dicts, or a bare loss) to
    ``{"loss": total, "loss_seg": ..., ...}``: the ``loss_key`` entry (None to leave it out) and every entry whose
    key starts with ``prefix``, as floats. Pair it with :class:`LossTermsHandler`.
    """

    def _transform(output: Any) -> dict[str, float]:
        if isinstance(output, list) and output and isinstance(output[0], dict):
            output = output[0]  # the scalars are replicated in every decollated item
        if not isinstance(output, dict):
            return {} if output is None or loss_key is None else {loss_key: _scalar(output)}
        values = {k: _scalar(v) for k, v in output.items() if isinstance(k, str) and k.startswith(prefix)}
        if loss_key is not None and loss_key in output:
            values[loss_key] = _scalar(output[loss_key])
        return values

    return _transform


def _scalar(value: Any) -> float:
    return value.detach().item() if isinstance(value, torch.Tensor) else float(value)
