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


@pytest.mark.parametrize("batch", [1, 2])
def test_instance_norm_with_gradients_matches_torch_and_is_no_view(batch):
    torch.manual_seed(0)
    ours, ref = make_norm(("instance", {"affine": True}), 3), nn.InstanceNorm3d(3, affine=True)
    with torch.no_grad():
        ref.weight.uniform_(-2, 2), ref.bias.uniform_(-1, 1)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(batch, 3, 4, 5, 6) * 3 + 5
    grad = torch.randn_like(x)
    results = []
    for layer in (ours, ref):
        leaf = x.clone().requires_grad_(True)
        out = torch.relu_(layer(leaf))  # the in-place activation that follows every norm in the networks
        out.backward(grad)
        results.append((out, leaf.grad, layer.weight.grad, layer.bias.grad, out._base))
    (out, *grads, base), (expected, *expected_grads, _) = results
    assert base is None  # not a view: the activation's backward then copies no gradient
    if batch == 1:  # a batch norm of the one sample: the same computation
        assert torch.equal(out, expected) and all(torch.equal(g, e) for g, e in zip(grads, expected_grads))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, atol=1e-4, rtol=1e-4)


def test_instance_norm_with_running_statistics_or_scripted_is_torch_s():
    torch.manual_seed(0)
    ours = make_norm(("instance", {"affine": True}), 2)
    tracked = make_norm(("instance", {"track_running_stats": True}), 2)
    x = torch.randn(1, 2, 3, 4, 5, requires_grad=True)
    tracked(x * 2 + 3)
    assert (tracked.running_mean > 0).all()  # torch's layer, which keeps its statistics up to date
    tracked.eval()
    y = torch.randn(1, 2, 3, 4, 5)
    with torch.no_grad():
        assert tracked(y) is not y
    with pytest.raises(ValueError, match="more than 1"):
        ours(torch.randn(1, 2, 1, 1, 1, requires_grad=True))  # torch's own message for one voxel
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
