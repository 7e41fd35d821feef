# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The multi-task NeuroLink loss: segmentation + morphology continuity + neurite direction + distance map.

Reference:
    Yan H. et al., "Bridging Weak Signals in Neuronal Imaging with Morphology Learning", MICCAI 2024.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch.nn.modules.loss import _Loss

from neurolink_monai.networks import DIRECTION_CHANNELS, DISTANCE_CHANNELS, split_outputs

from ..utils import as_positive_int
from .centreline import build_centreline_graph
from .continuity import MorphologyContinuityLoss
from .validation import as_plain_tensor, check_binary_label

__all__ = ["NeuroLinkLoss", "STACKED_TARGET_CHANNELS"]

STACKED_TARGET_CHANNELS = 1 + DIRECTION_CHANNELS + DISTANCE_CHANNELS
"""Channels of a stacked target ``[label, dir_z, dir_y, dir_x, distance]``."""


class NeuroLinkLoss(_Loss):
    r"""Weighted sum of the four NeuroLink training terms, each of which can be switched off for ablations.

    .. math::
        L = \lambda_{seg} L_{seg} + \lambda_{cont} L_{cont} + \lambda_{dir} L_{dir} + \lambda_{dist} L_{dist}

    - :math:`L_{seg}`: MONAI ``DiceCELoss`` on the segmentation logits (Dice + binary cross-entropy with logits for
      ``out_channels=1``; Dice + cross-entropy on a one-hot label for a two-channel softmax output).
    - :math:`L_{cont}`: :class:`MorphologyContinuityLoss` on the foreground logits (for two channels the
      foreground-vs-background logit ``z_1 - z_0``).
    - :math:`L_{dir}`: sign-invariant direction loss, the mean of :math:`1 - |\cos(\hat d, d)|` over the band where
      the target direction is non-zero; the prediction :math:`\hat d` is unnormalised and sign-free, so it is
      divided by :math:`\sqrt{|\hat d|^2 + \epsilon^2}` with :math:`\epsilon` = ``direction_eps`` (the target is
      renormalised too, which keeps resampled targets valid).
    - :math:`L_{dist}`: Smooth-L1 (``beta=distance_beta``) between the predicted and target distance maps over the
      label dilated by ``distance_band`` voxels, so background next to a neurite also learns distance 0.

    A term with weight 0 is not computed. :math:`L_{dir}` and :math:`L_{dist}` are 0 on a batch without any
    band voxel. The unweighted term values of the latest call are kept in :attr:`last_terms` (floats) for
    logging; :class:`~neurolink_monai.losses.LossTermsHandler` puts them into the ignite engine state.

    Accepted ``pred``: the NeuroLinkNet output ``(B, out_channels + 4, D, H, W)`` = ``[seg..., dir_z, dir_y,
    dir_x, dist]`` or, with ``lambda_dir = lambda_dist = 0``, the single-task ``(B, out_channels, D, H, W)``.

    Accepted ``target`` layouts:

    - ``(B, 1, D, H, W)`` binary label alone: only the segmentation and continuity terms can be computed, so
      ``lambda_dir`` and ``lambda_dist`` must be 0.
    - ``(B, 5, D, H, W)`` stacked ``[label, dir_z, dir_y, dir_x, distance]``, e.g. built in the data pipeline
      with ``ConcatItemsd(keys=["label", "direction", "distance"], name="target")`` and handed to the loss by
      MONAI's ``SupervisedTrainer`` with ``prepare_batch=PrepareKeyedBatch(target_key="target")``
      (:class:`neurolink_monai.bundle_utils.PrepareKeyedBatch`), as ``train.json`` does.
    - a mapping ``{"label": (B, 1, ...), "direction": (B, 3, ...), "distance": (B, 1, ...)}`` (the last two
      optional when their weights are 0).

    Targets: label in {0, 1}; direction unit vectors in (z, y, x) order, zero outside the band (the band is where
    the target direction is non-zero; any sign convention); distance >= 0 in voxels (e.g. the Euclidean distance
    transform of the mask). Direction targets must be transformed consistently with spatial augmentation (a flip
    along x negates ``dir_x``); that is the data pipeline's job.

    Args:
        out_channels: segmentation channels of the network, 1 (sigmoid) or 2 (softmax background/foreground).
        lambda_seg, lambda_cont, lambda_dir, lambda_dist: term weights (>= 0, at least one > 0). The defaults are
            equal weights chosen for this implementation, not values from the paper; tune them per dataset.
        continuity_radius, continuity_penalty: ``radius`` and ``penalty`` of :class:`MorphologyContinuityLoss`.
        distance_band: dilation radius (voxels, >= 0) of the label that defines where the distance is regressed.
        distance_beta: Smooth-L1 ``beta`` (> 0), in voxels.
        direction_eps: smoothing of the direction norms (> 0).
        dice_ce_kwargs: extra keyword arguments for MONAI ``DiceCELoss`` (e.g. ``{"batch": True,
            "lambda_ce": 0.5}``); the activation and one-hot options are set from ``out_channels``.
    """

    def __init__(
        self,
        out_channels: int = 1,
        lambda_seg: float = 1.0,
        lambda_cont: float = 1.0,
        lambda_dir: float = 1.0,
        lambda_dist: float = 1.0,
        continuity_radius: int = 3,
        continuity_penalty: str = "log",
        distance_band: int = 2,
        distance_beta: float = 1.0,
        direction_eps: float = 1e-6,
        dice_ce_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if out_channels not in (1, 2):
            raise ValueError(f"out_channels must be 1 (sigmoid) or 2 (softmax), got {out_channels!r}.")
        weights = {"seg": lambda_seg, "continuity": lambda_cont, "direction": lambda_dir, "distance": lambda_dist}
        for name, value in weights.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"the weight of the {name} term must be a number >= 0, got {value!r}.")
        if not any(value > 0 for value in weights.values()):
            raise ValueError(f"at least one term weight must be > 0, got {weights}.")
        as_positive_int(distance_band, "distance_band", allow_zero=True)
        if not distance_beta > 0:
            raise ValueError(f"distance_beta must be > 0, got {distance_beta!r}.")
        if not direction_eps > 0:
            raise ValueError(f"direction_eps must be > 0, got {direction_eps!r}.")
        kwargs = dict(dice_ce_kwargs or {})
        reserved = {"sigmoid", "softmax", "to_onehot_y", "other_act"} & set(kwargs)
        if reserved:
            raise ValueError(f"dice_ce_kwargs may not set {sorted(reserved)}; they follow out_channels.")
        self.out_channels = out_channels
        self.weights = {name: float(value) for name, value in weights.items()}
        self.seg_loss = DiceCELoss(
            sigmoid=out_channels == 1, softmax=out_channels == 2, to_onehot_y=out_channels == 2, **kwargs
        )
        self.continuity_loss = MorphologyContinuityLoss(radius=continuity_radius, penalty=continuity_penalty)
        self.distance_band = distance_band
        self.distance_beta = float(distance_beta)
        self.direction_eps = float(direction_eps)
        self._last_terms: dict[str, torch.Tensor] = {}

    @property
    def last_terms(self) -> dict[str, float]:
        """Unweighted value of each active term at the latest call, e.g. ``{"seg": .., "continuity": ..}``."""
        return {name: float(value) for name, value in self._last_terms.items()}

    def forward(self, pred: torch.Tensor, target: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """
        Args:
            pred: network output, see the class docstring.
            target: label, stacked target or mapping, see the class docstring.

        Returns:
            the weighted total, a scalar tensor.

        Raises:
            ValueError: on wrong channel counts, mismatched shapes, label values outside {0, 1}, negative distance
                targets, or an active direction/distance term without its prediction or target.
        """
        pred = as_plain_tensor(pred, "pred")
        if pred.dim() != 5:
            raise ValueError(f"pred must be (B, C, D, H, W), got shape {list(pred.shape)}.")
        heads = split_outputs(pred, self.out_channels)
        label, direction, distance = self._unpack_target(target, pred)
        check_binary_label(label, "label")
        label = label.to(pred.dtype)

        terms: dict[str, torch.Tensor] = {}
        w = self.weights
        if w["seg"] > 0:
            terms["seg"] = self.seg_loss(heads["seg"], label)
        if w["continuity"] > 0:
            seg = heads["seg"]
            foreground = seg if self.out_channels == 1 else seg[:, 1:2] - seg[:, 0:1]
            graph = build_centreline_graph(label[:, 0].detach().cpu().numpy() != 0)
            cont = self.continuity_loss
            terms["continuity"] = cont.reduce(cont.per_sample(foreground, graph), graph)
        if w["direction"] > 0:
            self._require("direction", heads["direction"], direction, pred)
            terms["direction"] = self._direction_term(heads["direction"], direction)
        if w["distance"] > 0:
            self._require("distance", heads["distance"], distance, pred)
            terms["distance"] = self._distance_term(heads["distance"], distance, label)

        total = sum(w[name] * value for name, value in terms.items())
        self._last_terms = {name: value.detach() for name, value in terms.items()}
        return total

    def _unpack_target(
        self, target: torch.Tensor | Mapping[str, torch.Tensor], pred: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        spatial = list(pred.shape[2:])
        if isinstance(target, Mapping):
            if "label" not in target:
                raise ValueError(f"a target mapping needs a 'label' entry, got keys {sorted(target)}.")
            parts = {
                k: as_plain_tensor(target[k], f"target[{k!r}]")
                for k in ("label", "direction", "distance")
                if target.get(k) is not None
            }
            expected = {"label": 1, "direction": DIRECTION_CHANNELS, "distance": DISTANCE_CHANNELS}
            for key, value in parts.items():
                if (
                    value.dim() != 5
                    or value.shape[1] != expected[key]
                    or value.shape[0] != pred.shape[0]
                    or list(value.shape[2:]) != spatial
                ):
                    raise ValueError(
                        f"target[{key!r}] must have shape {[pred.shape[0], expected[key], *spatial]} to match pred "
                        f"{list(pred.shape)}, got {list(value.shape)}."
                    )
            return parts["label"], parts.get("direction"), parts.get("distance")
        target = as_plain_tensor(target, "target")
        if target.dim() != 5 or target.shape[0] != pred.shape[0] or list(target.shape[2:]) != spatial:
            raise ValueError(
                f"target must be (B, 1 or {STACKED_TARGET_CHANNELS}, D, H, W) with the batch size and spatial shape of "
                f"pred {list(pred.shape)}, got {list(target.shape)}."
            )
        if target.shape[1] == 1:
            return target, None, None
        if target.shape[1] == STACKED_TARGET_CHANNELS:
            label, direction, distance = torch.split(target, [1, DIRECTION_CHANNELS, DISTANCE_CHANNELS], dim=1)
            return label, direction, distance
        raise ValueError(
            f"target has {target.shape[1]} channels (shape {list(target.shape)}); expected 1 (label) or "
            f"{STACKED_TARGET_CHANNELS} ([label, dir_z, dir_y, dir_x, distance])."
        )

    def _require(self, name: str, head: torch.Tensor | None, target: torch.Tensor | None, pred: torch.Tensor) -> None:
        lam = "lambda_dir" if name == "direction" else "lambda_dist"
        if head is None:
            raise ValueError(
                f"{lam}={self.weights[name]} > 0 but pred of shape {list(pred.shape)} has no {name} head "
                f"(expected {self.out_channels + DIRECTION_CHANNELS + DISTANCE_CHANNELS} channels); "
                f"use a multitask network or set {lam}=0."
            )
        if target is None:
            raise ValueError(
                f"{lam}={self.weights[name]} > 0 but the target holds no {name}: pass a stacked "
                f"(B, {STACKED_TARGET_CHANNELS}, D, H, W) target [label, dir_z, dir_y, dir_x, distance] or a mapping "
                f"with a {name!r} entry, or set {lam}=0."
            )

    def _direction_term(self, pred_dir: torch.Tensor, target_dir: torch.Tensor) -> torch.Tensor:
        target_dir = target_dir.float()
        if not bool(torch.isfinite(target_dir).all()):
            raise ValueError(f"the direction target of shape {list(target_dir.shape)} holds NaN or infinite values.")
        band = (target_dir * target_dir).sum(dim=1) > 0
        if not bool(band.any()):
            return pred_dir.sum() * 0.0
        # work on the (sparse) band voxels only: (N, 3) vectors
        pred_v = pred_dir.movedim(1, -1)[band].float()  # float32 even under AMP: eps**2 must not underflow
        target_v = target_dir.movedim(1, -1)[band]
        # smoothed norms: finite gradients even for an all-zero prediction
        eps2 = self.direction_eps**2
        pred_norm = ((pred_v * pred_v).sum(dim=1) + eps2).sqrt()
        target_norm = ((target_v * target_v).sum(dim=1) + eps2).sqrt()
        cosine = (pred_v * target_v).sum(dim=1) / (pred_norm * target_norm)
        return (1.0 - cosine.abs()).mean()

    def _distance_term(self, pred_dist: torch.Tensor, target_dist: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        target_dist = target_dist.to(pred_dist.dtype)
        lowest, highest = (float(v) for v in torch.aminmax(target_dist))
        if not (lowest >= 0 and highest < float("inf")):  # NaN fails both comparisons
            raise ValueError(
                f"the distance target must be finite and >= 0, got values in [{lowest:g}, {highest:g}] "
                f"(shape {list(target_dist.shape)})."
            )
        band = label
        r = self.distance_band
        if r > 0:  # cubic dilation as three separable 1D max-pools: 3 (2r + 1) instead of (2r + 1)^3 reads
            band = F.max_pool3d(band, kernel_size=(2 * r + 1, 1, 1), stride=1, padding=(r, 0, 0))
            band = F.max_pool3d(band, kernel_size=(1, 2 * r + 1, 1), stride=1, padding=(0, r, 0))
            band = F.max_pool3d(band, kernel_size=(1, 1, 2 * r + 1), stride=1, padding=(0, 0, r))
        band = (band > 0) | (target_dist > 0)
        if not bool(band.any()):
            return pred_dist.sum() * 0.0
        return F.smooth_l1_loss(pred_dist[band], target_dist[band], beta=self.distance_beta)
