# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neurolink_monai.networks import DSConv3D, snake_accumulation_matrix


def loop_snake_conv(x: torch.Tensor, offsets: torch.Tensor, module: DSConv3D) -> np.ndarray:
    """Plain, obviously correct DSConv3D output (no norm/act) by explicit loops, in float64.

    ``offsets`` (B, 2, K, D, H, W) are the accumulated snake offsets across the kernel axis.
    """
    x = x.detach().double().numpy()
    off = offsets.detach().double().numpy()
    weight = module.fusion.weight.detach().double().numpy()[:, :, :, 0, 0]  # (O, C, K)
    bias = module.fusion.bias.detach().double().numpy()
    b_n, c_n = x.shape[:2]
    shape = x.shape[2:]
    k_n = module.kernel_size
    centre = k_n // 2
    axis = module.axis
    perp = [a for a in (0, 1, 2) if a != axis]

    def value(b, c, idx):
        if all(0 <= idx[i] < shape[i] for i in range(3)):
            return x[b, c, idx[0], idx[1], idx[2]]
        return 0.0

    out = np.zeros((b_n, weight.shape[0]) + shape)
    for b in range(b_n):
        for p in np.ndindex(*shape):
            samples = np.zeros((c_n, k_n))
            for k in range(k_n):
                pos = [float(v) for v in p]
                pos[axis] = p[axis] + (k - centre)
                pos[perp[0]] = p[perp[0]] + off[b, 0, k][p]
                pos[perp[1]] = p[perp[1]] + off[b, 1, k][p]
                f0, f1 = math.floor(pos[perp[0]]), math.floor(pos[perp[1]])
                t0, t1 = pos[perp[0]] - f0, pos[perp[1]] - f1
                for c in range(c_n):
                    acc = 0.0
                    for d0, w0 in ((0, 1 - t0), (1, t0)):
                        for d1, w1 in ((0, 1 - t1), (1, t1)):
                            idx = [0, 0, 0]
                            idx[axis] = int(pos[axis])
                            idx[perp[0]] = f0 + d0
                            idx[perp[1]] = f1 + d1
                            acc += w0 * w1 * value(b, c, idx)
                    samples[c, k] = acc
            out[(b, slice(None)) + p] = np.einsum("ock,ck->o", weight, samples) + bias
    return out


def legacy_snake_conv(x: torch.Tensor, offsets: torch.Tensor, module: DSConv3D) -> torch.Tensor:
    """The layer's first vectorised implementation (K shifted copies, one grid_sample, one fusion matmul), kept as
    the reference that the shipped weights were trained with; output before norm/act."""
    k = module.kernel_size
    c = k // 2
    xa = x.permute(module.to_axis_first)
    b, ch, a, p0, p1 = xa.shape
    oa = offsets.permute([0, 1, 2] + [module.to_axis_first[i] + 1 for i in (2, 3, 4)])
    planes = F.pad(xa, [0, 0, 0, 0, c, c]).unfold(2, k, 1).permute(0, 2, 5, 1, 3, 4).reshape(b * a * k, ch, p0, p1)
    oa = oa.permute(0, 3, 2, 4, 5, 1)
    i0 = torch.arange(p0, dtype=oa.dtype).reshape(p0, 1)
    i1 = torch.arange(p1, dtype=oa.dtype).reshape(1, p1)
    g0 = (2.0 * (i0 + oa[..., 0]) + 1.0) / p0 - 1.0
    g1 = (2.0 * (i1 + oa[..., 1]) + 1.0) / p1 - 1.0
    grid = torch.stack((g1, g0), dim=-1).reshape(b * a * k, p0, p1, 2)
    samples = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    samples = samples.reshape(b, a, k * ch, p0 * p1)
    o = module.out_channels
    weight = module.fusion.weight.reshape(o, ch, k).transpose(1, 2).reshape(o, k * ch)
    out = torch.matmul(weight, samples) + module.fusion.bias.reshape(1, 1, o, 1)
    return out.reshape(b, a, o, p0, p1).transpose(1, 2).permute(module.from_axis_first)


def raw_layer(in_channels=2, out_channels=3, kernel_size=3, axis=0, **kwargs) -> DSConv3D:
    torch.manual_seed(0)
    return DSConv3D(in_channels, out_channels, kernel_size, axis=axis, norm=None, act=None, **kwargs)


def test_accumulation_matrix_semantics():
    o = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])  # K = 9: offsets of points 0..3 and 5..8
    cum = snake_accumulation_matrix(9) @ o
    # centre 4 stays; 5 -> o5; 6 -> o5 + o6; ...; 3 -> o3; 2 -> o2 + o3; 0 -> o0 + o1 + o2 + o3
    np.testing.assert_allclose(cum.numpy(), [10.0, 9.0, 7.0, 4.0, 0.0, 5.0, 11.0, 18.0, 26.0])


@pytest.mark.parametrize("kernel_size", [3, 5, 9])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_matches_loop_reference(axis, kernel_size):
    layer = raw_layer(kernel_size=kernel_size, axis=axis, extend_scope=1.5).eval()
    torch.manual_seed(1)
    with torch.no_grad():  # large offsets so that samples cross voxels and leave the volume
        layer.offset_conv.weight.mul_(20.0)
    x = torch.randn(2, 2, 4, 5, 6)
    with torch.no_grad():
        offsets = layer.snake_offsets(x)
        out = layer(x)
    assert offsets.abs().max() > 1.0
    expected = loop_snake_conv(x, offsets, layer)
    np.testing.assert_allclose(out.double().numpy(), expected, atol=1e-5, rtol=1e-5)


# sample-then-fuse and fuse-then-sample; more than 8 sampled channels: H copies its planes axis-first too
@pytest.mark.parametrize("channels", [(3, 3), (1, 4), (5, 2), (9, 12), (12, 9)])
@pytest.mark.parametrize("kernel_size", [3, 9])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_matches_legacy_implementation_with_gradients(axis, kernel_size, channels):
    layer = raw_layer(in_channels=channels[0], out_channels=channels[1], kernel_size=kernel_size, axis=axis)
    with torch.no_grad():
        layer.offset_conv.weight.mul_(10.0)
    x = torch.randn(2, channels[0], 5, 6, 7, requires_grad=True)
    offsets = layer.snake_offsets(x)
    out = layer.snake_conv(x, offsets)
    if channels[0] > 1:  # the gradients checked are those of the written-out backward
        assert type(out.grad_fn).__name__ == "_SnakeFusionBackward"
    ref = legacy_snake_conv(x, offsets, layer)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(out)
    params = [x, layer.offset_conv.weight, layer.fusion.weight, layer.fusion.bias]
    got = torch.autograd.grad(out, params, grad, retain_graph=True)
    want = torch.autograd.grad(ref, params, grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-3, rtol=1e-4)


def test_backward_keeps_the_tanh_output_not_the_grids():
    layer = raw_layer(in_channels=3, out_channels=3, kernel_size=9, axis=1)
    x = torch.randn(1, 3, 5, 6, 7, requires_grad=True)
    steps = layer._point_steps(layer.offset_conv(x), False)
    out = layer._fuse_samples(x, steps, layer.extend_scope, True)
    assert type(out.grad_fn).__name__ == "_SnakeFusionBackward"
    saved = out.grad_fn.saved_tensors
    assert len(saved) == 3 and saved[1].data_ptr() == steps.data_ptr()  # the grids are built again in the backward


@pytest.mark.parametrize("kernel_size", [3, 9])
@pytest.mark.parametrize("axis", [0, 2])
def test_layer_gradients_match_plain_autograd(axis, kernel_size, monkeypatch):
    """The whole layer (offset norm, in-place ReLU, written-out backward) against autograd through plain operators."""
    torch.manual_seed(0)
    layer = DSConv3D(3, 4, kernel_size, axis=axis).train()
    assert layer.act.inplace
    x = torch.randn(2, 3, 5, 6, 7, requires_grad=True)
    params = [x, *layer.parameters()]
    out = layer(x)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, params, grad)
    monkeypatch.setattr(DSConv3D, "_takes_snake_function", lambda self, x, offsets: False)
    ref = layer(x)
    assert type(ref.grad_fn).__name__ != "_SnakeFusionBackward"
    torch.testing.assert_close(out, ref)
    for g, w in zip(got, torch.autograd.grad(ref, params, grad)):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("channels", [(2, 2), (1, 3), (3, 1)])
@pytest.mark.parametrize("axis", [0, 2])
def test_gradcheck(axis, channels):
    layer = raw_layer(in_channels=channels[0], out_channels=channels[1], kernel_size=5, axis=axis, offset_norm=None)
    layer = layer.double()
    x = torch.randn(1, channels[0], 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_zero_offsets_is_1d_conv_along_axis(axis):
    layer = raw_layer(in_channels=3, out_channels=4, kernel_size=5, axis=axis)
    with torch.no_grad():
        layer.offset_conv.weight.zero_()
        layer.offset_conv.bias.zero_()
    x = torch.randn(2, 3, 6, 7, 8)
    kernel_shape = [1, 1, 1]
    kernel_shape[axis] = 5
    padding = [0, 0, 0]
    padding[axis] = 2
    weight = layer.fusion.weight.reshape(4, 3, *kernel_shape)
    expected = F.conv3d(x, weight, layer.fusion.bias, padding=padding)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_samples_outside_volume_read_zero():
    # Offsets pushed 100 voxels out of the plane: every non-centre kernel point reads 0 (zero extension),
    # so the output is the centre tap alone.
    layer = raw_layer(in_channels=2, out_channels=2, kernel_size=3, axis=2, extend_scope=100.0, offset_norm=None)
    with torch.no_grad():
        layer.offset_conv.weight.zero_()
        layer.offset_conv.bias.fill_(10.0)  # tanh(10) ~ 1
    x = torch.randn(1, 2, 3, 4, 5)
    centre = layer.fusion.weight[:, :, 1, 0, 0]
    expected = torch.einsum("oc,bcdhw->bodhw", centre, x) + layer.fusion.bias.reshape(1, 2, 1, 1, 1)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_gradients_reach_offset_branch():
    layer = DSConv3D(2, 4, kernel_size=9, axis=1)
    x = torch.randn(2, 2, 6, 10, 7, requires_grad=True)
    layer(x).square().mean().backward()
    assert layer.offset_conv.weight.grad is not None
    assert torch.isfinite(layer.offset_conv.weight.grad).all()
    assert layer.offset_conv.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 5, 1), (3, 1, 7), (5, 6, 7), (2, 9, 4)])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_any_spatial_size(shape, axis):
    layer = DSConv3D(3, 2, kernel_size=5, axis=axis, norm=("group", {"num_groups": 1})).eval()
    x = torch.randn(1, 3, *shape)
    y = layer(x)
    assert y.shape == (1, 2, *shape)
    assert torch.isfinite(y).all()


def test_eval_mode_is_per_sample_and_ignores_batch_statistics():
    torch.manual_seed(0)
    layer = DSConv3D(2, 3, kernel_size=5)
    layer.train()(torch.randn(4, 2, 5, 6, 7) * 3 + 1)  # one training step moves the running statistics off 0 / 1
    layer.eval()
    x = torch.randn(2, 2, 5, 6, 7)
    with torch.no_grad():
        both = layer(x)
        # eval mode: each sample's output depends on that sample only (running, not batch, statistics)
        torch.testing.assert_close(both[1:], layer(x[1:]), atol=1e-5, rtol=1e-5)
        assert not torch.allclose(both, layer.train()(x), atol=1e-3)  # train mode does use the batch statistics


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_cpu(dtype):
    layer = DSConv3D(4, 4, kernel_size=5, axis=0).eval()
    x = torch.randn(1, 4, 6, 8, 8)
    with torch.no_grad():
        ref = layer(x)
        try:
            with torch.autocast("cpu", dtype=dtype):
                y = layer(x)
        except RuntimeError as err:  # some CPU builds lack half kernels
            pytest.skip(f"autocast {dtype} unsupported on this CPU build: {err}")
    assert y.shape == ref.shape and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), ref, atol=0.1, rtol=0.1)


def test_autocast_training_step_runs_through_autograd():
    layer = DSConv3D(4, 4, kernel_size=5, axis=1).train()
    x = torch.randn(1, 4, 6, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer.snake_conv(x, layer.snake_offsets(x))
    assert type(y.grad_fn).__name__ != "_SnakeFusionBackward"  # autocast's casts stay with the plain operators
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all() and layer.offset_conv.weight.grad.abs().sum() > 0


def test_torchscript_matches_eager():
    layer = DSConv3D(2, 3, kernel_size=5, axis=2).eval()
    scripted = torch.jit.script(layer)
    x = torch.randn(1, 2, 4, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), layer(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    layer = DSConv3D(2, 3, kernel_size=9, axis=0).eval()
    x = torch.randn(1, 2, 8, 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(layer.cuda()(x.cuda()).cpu(), layer.cpu()(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kernel_size": 4}, "kernel_size"),
        ({"kernel_size": 1}, "kernel_size"),
        ({"kernel_size": 3.0}, "kernel_size"),
        ({"axis": 3}, "axis"),
        ({"axis": -1}, "axis"),
        ({"extend_scope": float("nan")}, "extend_scope"),
        ({"extend_scope": float("inf")}, "extend_scope"),
        ({"in_channels": 0}, "in_channels"),
    ],
)
def test_bad_arguments(kwargs, match):
    args = {"in_channels": 2, "out_channels": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        DSConv3D(**args)


def test_bad_input_shapes():
    layer = DSConv3D(2, 2, kernel_size=3)
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        layer(torch.randn(2, 4, 4, 4))
    with pytest.raises(ValueError, match="2 input channels"):
        layer(torch.randn(1, 3, 4, 4, 4))


def test_eval_folds_the_offset_batchnorm_into_the_offset_convolution():
    torch.manual_seed(0)
    layer = DSConv3D(3, 2, kernel_size=5, axis=1)
    layer.train()(torch.randn(2, 3, 5, 6, 7) * 3 + 1)  # running statistics away from 0 / 1
    with torch.no_grad():
        layer.offset_norm.weight.uniform_(0.5, 2.0)
        layer.offset_norm.bias.uniform_(-1.0, 1.0)
    x = torch.randn(2, 3, 5, 6, 7)
    assert not layer.offset_parameters()[2]  # training mode uses batch statistics: nothing to fold
    layer.eval()
    weight, bias, folded = layer.offset_parameters()
    assert folded
    with torch.no_grad():
        plain = layer.forward_with_offset_logits(x, layer.offset_conv(x))
        torch.testing.assert_close(layer(x), plain, atol=1e-5, rtol=1e-5)
        ref = legacy_snake_conv(x, layer.snake_offsets(x), layer)
        torch.testing.assert_close(layer.snake_conv(x, layer.snake_offsets(x)), ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            layer.offset_norm(layer.offset_conv(x)),
            layer.offset_conv._conv_forward(x, weight, bias),
            atol=1e-5,
            rtol=1e-5,
        )
