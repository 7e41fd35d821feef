# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Post-processing of NeuroLinkNet outputs in the bundle: split the heads, probabilities, threshold."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from neurolink_monai.networks import split_outputs

__all__ = ["NeuroLinkOutputsd", "neurolink_heads"]


def _plain(x: Any) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


def neurolink_heads(
    pred: torch.Tensor, out_channels: int = 1, threshold: float = 0.5, direction_eps: float = 1e-6
) -> dict[str, torch.Tensor | None]:
    """Turn one NeuroLinkNet output ``(C, D, H, W)`` (no batch dim) into its interpreted heads.

    Args:
        pred: ``[seg logits..., dir_z, dir_y, dir_x, dist]`` (``C = out_channels + 4``) or seg logits only.
        out_channels: 1 (sigmoid) or 2 (softmax, channel 1 = neurite).
        threshold: probability at or above which a voxel is neurite.
        direction_eps: direction vectors shorter than this become 0 (undefined).

    Returns:
        ``{"prob": (1, D, H, W) float32 in [0, 1], "seg": (1, D, H, W) float32 in {0, 1},
        "direction": (3, D, H, W) unit vectors (z, y, x) or 0, or None, "distance": (1, D, H, W) >= 0 or None}``.
    """
    if out_channels not in (1, 2):
        raise ValueError(f"out_channels must be 1 (sigmoid) or 2 (softmax), got {out_channels!r}.")
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold!r}.")
    heads = split_outputs(_plain(pred).float(), out_channels)
    seg = heads["seg"]
    prob = torch.sigmoid(seg) if out_channels == 1 else torch.softmax(seg, dim=0)[1:2]
    out: dict[str, torch.Tensor | None] = {"prob": prob, "seg": (prob >= threshold).float()}
    direction = heads["direction"]
    if direction is not None:
        norm = direction.norm(dim=0, keepdim=True)
        direction = torch.where(norm > direction_eps, direction / norm.clamp_min(direction_eps), 0.0)
    out["direction"] = direction
    out["distance"] = heads["distance"]
    return out


class NeuroLinkOutputsd(MapTransform):
    """Split a NeuroLinkNet prediction ``(C, D, H, W)`` in ``keys`` into probability, mask, direction, distance.

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
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) > 1 and any(k is not None for k in (prob_key, direction_key, distance_key)):
            raise ValueError(f"prob_key/direction_key/distance_key need a single prediction key, got keys={self.keys}.")
        neurolink_heads(torch.zeros(out_channels, 1, 1, 1), out_channels, threshold)  # validates the arguments
        self.out_channels = out_channels
        self.threshold = float(threshold)
        self.extra = {"prob": prob_key, "direction": direction_key, "distance": distance_key}
        self.allow_missing_heads = bool(allow_missing_heads)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            if pred.ndim != 4:
                raise ValueError(f"{key!r} must be one case (C, D, H, W), got shape {list(pred.shape)}.")
            heads = neurolink_heads(pred, self.out_channels, self.threshold)
            meta = dict(pred.meta) if isinstance(pred, MetaTensor) else {}
            d[key] = MetaTensor(heads["seg"], meta=meta)
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
