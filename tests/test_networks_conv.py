# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""networks.Conv3d: the oneDNN CPU path gives nn.Conv3d's outputs and gradients, and the same state dict."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neurolink_monai.networks.conv import Conv3d


@pytest.mark.parametrize(
    "shape, kwargs",
    [
        ((1, 8, 6, 16, 16), dict(kernel_size=3, padding=1)),  # N*C*D*H = 768: PyTorch itself would take slow_conv3d
        ((2, 4, 5, 9, 7), dict(kernel_size=3, padding=1, stride=2)),
        ((1, 3, 4, 8, 8), dict(kernel_size=1)),
        ((1, 2, 5, 6, 7), dict(kernel_size=3, padding="same")),  # string padding: the plain path
        ((1, 2, 5, 6, 7), dict(kernel_size=3, padding=1, padding_mode="replicate")),
    ],
)
def test_same_outputs_and_gradients_as_nn_conv3d(shape, kwargs):
    torch.manual_seed(0)
    ours = Conv3d(shape[1], 5, **kwargs)
    reference = nn.Conv3d(shape[1], 5, **kwargs)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    y, y_ref = ours(x), reference(x_ref)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    y.square().sum().backward()
    y_ref.square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-3)


def test_state_dict_scripting_and_other_dtypes():
    conv = Conv3d(2, 3, kernel_size=3, padding=1)
    assert isinstance(conv, nn.Conv3d) and set(conv.state_dict()) == {"weight", "bias"}
    x = torch.randn(1, 2, 4, 6, 6)
    torch.testing.assert_close(torch.jit.script(conv)(x), conv(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.jit.trace(conv, x)(x), conv(x), rtol=1e-4, atol=1e-5)
    y64 = conv.double()(x.double())  # float64 takes PyTorch's own path
    assert y64.dtype == torch.float64


@pytest.mark.parametrize(
    "in_channels, out_channels, padding, bias, input_grad, weight_grad",
    [
        (8, 3, 1, True, True, True),  # fewer outputs than inputs
        (3, 6, 1, True, True, True),  # more outputs
        (6, 6, 0, False, True, True),  # no padding: the flipped convolution pads by 2; no bias
        (6, 4, 2, True, True, False),  # padding 2: the flipped convolution pads by 0; frozen weights
        (4, 4, 3, True, True, True),  # padding 3 > kernel - 1: the input gradient by PyTorch's backward
        (4, 2, 1, True, False, True),  # an input without gradient (the image)
    ],
)
def test_written_out_backward_gives_autograds_gradients(
    in_channels, out_channels, padding, bias, input_grad, weight_grad
):
    torch.manual_seed(1)
    ours = Conv3d(in_channels, out_channels, kernel_size=3, padding=padding, bias=bias)
    reference = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=padding, bias=bias)
    reference.load_state_dict(ours.state_dict())
    for module in (ours, reference):
        module.weight.requires_grad_(weight_grad)
    x = torch.randn(2, in_channels, 5, 9, 7, requires_grad=input_grad)
    x_ref = x.detach().clone().requires_grad_(input_grad)
    y, y_ref = ours(x), reference(x_ref)
    assert y.grad_fn is not None and "OneDNNConvolution" in type(y.grad_fn).__name__
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    assert (x.grad is not None) == input_grad and (ours.weight.grad is not None) == weight_grad
    if input_grad:
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-4)
    if weight_grad:
        torch.testing.assert_close(ours.weight.grad, reference.weight.grad, rtol=1e-4, atol=1e-3)
    if bias:
        torch.testing.assert_close(ours.bias.grad, reference.bias.grad, rtol=1e-4, atol=1e-3)
    with torch.no_grad():  # no gradient needed: oneDNN's forward alone
        assert ours(x).grad_fn is None
