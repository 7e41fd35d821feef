# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from neurolink_monai.transforms import CheckVolume, CheckVolumed, MicroscopyNormalize, MicroscopyNormalized


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
