# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from neurolink_monai.bundle_utils import image_preprocessing_from_config
from neurolink_monai.transforms import (
    DEFAULT_PERCENTILES,
    CheckVolume,
    CheckVolumed,
    MicroscopyNormalize,
    MicroscopyNormalized,
    intensity_window,
    scale_intensity,
)


def _meta(x, name):
    return MetaTensor(torch.as_tensor(x), meta={"filename_or_obj": name})


def test_check_volume_errors_name_the_file():
    with pytest.raises(ValueError, match=r"a\.tif: got shape \(1, 5, 6\), a 2D image"):
        CheckVolume()(_meta(np.zeros((1, 5, 6)), "a.tif"))
    with pytest.raises(ValueError, match=r"b\.tif: empty volume of shape \(1, 0, 5, 6\)"):
        CheckVolume()(_meta(np.zeros((1, 0, 5, 6)), "b.tif"))
    bad = np.zeros((1, 2, 5, 6), np.float32)
    bad[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"c\.tif: 1 non-finite"):
        CheckVolume()(_meta(bad, "c.tif"))
    with pytest.raises(ValueError, match=r"key 'image': 1 non-finite"):
        CheckVolumed("image")({"image": bad})
    assert CheckVolume(require_finite=False)(bad) is bad
    with pytest.raises(ValueError, match=r"\(C, D, H, W\), got shape \(5,\)"):
        CheckVolume()(np.zeros(5))


def test_check_volumed_shape_mismatch_and_pass_through():
    d = {"image": _meta(np.zeros((1, 4, 5, 6)), "img.tif"), "label": _meta(np.zeros((1, 4, 5, 7)), "lab.tif")}
    with pytest.raises(ValueError, match=r"lab\.tif has spatial shape \(4, 5, 7\) but img\.tif has \(4, 5, 6\)"):
        CheckVolumed(("image", "label"))(d)
    d["label"] = _meta(np.zeros((1, 4, 5, 6), np.uint8), "lab.tif")
    out = CheckVolumed(("image", "label", "swc"), allow_missing_keys=True)(d)
    assert out["image"] is d["image"] and out["label"] is d["label"]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_microscopy_normalize_percentiles(dtype):
    rng = np.random.default_rng(0)
    img = rng.poisson(100, (1, 20, 40, 40)).astype(np.float64)
    img[0, 10, 20, 5:35] = 4000  # a sparse bright neurite (30 of 32000 voxels)
    if dtype == np.uint8:
        img = img / 16
    arr = img.astype(dtype)
    out = MicroscopyNormalize()(torch.as_tensor(arr) if dtype != np.uint16 else arr)
    out = np.asarray(out)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert out[0, 10, 20, 5:35].min() == 1.0  # the neurite saturates at the top
    assert np.median(out) < 0.2  # background stays low


def test_microscopy_normalize_rejects_non_finite_and_handles_constant():
    bad = _meta(np.full((1, 2, 3, 4), np.inf, np.float32), "inf.tif")
    with pytest.raises(ValueError, match=r"inf\.tif: non-finite"):
        MicroscopyNormalized("image")({"image": bad})
    flat = MicroscopyNormalize()(torch.full((1, 2, 3, 4), 7.0))
    assert float(flat.abs().max()) == 0.0
    with pytest.raises(ValueError, match="lower < upper"):
        MicroscopyNormalize(lower=99, upper=5)


def test_degenerate_window_is_clipped_and_reported_by_bundle_and_blockwise_alike():
    """Regression (issue 16): a 20x100x100 stack with three bright voxels has both percentiles on the background;
    the bundle's scaling returned the unclipped ``x - low`` (values up to 3000, no warning), the blockwise path 1.0."""
    vol = np.zeros((20, 100, 100), np.uint16)
    vol[3, 10, 10] = vol[7, 50, 60] = vol[15, 90, 20] = 3000
    scaling = image_preprocessing_from_config()[4]  # the bundle's intensity step (bundle/configs/inference.json)
    assert isinstance(scaling, MicroscopyNormalized)
    with pytest.warns(UserWarning, match=r"three\.tif: degenerate intensity window"):
        bundle = scaling({"image": _meta(vol[None], "three.tif")})["image"]
    assert isinstance(bundle, MetaTensor) and bundle.meta["filename_or_obj"] == "three.tif"
    assert bundle.dtype == torch.float32 and float(bundle.min()) == 0.0 and float(bundle.max()) == 1.0
    window = intensity_window(vol)
    assert window == (0.0, 0.0)
    with pytest.warns(UserWarning, match="degenerate"):
        blockwise = scale_intensity(vol, window)
    np.testing.assert_array_equal(bundle[0].numpy(), blockwise)


def test_bundle_and_blockwise_scaling_agree_on_a_proper_window():
    rng = np.random.default_rng(1)
    vol = rng.poisson(80, (12, 40, 30)).astype(np.uint16)
    vol[5, 20, 3:27] = 2000
    bundle = MicroscopyNormalize()(torch.as_tensor(vol[None].astype(np.float32)))[0].numpy()
    blockwise = scale_intensity(vol, intensity_window(vol, *DEFAULT_PERCENTILES))
    np.testing.assert_allclose(bundle, blockwise, atol=1e-6)  # MONAI keeps float32 percentiles, numpy float64
