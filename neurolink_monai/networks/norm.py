# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The normalisation layers of the networks: MONAI's norm factory, with instance norm normalising in place at
inference, and the folding of an eval-mode batch norm into the linear layer before it.

An instance norm of a ``(1, 8, 64, 128, 128)`` full-resolution feature map reads it twice for its statistics and
writes a new tensor; at inference its input is always a fresh temporary (a convolution's output), so the layer
instead subtracts the mean, scales and shifts that tensor in place: fewer passes and no new tensor
(``python benchmarks/bench_network.py --inference`` times the forward pass).
"""

# no `from __future__ import annotations`: TorchScript compiles InstanceNorm3d and must see real annotations
from typing import Optional

import torch
import torch.nn.functional as F
from monai.networks.layers.utils import get_norm_layer
from torch import nn

__all__ = ["InstanceNorm3d", "batch_norm_affine", "fold_norm", "make_norm"]


class InstanceNorm3d(nn.InstanceNorm3d):
    """:class:`torch.nn.InstanceNorm3d` (same parameters, same state dict) that, without gradients and outside
    TorchScript, normalises a batched float32/float64 input **in place** and returns it.

    Only for inputs the caller no longer needs, as inside :class:`~neurolink_monai.networks.NeuroLinkNet`, where
    every norm reads a convolution's fresh output. With gradients (float32/float64, no running statistics) it
    returns a new tensor, computed as a batch norm of the one sample or, for larger batches, a group norm of one
    channel per group: :class:`torch.nn.InstanceNorm3d` returns a view, whose in-place activation makes the backward
    copy the whole gradient (0.45x to 0.6x the time of norm and activation, ``python benchmarks/bench_dsconv.py``).
    Under TorchScript or tracing, with running statistics, and for other dtypes (half precision under autocast) it
    is :class:`torch.nn.InstanceNorm3d`. Results agree with it to float32 rounding (the variance is the mean square
    of the centred values, as there; one sample: the same values).

    Shapes: ``(B, C, D, H, W)`` -> the same tensor, normalised per sample and channel.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing():
            return F.instance_norm(
                input,
                self.running_mean,
                self.running_var,
                self.weight,
                self.bias,
                self.training or not self.track_running_stats,
                self.momentum if self.momentum is not None else 0.0,
                self.eps,
            )
        return self._eager_forward(input)

    @torch.jit.unused
    def _eager_forward(self, input: torch.Tensor) -> torch.Tensor:
        in_place = (
            not torch.is_grad_enabled()
            and input.dim() == 5
            and input.dtype in (torch.float32, torch.float64)
            and input.is_contiguous()
            and (self.training or not self.track_running_stats)
            and input[0, 0].numel() > 1
        )
        if in_place:
            return self._normalise_in_place(input)
        if (
            input.dim() == 5
            and input.dtype in (torch.float32, torch.float64)
            and not self.track_running_stats
            and input[0, 0].numel() > 1
        ):
            return self._normalise_out_of_place(input)
        return super().forward(input)

    @torch.jit.unused
    def _normalise_out_of_place(self, input: torch.Tensor) -> torch.Tensor:
        # F.instance_norm returns a view of a reshaped batch norm, and the in-place activation that follows turns
        # its backward into a copy of the whole gradient: a batch norm of one sample is the same computation, and
        # a group norm of one channel per group the same normalisation (to float32 rounding) for larger batches
        if input.shape[0] == 1:
            return F.batch_norm(input, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return F.group_norm(input, input.shape[1], self.weight, self.bias, self.eps)

    @torch.jit.unused
    def _normalise_in_place(self, input: torch.Tensor) -> torch.Tensor:
        b, c = input.shape[0], input.shape[1]
        flat = input.view(b * c, -1)
        flat.sub_(flat.mean(dim=1, keepdim=True))
        scale = torch.rsqrt(torch.linalg.vecdot(flat, flat) / flat.shape[1] + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.to(input.dtype).repeat(b)
        flat.mul_(scale.unsqueeze(1))
        if self.bias is not None:
            flat.add_(self.bias.to(input.dtype).repeat(b).unsqueeze(1))
        return input


def make_norm(norm, channels: int) -> nn.Module:
    """MONAI's ``get_norm_layer(norm, spatial_dims=3, channels=channels)``, with a 3D instance norm made an
    :class:`InstanceNorm3d` of the same settings (and the same state dict)."""
    layer = get_norm_layer(norm, spatial_dims=3, channels=channels)
    if type(layer) is not nn.InstanceNorm3d:
        return layer
    return InstanceNorm3d(
        layer.num_features,
        eps=layer.eps,
        momentum=layer.momentum,
        affine=layer.affine,
        track_running_stats=layer.track_running_stats,
    )


def batch_norm_affine(norm: nn.Module) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """``(scale, shift)``, each ``(C,)``, of a batch norm in eval mode with running statistics, which maps a channel's
    values ``v`` to ``v * scale + shift`` (``scale = gamma / sqrt(var + eps)``, ``shift = beta - mean * scale``);
    ``None`` for any other layer or state (training, batch statistics, instance norm: those depend on the input)."""
    foldable = (
        isinstance(norm, nn.modules.batchnorm._BatchNorm)
        and not norm.training
        and norm.running_mean is not None
        and norm.running_var is not None
    )
    if not foldable:
        return None
    scale = torch.rsqrt(norm.running_var + norm.eps)
    shift = -norm.running_mean * scale
    if norm.weight is not None:
        scale = scale * norm.weight
        shift = shift * norm.weight + norm.bias
    return scale, shift


def fold_norm(
    weight: torch.Tensor, bias: Optional[torch.Tensor], norm: nn.Module
) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """The ``(weight, bias)`` of a linear layer (convolution, fusion) followed by ``norm``, with ``norm`` folded in
    when it is an affine map (:func:`batch_norm_affine`): ``weight * scale`` along the output channels (dim 0) and
    ``bias * scale + shift``, in ``weight``'s dtype. ``None`` when ``norm`` cannot be folded. The same outputs as the
    layer and the norm applied in turn, to float32 rounding, one pass over the output fewer."""
    affine = batch_norm_affine(norm)
    if affine is None:
        return None
    scale, shift = affine
    folded_bias = shift if bias is None else bias * scale + shift
    shape = [-1] + [1] * (weight.dim() - 1)
    return weight * scale.to(weight.dtype).reshape(shape), folded_bias.to(weight.dtype)
