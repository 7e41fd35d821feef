# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""MorphologyContinuityLoss does what it claims on constructed neurites: gaps cost, other errors do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data import MetaTensor
from monai.losses import DiceLoss
from scipy import ndimage as ndi

from neurolink_monai.losses import MorphologyContinuityLoss, build_centreline_graph
from neurolink_monai.skeleton import thin_curves

from helpers import tube

SHAPE = (12, 32, 12)  # (D, H, W); the straight neurite runs along H


def straight_tube(shape=SHAPE, radius: float = 2.0, y0: int = 2, y1: int = 30) -> np.ndarray:
    """A neurite along H through the centre of the (z, x) plane, rows ``y0 .. y1 - 1``."""
    cz, cx = (shape[0] - 1) / 2, (shape[2] - 1) / 2
    return tube(shape, (cz, y0, cx), (cz, y1 - 1, cx), radius)


def segment_tube(shape, a, b, radius) -> tuple[np.ndarray, np.ndarray]:
    """Voxels within ``radius`` of segment ab, and each voxel's coordinate along the segment axis."""
    p = np.stack(np.indices(shape), axis=-1).astype(np.float64)
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    dist = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)
    return dist <= radius, t * np.linalg.norm(ab)


def batch(*volumes: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(volumes)[:, None].astype(np.float32))


def to_logits(prob: torch.Tensor, scale: float = 8.0) -> torch.Tensor:
    return (2.0 * prob - 1.0) * scale


def cut(mask: np.ndarray, y: int, width: int = 1) -> np.ndarray:
    out = mask.copy()
    out[:, y : y + width] = False
    return out


def thickened_border(mask: np.ndarray, n: int) -> np.ndarray:
    """``mask`` plus ``n`` false-positive voxels on its outer border."""
    shell = np.argwhere(ndi.binary_dilation(mask) & ~mask)
    out = mask.copy()
    out[tuple(shell[np.linspace(0, len(shell) - 1, n).astype(int)].T)] = True
    return out


def thinned_border(mask: np.ndarray, n: int) -> np.ndarray:
    """``mask`` minus ``n`` of its surface voxels (false negatives off the centreline)."""
    surface = np.argwhere(mask & ~ndi.binary_erosion(mask))
    out = mask.copy()
    out[tuple(surface[np.linspace(0, len(surface) - 1, n).astype(int)].T)] = False
    return out


CONFIGS = [
    pytest.param(dict(sigmoid=True, penalty="log"), id="logits-log"),
    pytest.param(dict(sigmoid=True, penalty="linear"), id="logits-linear"),
    pytest.param(dict(sigmoid=False, penalty="log"), id="prob-log"),
    pytest.param(dict(sigmoid=False, penalty="linear"), id="prob-linear"),
]


def prepare(prob: torch.Tensor, config: dict) -> torch.Tensor:
    return to_logits(prob) if config["sigmoid"] else prob


# --- claim 1: a gap costs more than the same number of wrong voxels elsewhere --------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("elsewhere", [thickened_border, thinned_border])
def test_gap_costs_more_than_same_number_of_wrong_voxels_elsewhere(config, elsewhere):
    label = straight_tube()
    gapped = cut(label, 16)
    n_wrong = int((label ^ gapped).sum())
    other = elsewhere(label, n_wrong)
    assert int((label ^ other).sum()) == n_wrong
    loss = MorphologyContinuityLoss(**config)
    target = batch(label)
    gap_loss = float(loss(prepare(batch(gapped), config), target))
    other_loss = float(loss(prepare(batch(other), config), target))
    # a 1-slice gap is charged to 2 * radius + 1 = 7 of the ~24 centreline voxels; the border errors to none
    assert gap_loss > 0.2 * (1.0 if config["penalty"] == "linear" else 5.0)
    assert gap_loss > 100 * other_loss + 0.1
    # the voxel-wise Dice loss hardly tells the two apart: this is what the continuity term adds
    dice = DiceLoss(sigmoid=config["sigmoid"])
    assert (
        abs(float(dice(prepare(batch(gapped), config), target)) - float(dice(prepare(batch(other), config), target)))
        < 0.05
    )


def test_gap_on_a_centreline_voxel_is_exactly_charged_to_its_window():
    label = straight_tube()
    loss = MorphologyContinuityLoss(radius=3, sigmoid=False, penalty="linear")
    k = int(thin_curves(label).sum())
    assert float(loss(batch(cut(label, 16)), batch(label))) == pytest.approx(7 / k)
    assert float(loss(batch(cut(label, 14, width=3)), batch(label))) == pytest.approx(9 / k)
    # radius 0 is clDice's topology sensitivity on the hard centreline: one voxel per cut voxel
    loss0 = MorphologyContinuityLoss(radius=0, sigmoid=False, penalty="linear")
    assert float(loss0(batch(cut(label, 16)), batch(label))) == pytest.approx(1 / k)


@pytest.mark.parametrize("seed", range(6))
def test_every_cut_that_disconnects_an_oblique_neurite_is_charged(seed):
    rng = np.random.default_rng(seed)
    shape = (20, 20, 20)
    label, axial = segment_tube(shape, rng.uniform(2, 5, 3), rng.uniform(15, 18, 3), rng.uniform(1.0, 2.4))
    middle = float(np.median(axial[label]))
    loss = MorphologyContinuityLoss(sigmoid=False, penalty="linear")
    disconnected = 0
    for width in (1.0, 1.5, 2.0, 3.0):
        pred = label & ~(np.abs(axial - middle) < width / 2)
        _, pieces = ndi.label(pred, structure=np.ones((3, 3, 3)))
        value = float(loss(batch(pred), batch(label)))
        if pieces > 1:
            disconnected += 1
            assert value > 0.2, (seed, width)
    assert disconnected >= 1  # at least the 3-voxel cut separates the two ends


def test_a_thin_neurite_next_to_a_thick_one_is_still_charged_for_its_gap():
    shape = (12, 32, 24)
    zz, yy, xx = np.indices(shape)
    thin = ((zz - 6) ** 2 + (xx - 6) ** 2 <= 1) & (yy >= 2) & (yy < 30)
    thick = ((zz - 6) ** 2 + (xx - 15) ** 2 <= 16) & (yy >= 2) & (yy < 30)
    assert not (ndi.binary_dilation(thin) & thick).any()  # separate neurites
    label = thin | thick
    loss = MorphologyContinuityLoss(sigmoid=False, penalty="linear")
    assert float(loss(batch(label & ~(thin & (yy == 16))), batch(label))) > 0.05
    assert float(loss(batch(label), batch(label))) == 0.0


# --- claim 2: the loss falls as a gap closes -----------------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
def test_loss_falls_as_the_gap_narrows(config):
    label = straight_tube()
    loss = MorphologyContinuityLoss(**config)
    values = [float(loss(prepare(batch(cut(label, 16 - w // 2, w)), config), batch(label))) for w in (7, 5, 3, 1)]
    values.append(float(loss(prepare(batch(label), config), batch(label))))
    assert all(a > b for a, b in zip(values, values[1:])), values


@pytest.mark.parametrize("config", CONFIGS)
def test_loss_falls_as_the_gap_brightens(config):
    label = straight_tube()
    loss = MorphologyContinuityLoss(**config)
    gap = torch.from_numpy(label & ~cut(label, 15, 2))
    values = []
    for level in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        prob = torch.from_numpy(label.astype(np.float32))
        prob[gap] = level
        pred = to_logits(prob, 6.0) if config["sigmoid"] else prob
        values.append(float(loss(pred[None, None], batch(label))))
    assert all(a > b for a, b in zip(values, values[1:])), values


# --- claim 3: gradients at the gap are finite and non-zero ---------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
def test_gradient_at_the_gap_is_finite_non_zero_and_dominant(config):
    label = straight_tube()
    pred = prepare(batch(cut(label, 16)), config).requires_grad_(True)
    MorphologyContinuityLoss(**config)(pred, batch(label)).backward()
    grad = pred.grad[0, 0]
    assert torch.isfinite(pred.grad).all()
    at_gap = grad[:, 16].abs().sum()
    assert at_gap > 0
    assert bool((grad[:, 16] <= 0).all())  # descent brightens the gap
    if config["sigmoid"] and config["penalty"] == "log":
        # a confident dark gap (logit -8) still gets a gradient of order 1 / |S| per window, not sigmoid'(-8)
        assert at_gap > 1e3 * (grad.abs().sum() - at_gap)


# --- claim 4: a perfect prediction gives the minimum ---------------------------------------------------------------


@pytest.mark.parametrize("config", CONFIGS)
def test_perfect_prediction_gives_the_minimum(config):
    label = straight_tube()
    loss = MorphologyContinuityLoss(**config)
    perfect = float(loss(prepare(batch(label), config), batch(label)))
    if not config["sigmoid"]:
        assert perfect == 0.0
    rng = np.random.default_rng(0)
    for _ in range(5):
        flipped = label ^ (rng.random(label.shape) < 0.05)
        assert float(loss(prepare(batch(flipped), config), batch(label))) >= perfect


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), penalty=st.sampled_from(["log", "linear"]))
def test_probabilities_never_beat_the_perfect_prediction_and_brightening_never_hurts(seed, penalty):
    rng = np.random.default_rng(seed)
    label = straight_tube((6, 14, 6), radius=1.5, y0=1, y1=13)
    loss = MorphologyContinuityLoss(radius=2, sigmoid=False, penalty=penalty)
    prob = torch.from_numpy(rng.random(label.shape).astype(np.float32))
    brighter = torch.clamp(prob + torch.from_numpy(rng.random(label.shape).astype(np.float32)) * 0.3, max=1.0)
    target = batch(label)
    value = float(loss(prob[None, None], target))
    assert value >= float(loss(target, target)) == 0.0
    assert float(loss(brighter[None, None], target)) <= value
    # false positives outside the label are the Dice/CE terms' business, not this loss's
    outside = prob.clone()
    outside[torch.from_numpy(~label)] = 1.0
    assert float(loss(outside[None, None], target)) == pytest.approx(value)


# --- reductions, batches, empty labels, other inputs ---------------------------------------------------------------


def test_batch_reductions_and_empty_samples():
    label = straight_tube()
    empty = np.zeros(SHAPE, dtype=bool)
    target = batch(label, empty, label)
    pred = batch(cut(label, 16), empty, label)
    per = MorphologyContinuityLoss(sigmoid=False, reduction="none")(pred, target)
    assert per.shape == (3,)
    single = MorphologyContinuityLoss(sigmoid=False)(batch(cut(label, 16)), batch(label))
    assert float(per[0]) == pytest.approx(float(single))
    assert float(per[1]) == 0.0 and float(per[2]) == 0.0
    # mean over the samples that have a centreline
    mean = MorphologyContinuityLoss(sigmoid=False)(pred, target)
    assert float(mean) == pytest.approx(float(per[0]) / 2)
    assert float(MorphologyContinuityLoss(sigmoid=False, reduction="sum")(pred, target)) == pytest.approx(
        float(per.sum())
    )


def test_all_empty_batch_is_zero_and_differentiable():
    pred = torch.randn(2, 1, 6, 6, 6, requires_grad=True)
    value = MorphologyContinuityLoss()(pred, torch.zeros(2, 1, 6, 6, 6))
    value.backward()
    assert value.item() == 0.0 and torch.equal(pred.grad, torch.zeros_like(pred))


def test_two_dimensional_input_and_metatensor_and_integer_label():
    yy, xx = np.indices((24, 24))
    label = (np.abs(yy - 12) <= 1) & (xx >= 2) & (xx < 22)
    gapped = label.copy()
    gapped[:, 11] = False
    loss = MorphologyContinuityLoss(sigmoid=False, penalty="linear")
    target = MetaTensor(torch.from_numpy(label[None, None].astype(np.uint8)))
    pred = MetaTensor(torch.from_numpy(gapped[None, None].astype(np.float32)), meta={"filename_or_obj": "x.tif"})
    value = loss(pred, target)
    assert type(value) is torch.Tensor and float(value) > 0.2
    assert float(loss(target.float(), target)) == 0.0


def test_given_centreline_replaces_the_thinning():
    label = straight_tube()
    axis = np.zeros(SHAPE, dtype=bool)
    axis[SHAPE[0] // 2 - 1, 2:30, SHAPE[2] // 2 - 1] = True  # the rasterised trace, e.g. from an SWC file
    loss = MorphologyContinuityLoss(radius=3, sigmoid=False, penalty="linear")
    assert float(loss(batch(cut(label, 16)), batch(label), centreline=batch(axis))) == pytest.approx(7 / 28)
    # a tip gap is charged to the radius + 1 voxels left before the end of the trace
    assert float(loss(batch(cut(label, 2)), batch(label), centreline=batch(axis))) == pytest.approx(4 / 28)


def test_centreline_graph_is_one_connected_curve_per_neurite():
    label = straight_tube()
    graph = build_centreline_graph(np.stack([label, label]))
    k = graph.num_centreline
    assert graph.counts().tolist() == [k // 2, k // 2]
    degree = (graph.neighbours < k).sum(axis=1)
    assert degree.max() == 2 and (degree == 1).sum() == 4  # two simple curves, two tips each
    assert int(thin_curves(label).sum()) == k // 2


# --- bad input -----------------------------------------------------------------------------------------------------


def test_bad_input_raises_clear_errors():
    loss = MorphologyContinuityLoss()
    label = batch(straight_tube())
    with pytest.raises(ValueError, match=r"same shape.*\(1, 1, 12, 32, 12\).*\(1, 1, 12, 32, 11\)"):
        loss(torch.zeros(1, 1, 12, 32, 12), label[..., :11])
    with pytest.raises(ValueError, match=r"one foreground channel.*2 channels"):
        loss(torch.zeros(1, 2, 12, 32, 12), label.repeat(1, 2, 1, 1, 1))
    bad = label.clone()
    bad[0, 0, 0, 0, 0] = 2.0
    bad[0, 0, 0, 0, 1] = 0.5
    with pytest.raises(ValueError, match=r"binary.*2 voxel\(s\).*0\.5, 2"):
        loss(torch.zeros_like(label), bad)
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\].*\[-1, "):
        MorphologyContinuityLoss(sigmoid=False)(label * 2 - 1, label)
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\).*\[12, 32, 12\]"):
        loss(torch.zeros(SHAPE), label[0, 0])
    with pytest.raises(ValueError, match=r"centreline must have the target's shape"):
        loss(torch.zeros_like(label), label, centreline=torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(TypeError, match="input must be a torch.Tensor"):
        loss(np.zeros((1, 1, 4, 4, 4)), torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match="radius must be >= 0, got -1"):
        MorphologyContinuityLoss(radius=-1)
    with pytest.raises(TypeError, match="radius must be an int"):
        MorphologyContinuityLoss(radius=1.5)
    with pytest.raises(ValueError, match="penalty must be one of"):
        MorphologyContinuityLoss(penalty="square")
    with pytest.raises(ValueError, match="eps must be > 0"):
        MorphologyContinuityLoss(eps=0.0)
