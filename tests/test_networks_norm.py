# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import pytest
import torch
from torch import nn

from neurolink_monai.networks.norm import InstanceNorm3d, batch_norm_affine, fold_norm, make_norm


@pytest.mark.parametrize("affine", [True, False])
def test_instance_norm_in_place_without_gradients_matches_torch(affine):
    torch.manual_seed(0)
    ours, ref = make_norm(("instance", {"affine": affine}), 3), nn.InstanceNorm3d(3, affine=affine)
    assert type(ours) is InstanceNorm3d and ours.state_dict().keys() == ref.state_dict().keys()
    if affine:
        with torch.no_grad():
            ref.weight.uniform_(-2, 2), ref.bias.uniform_(-1, 1)
        ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 4, 5, 6) * 3 + 5
    expected = ref(x)
    with torch.no_grad():
        given = x.clone()
        out = ours(given)
    assert out is given  # normalised in place: the network only passes its own temporaries
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(ours(x.clone()), expected, atol=1e-5, rtol=1e-5)


def test_instance_norm_with_gradients_or_running_statistics_is_torch_s():
    torch.manual_seed(0)
    ours = make_norm(("instance", {"affine": True}), 2)
    x = torch.randn(1, 2, 3, 4, 5, requires_grad=True)
    out = ours(x)
    assert out is not x and torch.equal(out, nn.functional.instance_norm(x, weight=ours.weight, bias=ours.bias))
    out.sum().backward()
    assert x.grad is not None
    tracked = make_norm(("instance", {"track_running_stats": True}), 2).eval()
    y = torch.randn(1, 2, 3, 4, 5)
    with torch.no_grad():
        assert tracked(y) is not y
    assert type(make_norm("batch", 2)) is nn.BatchNorm3d
    scripted = torch.jit.script(ours)
    with torch.no_grad():
        torch.testing.assert_close(scripted(y), ours(y.clone()), atol=1e-5, rtol=1e-5)


def test_fold_norm_folds_an_eval_batch_norm_and_nothing_else():
    torch.manual_seed(0)
    conv = nn.Conv3d(3, 4, 3, padding=1)
    norm = nn.BatchNorm3d(4)
    norm(conv(torch.randn(2, 3, 5, 6, 7) * 3 + 1))  # running statistics away from 0 / 1
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    assert fold_norm(conv.weight, conv.bias, norm) is None  # training: batch statistics
    assert fold_norm(conv.weight, conv.bias, make_norm(("instance", {"affine": True}), 4)) is None
    norm.eval()
    x = torch.randn(2, 3, 5, 6, 7)
    for bias in (conv.bias, None):
        weight, folded_bias = fold_norm(conv.weight, bias, norm)
        expected = norm(torch.nn.functional.conv3d(x, conv.weight, bias, padding=1))
        torch.testing.assert_close(torch.nn.functional.conv3d(x, weight, folded_bias, padding=1), expected)
    scale, shift = batch_norm_affine(norm)
    assert scale.shape == shift.shape == (4,)
    assert batch_norm_affine(nn.Identity()) is None
