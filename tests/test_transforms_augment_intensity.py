# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from neurolink_monai.transforms import (
    RandAttenuationField,
    RandAttenuationFieldd,
    RandGammaContrast,
    RandGammaContrastd,
    RandPoissonGaussianNoise,
    RandPoissonGaussianNoised,
    attenuation_field,
    degrade_to_weak,
    gamma_contrast,
    poisson_gaussian_noise,
    signal_background_levels,
)

SHAPE = (1, 32, 64, 64)


def _patch(seed: int = 0) -> np.ndarray:
    """A normalised (1, 32, 64, 64) patch: background 0.1 with a bright (1.0) straight neurite along W."""
    rng = np.random.default_rng(seed)
    img = np.full(SHAPE, 0.1, dtype=np.float32) + 0.01 * rng.random(SHAPE, dtype=np.float32)
    img[0, 15:17, 30:33, :] = 1.0
    return img


def _array_transforms():
    return [
        RandGammaContrast(prob=1.0),
        RandAttenuationField(prob=1.0),
        RandPoissonGaussianNoise(prob=1.0),
    ]


def _dict_transforms():
    return [
        RandGammaContrastd("image", prob=1.0),
        RandAttenuationFieldd("image", prob=1.0),
        RandPoissonGaussianNoised("image", prob=1.0),
    ]


@pytest.mark.parametrize("index", range(3))
def test_array_transforms_are_deterministic_with_a_seed(index):
    img = _patch()
    a = _array_transforms()[index].set_random_state(7)
    b = _array_transforms()[index].set_random_state(7)
    out_a, out_b = a(img), b(img)
    np.testing.assert_array_equal(out_a, out_b)
    assert not np.array_equal(out_a, img)
    assert not np.array_equal(a(img), out_a)  # the next call draws new parameters


@pytest.mark.parametrize("index", range(3))
@pytest.mark.parametrize("kind", ["numpy", "tensor", "metatensor", "float64"])
def test_types_shapes_and_dtypes_are_kept(index, kind):
    img = _patch()
    if kind == "tensor":
        img = torch.from_numpy(img)
    elif kind == "metatensor":
        img = MetaTensor(torch.from_numpy(img), meta={"filename_or_obj": "x.tif"})
    elif kind == "float64":
        img = img.astype(np.float64)
    out = _array_transforms()[index].set_random_state(0)(img)
    assert type(out) is type(img)
    assert tuple(out.shape) == SHAPE and out.dtype == img.dtype
    if kind == "metatensor":
        assert out.meta["filename_or_obj"] == "x.tif"


@pytest.mark.parametrize("index", range(3))
def test_dictionary_versions_never_touch_the_label_and_match_the_array_transform(index):
    img = _patch()
    label = (img > 0.5).astype(np.uint8)
    t = _dict_transforms()[index].set_random_state(3)
    out = t({"image": img, "label": label.copy()})
    np.testing.assert_array_equal(out["label"], label)
    assert out["image"].shape == SHAPE and out["image"].dtype == np.float32
    again = _dict_transforms()[index].set_random_state(3)({"image": img, "label": label})
    np.testing.assert_array_equal(out["image"], again["image"])
    # A thin wrapper: the same seed gives the same result as the array transform's parameters drawn after the coin.
    arr_t = _array_transforms()[index].set_random_state(3)
    arr_t.randomize(img)
    np.testing.assert_array_equal(arr_t(img, randomize=False), out["image"])


def test_probability_zero_returns_the_input_unchanged():
    img = _patch()
    for t in (RandGammaContrast(prob=0.0), RandAttenuationField(prob=0.0), RandPoissonGaussianNoise(prob=0.0)):
        assert t(img) is img
    d = {"image": img}
    assert RandPoissonGaussianNoised("image", prob=0.0)(d)["image"] is img


def test_gamma_contrast_values():
    x = np.linspace(0.0, 1.0, 11, dtype=np.float32)
    np.testing.assert_allclose(gamma_contrast(x, 2.0, 1.0), x**2, atol=1e-6)
    y = gamma_contrast(x, 1.0, 0.5)
    np.testing.assert_allclose(y, 0.5 + 0.5 * (x - 0.5), atol=1e-6)
    assert y.dtype == np.float32


def test_attenuation_field_is_smooth_and_within_bounds():
    rng = np.random.default_rng(0)
    for min_factor, length in ((0.05, 16.0), (0.3, 8.0), (0.05, (4.0, 16.0, 16.0))):
        field = attenuation_field((32, 64, 64), rng, min_factor=min_factor, length_scale=length, weak_fraction=0.4)
        assert field.shape == (32, 64, 64) and field.dtype == np.float32
        assert field.min() >= min_factor - 1e-6 and field.max() <= 1.0 + 1e-6
        assert field.min() < 0.5 * (1 + min_factor) and field.max() > 0.9  # it does make weak and bright places
        lengths = np.broadcast_to(np.asarray(length, dtype=float), (3,))
        for axis in range(3):
            step = np.abs(np.diff(np.log(field), axis=axis)).max()
            # the documented gradient bound of the log field: 10 |ln min_factor| / (softness * length), softness 2
            assert step <= 10 * abs(np.log(min_factor)) / (2.0 * lengths[axis]) + 1e-6
    white = np.random.default_rng(1).uniform(0.05, 1.0, (32, 64, 64))
    assert np.abs(np.diff(white, axis=2)).mean() > 10 * np.abs(np.diff(field, axis=2)).mean()


def test_attenuation_field_weak_fraction_controls_the_dimmed_share():
    rng = np.random.default_rng(2)
    fracs = []
    for _ in range(20):
        field = attenuation_field((16, 96, 96), rng, min_factor=0.05, length_scale=8.0, weak_fraction=0.3)
        fracs.append(np.mean(field < np.sqrt(0.05)))
    assert 0.2 < np.mean(fracs) < 0.4
    ones = attenuation_field((8, 8, 8), rng, min_factor=0.05, weak_fraction=0.0)
    np.testing.assert_array_equal(ones, 1.0)


@pytest.mark.parametrize("snr", [1.0, 2.0, 5.0])
@pytest.mark.parametrize("read_fraction", [0.0, 0.5, 1.0])
def test_noise_gives_about_the_requested_snr(snr, read_fraction):
    img = np.full((1, 32, 64, 64), 0.05, dtype=np.float32)
    img[0, :, 20:28, :] = 1.0  # 12.5 % of the voxels: the 99.9th percentile sits on the signal
    out = poisson_gaussian_noise(img, np.random.default_rng(0), snr, read_fraction)
    sig, bg = out[0, :, 20:28, :], out[0, :, 40:, :]
    measured = (sig.mean() - bg.mean()) / sig.std()
    assert measured == pytest.approx(snr, rel=0.05)
    assert bg.mean() == pytest.approx(0.05, abs=0.01)
    assert out.dtype == np.float32


def test_noise_on_a_sparse_patch_uses_the_upper_percentile_and_an_empty_patch_still_gets_noise():
    img = _patch()
    sig, bg = signal_background_levels(img)
    assert sig == pytest.approx(1.0) and bg == pytest.approx(0.105, abs=0.01)
    out = poisson_gaussian_noise(img, np.random.default_rng(1), 2.0, 0.3)
    tube = out[0, 15:17, 30:33, :]
    assert (tube.mean() - out[0, :, :20].mean()) / tube.std() == pytest.approx(2.0, rel=0.15)
    empty = np.zeros((1, 8, 16, 16), dtype=np.float32)
    noisy = poisson_gaussian_noise(empty, np.random.default_rng(1), 2.0, 0.5, min_amplitude=0.05)
    assert 0.005 < noisy.std() < 0.05


def test_rand_noise_draws_snr_in_range():
    t = RandPoissonGaussianNoise(prob=1.0, snr=(1.5, 3.0)).set_random_state(0)
    for _ in range(20):
        t.randomize(None)
        assert 1.5 <= t._snr <= 3.0


@pytest.mark.parametrize(
    "make, bad",
    [
        (lambda: RandGammaContrast(gamma=(0.0, 1.0)), "(0.0, 1.0)"),
        (lambda: RandGammaContrast(contrast=(2.0, 1.0)), "(2.0, 1.0)"),
        (lambda: RandAttenuationField(min_factor=(0.0, 0.5)), "(0.0, 0.5)"),
        (lambda: RandAttenuationField(min_factor=1.5), "1.5"),
        (lambda: RandAttenuationField(length_scale=-4.0), "-4.0"),
        (lambda: RandAttenuationField(weak_fraction=(0.2, 1.2)), "1.2"),
        (lambda: RandAttenuationField(axial_scale=0.0), "0.0"),
        (lambda: RandPoissonGaussianNoise(snr=(0.0, 2.0)), "(0.0, 2.0)"),
        (lambda: RandPoissonGaussianNoise(read_fraction=(0.5, 2.0)), "2.0"),
        (lambda: RandPoissonGaussianNoise(signal_percentile=40.0), "40.0"),
        (lambda: RandPoissonGaussianNoise(min_amplitude=-1.0), "-1.0"),
        (lambda: RandGammaContrast(gamma="abc"), "abc"),
        (lambda: gamma_contrast(np.ones(3), gamma=-1.0), "-1.0"),
        (lambda: attenuation_field((4, 4, 4), np.random.default_rng(0), min_factor=0.0), "0.0"),
        (lambda: attenuation_field((4, 4, 4), np.random.default_rng(0), length_scale=(1.0, 0.0, 1.0)), "0.0"),
        (lambda: poisson_gaussian_noise(np.ones(8), np.random.default_rng(0), snr=-2.0), "-2.0"),
        (lambda: degrade_to_weak(np.ones((4, 8, 8)), seed=-1), "-1"),
        (lambda: degrade_to_weak(np.ones((8, 8)), seed=0), "(8, 8)"),
        (lambda: RandAttenuationField(prob=1.0)(np.ones((8, 8, 8), dtype=np.float32)), "(8, 8, 8)"),
    ],
)
def test_bad_arguments_raise_value_error_with_the_value(make, bad):
    with pytest.raises(ValueError, match=__import__("re").escape(bad)):
        make()


def test_non_finite_input_is_refused():
    img = _patch()
    img[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        RandGammaContrast(prob=1.0)(img)


def _weak_stack():
    """A uint8 stack like a DIADEM one: dark background with faint noise, one bright thin axon."""
    rng = np.random.default_rng(5)
    img = rng.poisson(0.5, (24, 96, 96)).astype(np.uint8)
    img[10:13, 46:49, 5:90] = 230
    return img


def test_degrade_to_weak_is_seeded_and_weak():
    img = _weak_stack()
    a, b = degrade_to_weak(img, seed=3), degrade_to_weak(img, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, degrade_to_weak(img, seed=4))
    assert a.shape == img.shape and a.dtype == np.float32
    np.testing.assert_array_equal(img, _weak_stack())  # the input is not modified
    m = degrade_to_weak(img, seed=3, return_model=True, snr=2.5)
    np.testing.assert_array_equal(m["image"], a)
    assert m["attenuation"].min() >= 0.1 - 1e-6 and m["attenuation"].max() <= 1.0 + 1e-6
    lam = m["noiseless"][11, 47, 5:90]
    snr = (lam - m["background"]) / np.sqrt(m["gain"] * lam + m["read_std"] ** 2)
    assert snr.max() == pytest.approx(2.5, rel=0.02) and snr.min() >= 0.0
    # The measured noise on the axon matches the model: residual std / model std ~ 1.
    resid = (m["image"] - m["noiseless"])[10:13, 46:49, 5:90]
    model_std = np.sqrt(m["gain"] * m["noiseless"][10:13, 46:49, 5:90] + m["read_std"] ** 2)
    assert np.std(resid / model_std) == pytest.approx(1.0, rel=0.1)


def test_degrade_to_weak_median_snr_in_the_weak_range():
    img = _weak_stack()
    medians = []
    for seed in range(6):
        m = degrade_to_weak(img, seed=seed, return_model=True, length_scale=(6.0, 24.0, 24.0))
        lam = m["noiseless"][11, 47, 5:90]
        snr = (lam - m["background"]) / np.sqrt(m["gain"] * lam + m["read_std"] ** 2)
        medians.append(np.median(snr))
    assert 1.0 < np.median(medians) <= 2.5


def test_degrade_to_weak_on_a_real_stack_reaches_the_weak_regime(diadem_dir):
    from neurolink_monai.io import read_swc, read_tiff_stack

    img = np.asarray(read_tiff_stack(diadem_dir / "OP_3.tif")[0])
    swc = read_swc(diadem_dir / "OP_3.swc")
    m = degrade_to_weak(img, seed=0, return_model=True)
    zyx = np.clip(np.round(swc[:, [4, 3, 2]]).astype(int), 0, np.asarray(img.shape) - 1)
    lam = np.array(
        [m["noiseless"][max(z - 1, 0) : z + 2, max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3].max() for z, y, x in zyx]
    )
    snr = (lam - m["background"]) / np.sqrt(m["gain"] * np.maximum(lam, 0) + m["read_std"] ** 2)
    assert 1.2 <= np.median(snr) <= 3.0 and 0.1 <= np.mean(snr < 1) <= 0.5
    assert m["image"].shape == img.shape and m["image"].dtype == np.float32
