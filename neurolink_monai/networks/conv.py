# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""A 3D convolution that always takes oneDNN's CPU kernel for float32, where PyTorch's heuristic would not.

PyTorch picks its convolution backend with a size rule written for 2D images: a float32 CPU convolution with a
batch of one uses oneDNN (MKLDNN) only when ``N * C * D * H`` of the input exceeds 20480 (the last spatial size is
not counted), otherwise the im2col fallback ``slow_conv3d``. For the 3D volumes of this project the rule is wrong:
at the coarser U-Net levels and for the one-channel input of the offset branches it selects the fallback, which is
3 to 12 times slower in the forward pass at the same result (``python benchmarks/bench_conv_paths.py``).
oneDNN in turn is slow for a pointwise (1x1x1) convolution of a large volume in the NCDHW layout (about 30 times a
matrix product for 8 -> 1 channels at 64x128x128), so those run as one batched matrix product. And its backward
kernels are slow in the NCDHW layout, its backward-data kernel most (the input gradient of 16 -> 4 channels at 32x64x64
takes 12 ms, the same product as a forward convolution in the channels-last layout under 5), so the backward of a
stride-1 convolution runs in the channels-last layout, its input gradient as that forward convolution
(:class:`_OneDNNConvolution`, ``python benchmarks/bench_conv_paths.py --backward``).
"""

# no `from __future__ import annotations`: TorchScript compiles Conv3d and must see real annotations
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["Conv3d", "channel_product"]

# oneDNN indexes with 32-bit integers: larger tensors keep PyTorch's own choice
_MAX_ELEMENTS = 2**31 - 1


def channel_product(weight: torch.Tensor, flat: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A 1x1x1 convolution of flattened volumes: ``weight (O, C) @ flat (B, C, N)`` plus ``bias (O,)``, as one
    batched matrix product (the bias added by the product itself), ``(B, O, N)``."""
    b, o = flat.shape[0], weight.shape[0]
    matrix = weight.contiguous().expand(b, o, weight.shape[1])  # a strided slice of a weight takes a slow product
    if bias is None:
        return torch.bmm(matrix, flat)
    return torch.baddbmm(bias.reshape(1, o, 1), matrix, flat)


class _OneDNNConvolution(torch.autograd.Function):
    """oneDNN's float32 CPU convolution (stride 1, undilated, one group) ``(B, C, D, H, W) -> (B, O, D', H', W')``
    with its backward written out in the channels-last layout, where oneDNN's backward kernels run faster than in
    NCDHW even with the conversions (the forward stays NCDHW: there channels-last is not faster). The output gradient
    and the input are converted once; the input gradient is one forward oneDNN convolution of the output gradient
    with the weight flipped in space and its channel axes swapped, padded by ``kernel - 1 - padding`` (the transposed
    convolution of a stride-1 convolution written as a plain one, which oneDNN runs faster than its backward-data
    kernel), brought back to NCDHW; the weight and bias gradients are PyTorch's convolution backward. Same values to
    float32 rounding. Differentiable once."""

    @staticmethod
    def forward(ctx, input, weight, bias, padding: list[int]):  # type: ignore[override]
        ctx.save_for_backward(input, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return torch.mkldnn_convolution(input, weight, bias, padding, [1, 1, 1], [1, 1, 1], 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        input, weight = ctx.saved_tensors
        needs_input, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        grad = grad.contiguous(memory_format=torch.channels_last_3d)
        flipped_padding = [k - 1 - p for k, p in zip(weight.shape[2:], ctx.padding)]
        as_forward = needs_input and min(flipped_padding) >= 0
        grad_input = grad_weight = grad_bias = None
        if as_forward:
            flipped = weight.flip(2, 3, 4).transpose(0, 1).contiguous(memory_format=torch.channels_last_3d)
            grad_input = torch.mkldnn_convolution(grad, flipped, None, flipped_padding, [1, 1, 1], [1, 1, 1], 1)
        mask = [needs_input and not as_forward, needs_weight, needs_bias and ctx.has_bias]
        if any(mask):
            grads = torch.ops.aten.convolution_backward(
                grad,
                input.contiguous(memory_format=torch.channels_last_3d),
                weight.contiguous(memory_format=torch.channels_last_3d),
                [weight.shape[0]] if ctx.has_bias else None,
                [1, 1, 1],
                ctx.padding,
                [1, 1, 1],
                False,
                [0, 0, 0],
                1,
                mask,
            )
            grad_input = grads[0] if mask[0] else grad_input
            grad_weight, grad_bias = grads[1] if mask[1] else None, grads[2] if mask[2] else None
        grad_input = None if grad_input is None else grad_input.contiguous()
        grad_weight = None if grad_weight is None else grad_weight.contiguous()
        return grad_input, grad_weight, grad_bias, None


class Conv3d(nn.Conv3d):
    """:class:`torch.nn.Conv3d` (same parameters, same state dict) whose float32 CPU forward always runs oneDNN.

    Everything else (CUDA, other dtypes such as bfloat16 under autocast, padding given as a string, a padding mode
    other than zeros, TorchScript scripting and tracing, which must stay device-independent) runs
    :func:`torch.nn.functional.conv3d` as :class:`torch.nn.Conv3d` does. Outputs agree with it to float32 rounding;
    gradients flow through oneDNN's backward, or, for a stride-1 convolution that needs a gradient, through
    :class:`_OneDNNConvolution` (a training step of ``train.json``'s network in 0.90x the time).

    Shapes: ``(B, in_channels, D, H, W)`` -> ``(B, out_channels, D', H', W')``.
    """

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if not torch.jit.is_scripting() and not torch.jit.is_tracing() and self._takes_onednn(input, weight):
            return self._onednn_forward(input, weight, bias)
        if self.padding_mode != "zeros":
            padded = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv3d(padded, weight, bias, self.stride, (0, 0, 0), self.dilation, self.groups)
        return F.conv3d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    @torch.jit.unused
    def _takes_onednn(self, input: torch.Tensor, weight: torch.Tensor) -> bool:
        return (
            input.device.type == "cpu"
            and input.dtype == torch.float32
            and weight.dtype == torch.float32
            and not isinstance(self.padding, str)
            and self.padding_mode == "zeros"
            and torch.backends.mkldnn.is_available()
            and max(input.numel(), weight.numel()) <= _MAX_ELEMENTS
        )

    @torch.jit.unused
    def _onednn_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        padding, stride, dilation = list(self.padding), list(self.stride), list(self.dilation)
        plain = max(stride) == 1 and max(dilation) == 1 and self.groups == 1
        if weight.shape[2:] == (1, 1, 1) and max(padding) == 0 and plain:
            return self._pointwise_forward(input, weight, bias)
        needs_grad = input.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad)
        if plain and needs_grad and torch.is_grad_enabled():
            return _OneDNNConvolution.apply(input.contiguous(), weight, bias, padding)
        return torch.mkldnn_convolution(input.contiguous(), weight, bias, padding, stride, dilation, self.groups)

    @torch.jit.unused
    def _pointwise_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """A 1x1x1 convolution as ``weight (O, C) @ input (B, C, D * H * W)``, with the bias added in the product."""
        b, c, o = input.shape[0], input.shape[1], weight.shape[0]
        out = channel_product(weight.reshape(o, c), input.reshape(b, c, -1), bias)
        return out.reshape((b, o) + input.shape[2:])
