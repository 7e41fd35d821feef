# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Post-processing of NeuroLinkNet outputs in the bundle: the heads as read by
:func:`neurolink_monai.networks.interpret_outputs` (probability, mask, unit directions, distance), stored under keys."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from neurolink_monai.bundle_utils.flags import as_bool
from neurolink_monai.networks import check_heads, check_threshold, interpret_outputs

__all__ = ["NeuroLinkOutputsd", "inference_heads"]


def _plain(x: Any) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


def inference_heads(
    save_direction: Any = False,
    save_distance: Any = False,
    trace_direction_key: str | None = None,
    trace_distance_key: str | None = None,
) -> list[str]:
    """The heads the bundle's inference needs: ``"seg"``, plus the direction and distance maps when they are saved
    (``save_*``, bools or flag strings, :func:`~neurolink_monai.bundle_utils.as_bool`) or traced (``trace_*_key``
    not None). ``inference.json`` gives them to the inferer and to :class:`NeuroLinkOutputsd`, so that heads
    nobody reads are neither blended nor kept for the whole stack."""
    heads = ["seg"]
    if as_bool(save_direction, "save_direction") or trace_direction_key is not None:
        heads.append("direction")
    if as_bool(save_distance, "save_distance") or trace_distance_key is not None:
        heads.append("distance")
    return heads


class NeuroLinkOutputsd(MapTransform):
    """Split a NeuroLinkNet prediction ``(C, D, H, W)`` in ``keys`` into probability, mask, direction, distance
    (:func:`neurolink_monai.networks.interpret_outputs`).

    The binary mask replaces ``data[key]`` (what MONAI metrics such as ``MeanDice`` read); the other heads go to
    the optional ``prob_key``, ``direction_key`` and ``distance_key`` (None leaves them out, which saves memory
    on big stacks). Results are MetaTensors carrying the prediction's metadata.

    Args:
        keys: prediction key(s), usually ``"pred"``, holding logits of one case (decollated, no batch dim).
        out_channels: segmentation channels of the network (1 sigmoid, 2 softmax).
        threshold: probability threshold of the mask.
        prob_key, direction_key, distance_key: where to store the other heads (one key each, used with a single
            entry in ``keys``), or None.
        allow_missing_heads: for a segmentation-only network (``NeuroLinkNet(multitask=False)``) store None under
            ``direction_key`` / ``distance_key`` (tracing then estimates directions from the skeleton) instead of
            raising ``ValueError``.
        heads: the heads the prediction holds when an inferer kept only some
            (:class:`~neurolink_monai.inference.NeuroLinkInferer` ``heads``; ``"seg"`` among them); a head left out
            counts as missing. None: read from the channel count.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        out_channels: int = 1,
        threshold: float = 0.5,
        prob_key: str | None = None,
        direction_key: str | None = None,
        distance_key: str | None = None,
        allow_missing_heads: bool = False,
        heads: Sequence[str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) > 1 and any(k is not None for k in (prob_key, direction_key, distance_key)):
            raise ValueError(f"prob_key/direction_key/distance_key need a single prediction key, got keys={self.keys}.")
        if out_channels not in (1, 2):
            raise ValueError(f"out_channels must be 1 (sigmoid) or 2 (softmax), got {out_channels!r}.")
        self.out_channels = out_channels
        self.threshold = check_threshold(threshold)
        self.extra = {"prob": prob_key, "direction": direction_key, "distance": distance_key}
        self.allow_missing_heads = bool(allow_missing_heads)
        self.heads = None if heads is None else check_heads(heads)

    def _heads_of(self, pred: torch.Tensor) -> tuple[str, ...] | None:
        """The heads ``pred`` holds: ``self.heads``, the segmentation alone for a segmentation-only output, or None
        (all, read from the channel count)."""
        if self.heads is None:
            return None
        return ("seg",) if pred.shape[0] == self.out_channels else self.heads

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            if pred.ndim != 4:
                raise ValueError(f"{key!r} must be one case (C, D, H, W), got shape {list(pred.shape)}.")
            heads = interpret_outputs(_plain(pred).float(), self.out_channels, self.threshold, self._heads_of(pred))
            meta = dict(pred.meta) if isinstance(pred, MetaTensor) else {}
            d[key] = MetaTensor(heads["mask"].float(), meta=meta)
            for name, out_key in self.extra.items():
                if out_key is None:
                    continue
                value = heads[name]
                if value is None and self.allow_missing_heads:
                    d[out_key] = None
                    continue
                if value is None:
                    raise ValueError(
                        f"{out_key!r} was asked for but the prediction has no {name} head (shape {list(pred.shape)}, "
                        f"out_channels={self.out_channels}); use a multitask NeuroLinkNet."
                    )
                d[out_key] = MetaTensor(value, meta=meta)
        return d
