# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Synthetic neuron generator: morphology, rendering, label mask, SNR and MIP previews."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.spatial import cKDTree

from neurolink_monai.data import TREE_COLOURS, draw_swc, mip_preview, save_mip_png
from neurolink_monai.data.synthetic import (
    SyntheticConfig,
    centreline_snr,
    concatenate_swc,
    generate_crossing_fibres,
    generate_neuron,
    generate_sample,
    render_components,
    sample_centreline,
    snr_summary,
)
from neurolink_monai.transforms import SWCToMask

SHAPE = (24, 48, 48)
QUIET = dict(num_blobs=0.0, num_crossing_fibres=0.0, background_variation=0.0)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _parent_rows(swc: np.ndarray) -> np.ndarray:
    return np.where(swc[:, 6] > 0, swc[:, 6].astype(int) - 1, -1)


# ----------------------------------------------------------------------------------------------- config


def test_config_defaults_round_trip():
    cfg = SyntheticConfig()
    assert SyntheticConfig.from_dict(cfg.to_dict()) == cfg
    assert SyntheticConfig.preset("medium") == cfg
    assert SyntheticConfig.preset("hard").weak_fraction > cfg.weak_fraction


@pytest.mark.parametrize(
    "kwargs, exc, text",
    [
        ({"weak_fraction": 1.5}, ValueError, "1.5"),
        ({"weak_depth": -0.1}, ValueError, "-0.1"),
        ({"spacing": (1.0, 0.0, 1.0)}, ValueError, "spacing"),
        ({"psf_sigma": (1.0, 1.0)}, ValueError, "psf_sigma"),
        ({"radius": (3.0, 0.5)}, ValueError, "radius"),
        ({"num_stems": (1.5, 3)}, TypeError, "num_stems"),
        ({"signal": "bright"}, TypeError, "bright"),
        ({"label_crossing_fibres": 1}, TypeError, "label_crossing_fibres"),
    ],
)
def test_config_rejects_bad_values(kwargs, exc, text):
    with pytest.raises(exc, match=text):
        SyntheticConfig(**kwargs)


def test_config_unknown_knob_and_preset():
    with pytest.raises(ValueError, match="weak_fractoin"):
        SyntheticConfig.from_dict({"weak_fractoin": 0.1})
    with pytest.raises(ValueError, match="extreme"):
        SyntheticConfig.preset("extreme")


# ------------------------------------------------------------------------------------------- morphology


def test_neuron_is_a_valid_tree_inside_the_volume():
    cfg = SyntheticConfig()
    swc = generate_neuron(SHAPE, _rng(0), cfg)
    assert swc.dtype == np.float64 and swc.shape[1] == 7 and len(swc) > 50
    np.testing.assert_array_equal(swc[:, 0], np.arange(1, len(swc) + 1))
    parent = swc[:, 6]
    assert parent[0] == -1 and swc[0, 1] == 1  # soma root
    assert np.all(parent[1:] >= 1) and np.all(parent[1:] < swc[1:, 0])  # single tree, parents first
    assert set(np.unique(swc[1:, 1])) <= {2, 3}
    zyx = swc[:, [4, 3, 2]]
    assert np.all(zyx >= 0) and np.all(zyx <= np.asarray(SHAPE) - 1)
    r = swc[1:, 5]
    assert r.min() >= cfg.radius[0] - 1e-9 and r.max() <= cfg.radius[1] + 1e-9
    # radii taper: no node is thicker than its parent neurite node
    rows = _parent_rows(swc)[1:]
    neurite_parent = swc[rows, 1] != 1
    assert np.all(swc[1:, 5][neurite_parent] <= swc[rows, 5][neurite_parent] + 1e-9)
    assert np.bincount(rows).max() >= 2  # it branches
    # node spacing is one x-voxel
    step = np.linalg.norm(zyx[1:] - zyx[rows], axis=1)[neurite_parent]
    np.testing.assert_allclose(step, 1.0, atol=1e-6)


def test_neuron_is_deterministic_per_generator_state():
    a = generate_neuron(SHAPE, _rng(3))
    b = generate_neuron(SHAPE, _rng(3))
    c = generate_neuron(SHAPE, _rng(4))
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_branch_angles_follow_the_config_without_tortuosity():
    cfg = SyntheticConfig(tortuosity=0.0, branch_angle=(40.0, 50.0))
    swc = generate_neuron((48, 96, 96), _rng(1), cfg)
    rows = _parent_rows(swc)
    zyx = swc[:, [4, 3, 2]]
    children = np.bincount(rows[rows >= 0], minlength=len(swc))
    angles = []
    for bp in np.flatnonzero((children >= 2) & (swc[:, 1] != 1)):
        kids = np.flatnonzero(rows == bp)
        main, side = kids[0], kids[1:]  # the parent path continues first, daughters were added later
        tangent = zyx[main] - zyx[bp]
        for k in side:
            d = zyx[k] - zyx[bp]
            cos = tangent @ d / np.linalg.norm(tangent) / np.linalg.norm(d)
            angles.append(np.degrees(np.arccos(np.clip(cos, -1, 1))))
    assert len(angles) >= 3
    # the tangent at the branch point is a central difference, so allow a couple of degrees
    assert 38.0 <= min(angles) and max(angles) <= 52.0


def test_anisotropic_spacing_keeps_the_physical_shape():
    cfg = SyntheticConfig(spacing=(3.0, 1.0, 1.0))
    swc = generate_neuron((16, 64, 64), _rng(2), cfg)
    zyx = swc[:, [4, 3, 2]]
    assert np.all(zyx >= 0) and np.all(zyx <= np.array([15, 63, 63]))
    rows = _parent_rows(swc)[1:]
    keep = swc[rows, 1] != 1
    physical_step = np.linalg.norm((zyx[1:] - zyx[rows]) * np.array([3.0, 1.0, 1.0]), axis=1)[keep]
    np.testing.assert_allclose(physical_step, 1.0, atol=1e-6)


def test_crossing_fibres_are_separate_unbranched_trees():
    fib = generate_crossing_fibres((32, 64, 64), _rng(5), count=3)
    roots = np.flatnonzero(fib[:, 6] == -1)
    assert len(roots) == 3
    rows = _parent_rows(fib)
    assert np.bincount(rows[rows >= 0]).max() == 1
    merged = concatenate_swc([generate_neuron((32, 64, 64), _rng(5)), fib])
    assert (merged[:, 6] == -1).sum() == 4
    np.testing.assert_array_equal(merged[:, 0], np.arange(1, len(merged) + 1))
    assert np.all(merged[:, 6] < merged[:, 0])


# -------------------------------------------------------------------------------------------- rendering


def _straight_neurite(shape, radius: float, y: float, z: float) -> np.ndarray:
    xs = np.arange(2.0, shape[2] - 2.0)
    n = len(xs)
    swc = np.zeros((n, 7))
    swc[:, 0] = np.arange(1, n + 1)
    swc[:, 1] = 3
    swc[:, 2], swc[:, 3], swc[:, 4], swc[:, 5] = xs, y, z, radius
    swc[:, 6] = np.arange(0, n)
    swc[0, 6] = -1
    return swc


def test_render_psf_profile_and_signal_calibration():
    shape = (32, 32, 48)
    cfg = SyntheticConfig(psf_sigma=(2.0, 0.8, 0.8), brightness_variation=0.0, weak_fraction=0.0, **QUIET)
    out = render_components(_straight_neurite(shape, 1.0, 16.0, 16.0), shape, _rng(0), cfg)
    profile = out.neurite[:, :, 24]
    assert np.unravel_index(np.argmax(profile), profile.shape) == (16, 16)
    # the peak of a radius-1 neurite is calibrated to `signal`
    assert abs(profile.max() - cfg.signal) / cfg.signal < 0.1

    def width(p):
        x = np.arange(len(p)) - np.argmax(p)
        return np.sqrt((p * x**2).sum() / p.sum())

    # expected per-axis std: sqrt(psf^2 + (r / 2)^2)
    assert abs(width(profile[:, 16]) - np.hypot(2.0, 0.5)) < 0.15
    assert abs(width(profile[16, :]) - np.hypot(0.8, 0.5)) < 0.15
    # thinner neurites carry less fluorophore
    thin = render_components(_straight_neurite(shape, 0.5, 16.0, 16.0), shape, _rng(0), cfg)
    assert thin.neurite.max() < 0.5 * out.neurite.max()


def test_render_noise_is_poisson_plus_read_noise():
    shape = (32, 64, 64)
    cfg = SyntheticConfig(offset=100.0, read_noise=4.0)
    out = render_components(generate_neuron(shape, _rng(1), cfg), shape, _rng(2), cfg)
    assert out.image.dtype == np.uint16 and out.label.dtype == np.uint8
    lam = (out.neurite + out.clutter).astype(np.float64)
    resid = out.image.astype(np.float64) - cfg.offset - lam
    assert abs(resid.mean()) < 0.1
    for lo, hi in ((5, 15), (15, 25)):
        sel = (lam >= lo) & (lam < hi)
        assert sel.sum() > 1000
        expected = np.sqrt(lam[sel].mean() + cfg.read_noise**2)
        assert abs(resid[sel].std() / expected - 1.0) < 0.05


def test_clutter_components():
    shape = (24, 48, 48)
    flat = SyntheticConfig(background=10.0, **QUIET)
    out = render_components(generate_neuron(shape, _rng(1), flat), shape, _rng(1), flat)
    np.testing.assert_allclose(out.clutter, 10.0, rtol=1e-6)
    busy = SyntheticConfig(background=10.0, background_variation=0.5, num_blobs=5.0, num_crossing_fibres=0.0)
    out = render_components(generate_neuron(shape, _rng(1), busy), shape, _rng(1), busy)
    assert out.clutter.min() < 7.0 and out.clutter.max() > 10.0 + 0.3 * busy.signal


def test_unlabelled_crossing_fibres_are_clutter():
    cfg = SyntheticConfig(num_crossing_fibres=2.0, label_crossing_fibres=False, num_blobs=0.0)
    sample = generate_sample(SHAPE, 11, cfg, return_components=True)
    assert (sample["swc"][:, 6] == -1).sum() == 1  # the neuron only
    fibres = generate_crossing_fibres(SHAPE, np.random.default_rng(np.random.SeedSequence(11).spawn(3)[1]), cfg)
    assert len(fibres) > 0
    inside = np.rint(fibres[:, [4, 3, 2]]).astype(int)
    clutter = sample["components"].clutter[tuple(inside.T)]
    assert np.median(clutter) > 1.5 * cfg.background * (1 + cfg.background_variation)
    labelled = generate_sample(SHAPE, 11, SyntheticConfig(num_crossing_fibres=2.0, num_blobs=0.0))
    assert (labelled["swc"][:, 6] == -1).sum() == 1 + (fibres[:, 6] == -1).sum()


def test_weak_stretches_cover_the_requested_fraction():
    shape = (32, 64, 64)
    for fraction in (0.1, 0.4):
        cfg = SyntheticConfig(weak_fraction=fraction, weak_depth=0.9, brightness_variation=0.0)
        sample = generate_sample(shape, 7, cfg)
        swc, weak = sample["swc"], sample["node_weak"]
        rows = _parent_rows(swc)
        length = np.where(rows >= 0, np.linalg.norm(swc[:, 2:5] - swc[np.maximum(rows, 0), 2:5], axis=1), 0)
        length[swc[:, 1] == 1] = 0
        covered = length[weak >= 0.5].sum() / length.sum()
        assert abs(covered - fraction) < 0.05
        faded = sample["node_brightness"][weak == 1.0]
        np.testing.assert_allclose(faded, 1.0 - cfg.weak_depth, rtol=1e-6)
    none = generate_sample(shape, 7, SyntheticConfig(weak_fraction=0.0))
    assert np.all(none["node_weak"] == 0)


def test_weak_fraction_knob_lowers_the_measured_snr():
    shape = (32, 64, 64)
    below2 = []
    for fraction in (0.0, 0.25, 0.5):
        cfg = SyntheticConfig(weak_fraction=fraction)
        sample = generate_sample(shape, 5, cfg, return_components=True)
        snr, length = centreline_snr(sample["components"], sample["swc"], cfg)
        below2.append(snr_summary(snr, length)["frac_below_2"])
    assert below2[0] < 0.05
    assert below2[0] < below2[1] < below2[2]
    assert below2[2] > 0.1


def test_snr_definition_on_a_flat_background():
    shape = (32, 32, 48)
    cfg = SyntheticConfig(brightness_variation=0.0, weak_fraction=0.0, read_noise=3.0, background=16.0, **QUIET)
    swc = _straight_neurite(shape, 1.0, 16.0, 16.0)
    out = render_components(swc, shape, _rng(0), cfg)
    snr, length = centreline_snr(out, swc, cfg)
    middle = snr[len(snr) // 3 : 2 * len(snr) // 3]
    s = out.neurite[16, 16, 24]
    np.testing.assert_allclose(np.median(middle), s / np.sqrt(s + 16.0 + 9.0), rtol=0.02)
    np.testing.assert_allclose(length.sum(), swc[-1, 2] - swc[0, 2], rtol=1e-9)


def test_snr_summary_is_length_weighted():
    summary = snr_summary(np.array([0.5, 1.5, 10.0]), np.array([1.0, 1.0, 2.0]))
    assert summary["frac_below_1"] == pytest.approx(0.25)
    assert summary["frac_below_2"] == pytest.approx(0.5)
    assert summary["q50"] == pytest.approx(1.5)
    with pytest.raises(ValueError, match="equal length"):
        snr_summary(np.ones(3), np.ones(2))


# ------------------------------------------------------------------------------------------------ label


def test_label_is_the_project_rasterisation_of_the_swc():
    for spacing in ((1.0, 1.0, 1.0), (2.0, 1.0, 1.0)):
        cfg = SyntheticConfig(spacing=spacing)
        sample = generate_sample(SHAPE, 2, cfg)
        swc, label = sample["swc"], sample["label"]
        # the same mask a training pipeline derives from the SWC file
        np.testing.assert_array_equal(label, SWCToMask(SHAPE, spacing)(swc)[0])
        assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}
        # every label voxel lies within max(radius, 1) of the centreline (physical units, x voxels)
        a = np.asarray(spacing) / spacing[2]
        smp = sample_centreline(swc, spacing, step=0.2)
        pts = np.concatenate([smp["zyx"], swc[:, [4, 3, 2]]]) * a
        rad = np.maximum(np.concatenate([smp["radius"], swc[:, 5]]), 1.0)
        d, i = cKDTree(pts).query(np.argwhere(label > 0) * a, k=64)
        assert np.all(np.any(d <= rad[np.minimum(i, len(rad) - 1)] + 0.2, axis=1))
        # and holds about the volume of its tubes (soma stems left out) and somata
        smp = sample_centreline(swc, spacing, step=0.25, skip_soma=True)
        tube = (np.pi * np.maximum(smp["radius"], 1.0) ** 2 * smp["length"]).sum() / np.prod(a)
        soma = (4 / 3 * np.pi * swc[swc[:, 1] == 1, 5] ** 3).sum() / np.prod(a)
        assert 0.75 < label.sum() / (tube + soma) < 1.25


@pytest.mark.parametrize(
    "spacing",
    [
        (1.0, 1.0, 1.0),
        (3.0, 1.0, 1.0),
    ],
)
def test_label_holds_every_node_voxel(spacing):
    sample = generate_sample((32, 64, 64), 0, SyntheticConfig(spacing=spacing))
    nodes = np.rint(sample["swc"][:, [4, 3, 2]]).astype(int)
    assert np.all(sample["label"][tuple(nodes.T)] == 1)


def test_sample_is_deterministic_and_seed_dependent():
    a = generate_sample(SHAPE, 9)
    b = generate_sample(SHAPE, np.random.SeedSequence(9))
    c = generate_sample(SHAPE, 10)
    for key in ("image", "label", "swc"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image"], c["image"])
    with pytest.raises(TypeError, match="seed"):
        generate_sample(SHAPE, 1.5)
    with pytest.raises(ValueError, match=r"\(4, 48, 48\)"):
        generate_sample((4, 48, 48), 1)


# ---------------------------------------------------------------------------------------------- preview


def test_mip_preview_and_png(tmp_path):
    img = np.zeros((4, 8, 10), dtype=np.uint16)
    img[2, 3, 4] = 1000
    mask = np.zeros_like(img, dtype=np.uint8)
    mask[1, 5, 6] = 1
    rgb = mip_preview(img, mask, percentiles=(0.0, 100.0), color=(255, 0, 0), alpha=0.5)
    assert rgb.shape == (8, 10, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[3, 4]) == (255, 255, 255)
    assert tuple(rgb[5, 6]) == (128, 0, 0)
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    path = save_mip_png(tmp_path / "p.png", img[None], mask)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), mip_preview(img, mask))
    assert not [p for p in tmp_path.iterdir() if p.name != "p.png"]  # no temporary file left
    with pytest.raises(ValueError, match="png"):
        save_mip_png(tmp_path / "p.jpg", img)
    with pytest.raises(ValueError, match=r"\(2, 8, 10\)"):
        mip_preview(img, mask[:2])
    with pytest.raises(ValueError, match=r"\(8, 10\)"):
        mip_preview(img[0])


def test_draw_swc_colours_each_tree_and_clips():
    rgb = np.zeros((10, 12, 3), dtype=np.uint8)
    # tree 1: an L from (1, 1) over (5, 1) down to (5, 6), z ignored; tree 2 runs off the right edge; tree 3 a root
    swc = np.array(
        [[1, 3, 1, 1, 0, 1, -1], [2, 3, 5, 1, 4, 1, 1], [3, 3, 5, 6, 2, 1, 2], [4, 3, 10, 8, 0, 1, -1],
         [5, 3, 20, 8, 0, 1, 4], [6, 3, 0, 9, 0, 1, -1]], dtype=float
    )  # fmt: skip
    colours = np.rint(TREE_COLOURS[:, :3] * 255).astype(np.uint8)  # the napari plugin's tree colours
    out = draw_swc(rgb, swc, thickness=0)
    first = (out == colours[0]).all(-1)
    assert first.sum() == 5 + 5 and first[1, 1:6].all() and first[1:7, 5].all()
    assert (out[8, 10:] == colours[1]).all() and (out == colours[1]).all(-1).sum() == 2
    assert tuple(out[9, 0]) == tuple(colours[2])
    assert not rgb.any()  # the input picture is left alone
    assert (draw_swc(rgb, swc, thickness=1) == colours[0]).all(-1).sum() > first.sum()
    crossing = np.array([[1, 3, 3, 0, 0, 1, -1], [2, 3, 3, 9, 0, 1, 1], [3, 3, 0, 4, 0, 1, -1], [4, 3, 9, 4, 0, 1, 3]])
    assert tuple(draw_swc(rgb, crossing, thickness=0)[4, 3]) == tuple(colours[0])  # the main tree on top
    np.testing.assert_array_equal(draw_swc(rgb, np.zeros((0, 7))), rgb)
    with pytest.raises(ValueError, match="thickness"):
        draw_swc(rgb, swc, thickness=-1)
    with pytest.raises(ValueError, match=r"\(10, 12\)"):
        draw_swc(rgb[..., 0], swc)
