# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""NeuroLinkLoss: the four terms, their switches, the accepted layouts and the errors on bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import ConcatItemsd
from scipy import ndimage as ndi

from neurolink_monai.losses import STACKED_TARGET_CHANNELS, MorphologyContinuityLoss, NeuroLinkLoss

from helpers import tube

SHAPE = (10, 24, 10)  # (D, H, W); a straight neurite along H
TERMS = ("seg", "continuity", "direction", "distance")
NO_HEADS = dict(lambda_dir=0.0, lambda_dist=0.0)


def tube_label(shape=SHAPE) -> np.ndarray:
    return tube(shape, (5, 2, 5), (5, 21, 5), math.sqrt(2))


def targets(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """label (B, 1, ...), direction (B, 3, ...) along H in a one-voxel band, distance (B, 1, ...) = EDT."""
    label = tube_label()
    band = ndi.binary_dilation(label)
    direction = np.zeros((3, *SHAPE), dtype=np.float32)
    direction[1][band] = 1.0
    distance = ndi.distance_transform_edt(label).astype(np.float32)
    as_batch = lambda a: torch.from_numpy(np.repeat(a[None], batch, axis=0))  # noqa: E731
    return as_batch(label[None].astype(np.float32)), as_batch(direction), as_batch(distance[None])


def stacked(batch: int = 2) -> torch.Tensor:
    return torch.cat(targets(batch), dim=1)


def perfect_pred(batch: int = 2, scale: float = 8.0) -> torch.Tensor:
    label, direction, distance = targets(batch)
    return torch.cat([(2 * label - 1) * scale, direction, distance], dim=1)


def test_total_is_the_weighted_sum_of_the_logged_terms_and_every_head_gets_gradient():
    torch.manual_seed(0)
    loss = NeuroLinkLoss(lambda_seg=1.0, lambda_cont=0.5, lambda_dir=2.0, lambda_dist=0.25)
    pred = torch.randn(2, 5, *SHAPE, requires_grad=True)
    total = loss(pred, stacked())
    terms = loss.last_terms
    assert set(terms) == set(TERMS) and all(isinstance(v, float) for v in terms.values())
    expected = terms["seg"] + 0.5 * terms["continuity"] + 2.0 * terms["direction"] + 0.25 * terms["distance"]
    assert total.dim() == 0 and total.item() == pytest.approx(expected, rel=1e-5)
    total.backward()
    for channel in range(5):
        assert pred.grad[:, channel].abs().sum() > 0, channel
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("off", TERMS)
def test_each_term_can_be_switched_off(off):
    weights = {"lambda_seg": 1.0, "lambda_cont": 1.0, "lambda_dir": 1.0, "lambda_dist": 1.0}
    weights[
        {"seg": "lambda_seg", "continuity": "lambda_cont", "direction": "lambda_dir", "distance": "lambda_dist"}[off]
    ] = 0.0
    loss = NeuroLinkLoss(**weights)
    torch.manual_seed(1)
    pred = torch.randn(2, 5, *SHAPE, requires_grad=True)
    total = loss(pred, stacked())
    assert off not in loss.last_terms and len(loss.last_terms) == 3
    assert total.item() == pytest.approx(sum(loss.last_terms.values()), rel=1e-5)
    total.backward()
    if off == "direction":
        assert pred.grad[:, 1:4].abs().sum() == 0
    if off == "distance":
        assert pred.grad[:, 4].abs().sum() == 0


def test_perfect_prediction_scores_near_zero_on_every_term():
    loss = NeuroLinkLoss()
    loss(perfect_pred(scale=20.0), stacked())
    terms = loss.last_terms
    assert terms["direction"] == pytest.approx(0.0, abs=1e-6)
    assert terms["distance"] == pytest.approx(0.0, abs=1e-6)
    assert terms["continuity"] < 1e-6
    assert terms["seg"] < 0.01


def test_direction_term_is_sign_invariant_and_scale_free():
    loss = NeuroLinkLoss(lambda_seg=0.0, lambda_cont=0.0, lambda_dist=0.0)
    label, direction, distance = targets()
    seg = torch.zeros_like(label)

    def dir_term(pred_dir: torch.Tensor) -> float:
        return float(loss(torch.cat([seg, pred_dir, distance], dim=1), stacked()))

    assert dir_term(-3.0 * direction) == pytest.approx(0.0, abs=1e-6)
    assert dir_term(0.01 * direction) == pytest.approx(0.0, abs=1e-6)
    perpendicular = direction[:, [1, 0, 2]]  # along D instead of H
    assert dir_term(perpendicular) == pytest.approx(1.0, abs=1e-6)
    diagonal = direction.clone()
    diagonal[:, 0] = direction[:, 1]  # 45 degrees: 1 - |cos| = 1 - 1/sqrt(2)
    assert dir_term(diagonal) == pytest.approx(1 - 2**-0.5, abs=1e-5)
    # an all-zero prediction is as bad as a perpendicular one and keeps finite gradients
    zero = torch.zeros_like(direction, requires_grad=True)
    value = loss(torch.cat([seg, zero, distance], dim=1), stacked())
    value.backward()
    assert value.item() == pytest.approx(1.0) and torch.isfinite(zero.grad).all()
    # outside the band the prediction is free
    free = direction.clone()
    free[:, :, 0] = torch.tensor([5.0, -2.0, 7.0])[None, :, None, None]
    assert dir_term(free) == pytest.approx(0.0, abs=1e-6)


def test_distance_term_is_smooth_l1_in_the_dilated_band_only():
    loss = NeuroLinkLoss(lambda_seg=0.0, lambda_cont=0.0, lambda_dir=0.0, distance_band=2)
    label, direction, distance = targets()
    seg = torch.zeros_like(label)

    def dist_term(pred_dist: torch.Tensor) -> float:
        return float(loss(torch.cat([seg, direction, pred_dist], dim=1), stacked()))

    assert dist_term(distance) == pytest.approx(0.0)
    band = F.max_pool3d(label, 5, 1, 2) > 0
    assert dist_term(distance + band.float()) == pytest.approx(0.5)  # smooth-L1(1, beta=1)
    near = distance.clone()
    near[:, :, 5, 12, 8] = 2.0  # two voxels beside the neurite: background that must learn 0
    assert not label[0, 0, 5, 12, 8] and dist_term(near) > 0
    far = distance.clone()
    far[:, :, 0, 0, 0] = 50.0  # far from any neurite: not taught
    assert dist_term(far) == pytest.approx(0.0)


def test_continuity_term_is_the_morphology_continuity_loss_of_the_seg_logits():
    torch.manual_seed(2)
    pred = torch.randn(2, 5, *SHAPE)
    loss = NeuroLinkLoss(lambda_seg=0.0, lambda_dir=0.0, lambda_dist=0.0, continuity_radius=2)
    expected = MorphologyContinuityLoss(radius=2)(pred[:, :1], stacked()[:, :1])
    assert loss(pred, stacked()).item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_gap_raises_the_loss_mainly_through_the_continuity_term():
    loss = NeuroLinkLoss()
    good = perfect_pred()
    loss(good, stacked())
    before = loss.last_terms
    gapped = good.clone()
    gapped[:, 0, :, 12] = -8.0
    loss(gapped, stacked())
    after = loss.last_terms
    assert after["continuity"] - before["continuity"] > 5 * (after["seg"] - before["seg"])


def test_target_layouts_agree():
    torch.manual_seed(3)
    pred = torch.randn(2, 5, *SHAPE)
    label, direction, distance = targets()
    loss = NeuroLinkLoss()
    from_stack = loss(pred, stacked()).item()
    from_dict = loss(pred, {"label": label, "direction": direction, "distance": distance}).item()
    assert from_dict == pytest.approx(from_stack, rel=1e-6)
    # the bundle's way: ConcatItemsd stacks everything under "target", the mask stays under "label"
    data = ConcatItemsd(["label", "direction", "distance"], name="target", dim=0)(
        {"label": label[0], "direction": direction[0], "distance": distance[0]}
    )
    assert data["target"].shape == (STACKED_TARGET_CHANNELS, *SHAPE) and data["label"].shape == (1, *SHAPE)
    assert loss(pred[:1], data["target"][None]).item() == pytest.approx(loss(pred[:1], stacked(1)).item(), rel=1e-6)
    # label alone: segmentation + continuity only
    seg_only = NeuroLinkLoss(**NO_HEADS)
    assert torch.isfinite(seg_only(pred, label))
    assert set(seg_only.last_terms) == {"seg", "continuity"}
    single_task = seg_only(pred[:, :1], label)  # NeuroLinkNet(multitask=False)
    assert single_task.item() == pytest.approx(seg_only(pred, label).item())


def test_metatensor_inputs_and_integer_labels():
    pred = MetaTensor(perfect_pred(), meta={"filename_or_obj": "patch.tif"})
    label, direction, distance = targets()
    target = {"label": MetaTensor(label.to(torch.uint8)), "direction": direction, "distance": distance}
    value = NeuroLinkLoss()(pred, target)
    assert type(value) is torch.Tensor and torch.isfinite(value)


def test_two_channel_softmax_output():
    label, direction, distance = targets()
    fg = (2 * label - 1) * 8
    pred = torch.cat([-fg / 2, fg / 2, direction, distance], dim=1)  # background, foreground logits
    loss = NeuroLinkLoss(out_channels=2)
    loss(pred, stacked())
    good = loss.last_terms
    gapped = pred.clone()
    gapped[:, 0, :, 12], gapped[:, 1, :, 12] = 4.0, -4.0
    loss(gapped, stacked())
    assert loss.last_terms["continuity"] > good["continuity"] + 1.0
    assert good["seg"] < 0.05


def transform_targets(shape=(12, 24, 24)) -> torch.Tensor:
    """A stacked (1, 5, D, H, W) target made by the project's transforms from a small SWC trace."""
    from neurolink_monai.transforms import DirectionMap, DistanceMap, SWCToMask

    swc = np.array(
        [[1, 3, 3.0, 4.0, 6.0, 1.5, -1], [2, 3, 12.0, 12.0, 6.0, 1.5, 1], [3, 3, 20.0, 8.0, 5.0, 1.0, 2]],
        dtype=np.float64,
    )
    label = SWCToMask(shape)(swc)
    direction = DirectionMap()(label, swc)
    distance = DistanceMap()(label)
    return torch.cat([torch.as_tensor(np.asarray(a), dtype=torch.float32) for a in (label, direction, distance)])[None]


def test_neurolinknet_output_and_transform_targets_fit_the_loss():
    from neurolink_monai.networks import NeuroLinkNet

    target = transform_targets()
    assert target.shape == (1, STACKED_TARGET_CHANNELS, 12, 24, 24)
    torch.manual_seed(0)
    net = NeuroLinkNet(features=(4, 8), dsconv=False)
    loss = NeuroLinkLoss()
    loss(net(target[:, :1]), target).backward()
    assert set(loss.last_terms) == set(TERMS) and all(np.isfinite(v) for v in loss.last_terms.values())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters() if p.requires_grad)


def test_training_steps_reduce_every_term():
    target = transform_targets()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv3d(8, 5, 3, padding=1))
    image = target[:, :1] + 0.1 * torch.randn_like(target[:, :1])
    loss = NeuroLinkLoss()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-2)
    history = []
    for _ in range(15):
        optimizer.zero_grad()
        out = net(image)
        out = torch.cat([out[:, :4], F.softplus(out[:, 4:])], dim=1)  # the distance head is non-negative
        loss(out, target).backward()
        optimizer.step()
        history.append(loss.last_terms)
    for term in TERMS:
        assert history[-1][term] < 0.5 * history[0][term], (term, history[0][term], history[-1][term])


# --- bad input -----------------------------------------------------------------------------------------------------


def test_bad_shapes_and_values_raise_clear_errors():
    loss = NeuroLinkLoss()
    pred = perfect_pred()
    with pytest.raises(ValueError, match=r"pred has 3 channels"):
        loss(pred[:, :3], stacked())
    with pytest.raises(ValueError, match=r"target has 3 channels.*\[2, 3, 10, 24, 10\]"):
        loss(pred, stacked()[:, :3])
    with pytest.raises(ValueError, match=r"spatial shape of pred \[2, 5, 10, 24, 10\], got \[2, 5, 10, 24, 9\]"):
        loss(pred, stacked()[..., :9])
    with pytest.raises(ValueError, match=r"batch size"):
        loss(pred, stacked(1))
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\).*\[5, 10, 24, 10\]"):
        loss(pred[0], stacked())
    bad = stacked()
    bad[0, 0, 0, 0, 0] = 3.0
    with pytest.raises(ValueError, match=r"label must be binary.*\(3\)"):
        loss(pred, bad)
    negative = stacked()
    negative[0, 4, 0, 0, 0] = -1.0
    with pytest.raises(ValueError, match=r"distance target must be finite and >= 0.*\[-1, "):
        loss(pred, negative)
    not_a_number = stacked()
    not_a_number[0, 2, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"direction target.*NaN"):
        loss(pred, not_a_number)
    label, direction, distance = targets()
    with pytest.raises(ValueError, match=r"'label' entry.*\['direction'\]"):
        loss(pred, {"direction": direction})
    with pytest.raises(
        ValueError, match=r"target\['direction'\] must have shape \[2, 3, 10, 24, 10\].*\[2, 2, 10, 24, 10\]"
    ):
        loss(pred, {"label": label, "direction": direction[:, :2], "distance": distance})


def test_missing_heads_or_targets_for_active_terms_raise():
    label = targets()[0]
    with pytest.raises(ValueError, match=r"lambda_dir=1.0 > 0 but the target holds no direction.*ConcatItemsd|stacked"):
        NeuroLinkLoss()(perfect_pred(), label)
    with pytest.raises(ValueError, match=r"lambda_dist=1.0 > 0 but the target holds no distance"):
        NeuroLinkLoss(lambda_dir=0.0)(perfect_pred(), {"label": label})
    with pytest.raises(ValueError, match=r"pred of shape \[2, 1, 10, 24, 10\] has no direction head"):
        NeuroLinkLoss()(perfect_pred()[:, :1], stacked())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(out_channels=3), "out_channels must be 1"),
        (dict(lambda_dir=-1.0), "direction term must be a number >= 0, got -1.0"),
        (dict(lambda_seg=0, lambda_cont=0, lambda_dir=0, lambda_dist=0), "at least one term weight"),
        (dict(distance_band=-1), "distance_band must be an int >= 0, got -1"),
        (dict(distance_beta=0.0), "distance_beta must be > 0"),
        (dict(direction_eps=0.0), "direction_eps must be > 0"),
        (dict(dice_ce_kwargs={"sigmoid": False}), r"may not set \['sigmoid'\]"),
        (dict(continuity_penalty="cube"), "penalty must be one of"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NeuroLinkLoss(**kwargs)
