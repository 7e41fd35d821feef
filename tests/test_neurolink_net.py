# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from neurolink_monai.networks import (
    DSConv3D,
    NeuroLinkNet,
    check_threshold,
    head_channels,
    interpret_outputs,
    num_output_channels,
    split_outputs,
)

SMALL = {"features": (4, 8, 16), "kernel_size": 3}


@pytest.mark.parametrize("shape", [(8, 8, 8), (7, 9, 13), (1, 5, 3), (12, 17, 10)])
def test_any_input_size(shape):
    net = NeuroLinkNet(**SMALL).eval()
    with torch.no_grad():
        y = net(torch.randn(2, 1, *shape))
    assert y.shape == (2, 5, *shape)
    parts = split_outputs(y, out_channels=1)
    assert parts["seg"].shape == (2, 1, *shape)
    assert parts["direction"].shape == (2, 3, *shape)
    assert parts["distance"].shape == (2, 1, *shape)
    assert (parts["distance"] >= 0).all()


def test_single_task_and_channels():
    net = NeuroLinkNet(in_channels=2, out_channels=3, multitask=False, **SMALL).eval()
    with torch.no_grad():
        y = net(torch.randn(1, 2, 8, 8, 8))
    assert y.shape == (1, 3, 8, 8, 8)
    assert num_output_channels(3, multitask=False) == 3
    parts = split_outputs(y, out_channels=3)
    assert parts["direction"] is None and parts["distance"] is None


def test_plain_baseline_has_no_snakes_and_same_width():
    snake = NeuroLinkNet(**SMALL)
    plain = NeuroLinkNet(dsconv=False, **SMALL)
    assert any(isinstance(m, DSConv3D) for m in snake.modules())
    assert not any(isinstance(m, DSConv3D) for m in plain.modules())
    widths = lambda net: [m.out_channels for m in net.modules() if isinstance(m, torch.nn.ConvTranspose3d)]
    assert widths(snake) == widths(plain) == [8, 4]


def test_backward_reaches_all_parameters():
    net = NeuroLinkNet(**SMALL)
    net(torch.randn(1, 1, 8, 8, 8)).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing


def test_sliding_window_inferer():
    net = NeuroLinkNet(**SMALL).eval()
    inferer = SlidingWindowInferer(roi_size=(8, 16, 16), sw_batch_size=2, overlap=0.25)
    with torch.no_grad():
        y = inferer(torch.randn(1, 1, 11, 20, 30), net)
    assert y.shape == (1, 5, 11, 20, 30)


def test_torchscript_matches_eager():
    net = NeuroLinkNet(**SMALL).eval()
    scripted = torch.jit.script(net)
    x = torch.randn(1, 1, 7, 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spatial_dims": 2}, "spatial_dims"),
        ({"kernel_size": 6}, "kernel_size"),
        ({"features": (8,)}, "features"),
        ({"in_channels": 0}, "in_channels"),
        ({"extend_scope": float("nan")}, "extend_scope"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NeuroLinkNet(**{**SMALL, **kwargs})


def test_bad_inputs():
    net = NeuroLinkNet(**SMALL)
    with pytest.raises(ValueError, match="1 input channels"):
        net(torch.randn(1, 2, 8, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        net(torch.randn(1, 8, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        split_outputs(torch.randn(1, 3, 4, 4, 4), out_channels=1)


@pytest.mark.parametrize("seg_channels", [1, 2])
def test_interpret_outputs_reads_all_heads_and_any_selection_alike(seg_channels):
    torch.manual_seed(0)
    pred = torch.randn(seg_channels + 4, 5, 6, 7)
    pred[seg_channels : seg_channels + 3, 0, 0, :2] = 0.0  # undefined direction
    full = interpret_outputs(pred, seg_channels, threshold=0.4)
    seg = pred[:seg_channels]
    prob = torch.sigmoid(seg) if seg_channels == 1 else torch.softmax(seg, dim=0)[1:2]
    assert torch.equal(full["prob"], prob) and torch.equal(full["mask"], prob >= 0.4)
    norm = full["direction"].norm(dim=0)
    assert torch.allclose(norm[norm > 0], torch.ones(())) and (norm[0, 0, :2] == 0).all()
    raw = pred[seg_channels : seg_channels + 3]
    unit = raw / torch.linalg.vector_norm(raw, dim=0, keepdim=True)
    assert torch.allclose(full["direction"][:, norm > 0], unit[:, norm > 0], atol=1e-6)
    assert torch.equal(full["distance"], pred[-1:])
    assert head_channels(seg_channels) == list(range(seg_channels + 4))
    for heads in (("seg",), ("seg", "direction"), ("seg", "distance"), ("distance", "seg")):
        chosen = interpret_outputs(pred[head_channels(seg_channels, heads)], seg_channels, 0.4, heads)
        for name in ("prob", "mask", "direction", "distance"):
            if name in ("prob", "mask") or name in heads:
                assert torch.equal(chosen[name], full[name]), (heads, name)
            else:
                assert chosen[name] is None
    batched = interpret_outputs(pred[None], seg_channels, 0.4)
    assert torch.equal(batched["prob"][0], full["prob"]) and torch.equal(batched["direction"][0], full["direction"])
    assert interpret_outputs(seg, seg_channels)["direction"] is None  # a segmentation-only network


def test_output_reading_refuses_bad_arguments():
    assert head_channels(1, ("seg", "distance")) == [0, 4]
    for bad in (0, 0.0, -0.1, 1.5, float("nan"), True, "x"):
        with pytest.raises(ValueError, match="threshold must"):
            check_threshold(bad)
    assert check_threshold(1) == 1.0
    with pytest.raises(ValueError, match="out_channels must be 1"):
        interpret_outputs(torch.zeros(7, 2, 2, 2), out_channels=3)
    with pytest.raises(ValueError, match="unknown output heads"):
        head_channels(1, ("seg", "dir"))
    with pytest.raises(ValueError, match="heads must include 'seg'"):
        interpret_outputs(torch.zeros(1, 2, 2, 2), 1, heads=("distance",))
    with pytest.raises(ValueError, match="take 2"):
        interpret_outputs(torch.zeros(3, 2, 2, 2), 1, heads=("seg", "distance"))


def test_block_computes_its_convolutions_of_the_input_as_one_and_matches_the_separate_ones():
    from neurolink_monai.networks import MultiViewBlock

    torch.manual_seed(0)
    block = MultiViewBlock(3, 4, kernel_size=3, extend_scope=1.0, dsconv=True, norm=("instance", {"affine": True}),
                           act=("leakyrelu", {"negative_slope": 0.1}))  # fmt: skip
    x = torch.randn(1, 3, 6, 10, 12)

    def separate(module: MultiViewBlock, inp: torch.Tensor) -> list[torch.Tensor]:
        return [module.standard(inp)] + [snake(inp) for snake in module.snakes]

    for fused, plain in zip(block._views_one_convolution(x), separate(block, x)):
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    block(x).square().sum().backward()
    fused_grads = {n: p.grad.clone() for n, p in block.named_parameters() if n.endswith("weight")}
    block.zero_grad()
    block.refine(block.fuse(torch.cat(separate(block, x), dim=1))).square().sum().backward()
    for name, grad in fused_grads.items():
        torch.testing.assert_close(grad, dict(block.named_parameters())[name].grad, rtol=1e-4, atol=1e-5)


def test_block_inference_fuses_the_views_without_concatenating_and_matches_the_concatenation():
    from neurolink_monai.networks import MultiViewBlock

    torch.manual_seed(0)
    block = MultiViewBlock(3, 4, kernel_size=3, extend_scope=1.0, dsconv=True, norm=("instance", {"affine": True}),
                           act=("leakyrelu", {"negative_slope": 0.1})).eval()  # fmt: skip
    x = torch.randn(2, 3, 6, 10, 12)
    with torch.no_grad():
        views = block._views_one_convolution(x)
        torch.testing.assert_close(block._fuse_views(views), block.fuse(torch.cat(views, dim=1)), rtol=1e-5, atol=1e-5)
        with torch.inference_mode():
            fast = block(x)
    with torch.enable_grad():
        torch.testing.assert_close(fast, block(x).detach(), rtol=1e-5, atol=1e-5)  # with gradients: concatenated


def test_inference_downsampling_equals_max_pooling():
    net = NeuroLinkNet(**SMALL)
    x = torch.randn(2, 3, 4, 6, 8)
    x[0, 0, :2, :2, :2] = 1.0  # ties
    with torch.no_grad():
        assert torch.equal(net._downsample(x), torch.nn.functional.max_pool3d(x, 2))


def test_inference_folds_every_batch_norm_into_its_layer_with_the_same_outputs(monkeypatch):
    import neurolink_monai.networks.neurolink_net as net_module
    from neurolink_monai.networks import DSConv3D

    torch.manual_seed(0)
    net = NeuroLinkNet(**SMALL, norm=("batch", {"affine": True}), local_contrast=(2, 3, 3))
    with torch.no_grad():
        net.train()(torch.randn(2, 1, 8, 12, 12) * 2 + 1)  # running statistics away from 0 / 1
    net.eval()
    x = torch.randn(1, 1, 7, 9, 10)
    with torch.no_grad():
        folded = net(x)
        scripted = torch.jit.script(net)(x)  # TorchScript applies the norms one by one
    xg = x.clone().requires_grad_(True)
    net(xg).square().sum().backward()  # eval with gradients: nothing folded (in-place activations follow)
    grads = [xg.grad] + [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    monkeypatch.setattr(net_module, "fold_norm", lambda weight, bias, norm: None)
    monkeypatch.setattr(DSConv3D, "_folded_fusion", lambda self: None)
    with torch.no_grad():
        plain = net(x)
    torch.testing.assert_close(folded, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(scripted, plain, rtol=1e-5, atol=1e-5)
    xg = x.clone().requires_grad_(True)
    net(xg).square().sum().backward()
    for folded_grad, plain_grad in zip(grads, [xg.grad] + [p.grad for p in net.parameters()]):
        torch.testing.assert_close(folded_grad, plain_grad, rtol=1e-4, atol=1e-4)
