# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import (
    Compose,
    DeleteItemsd,
    EnsureChannelFirstd,
    Flip,
    LoadImaged,
    RandFlipd,
    RandRotate90d,
    RandSpatialCropd,
    Rotate90,
)

from neurolink_monai.io import write_swc, write_tiff_stack
from neurolink_monai.transforms import (
    CheckVolumed,
    DirectionMap,
    DirectionMapd,
    DistanceMap,
    DistanceMapd,
    LoadSWCd,
    MicroscopyNormalized,
    RandFlipWithDirectiond,
    RandRotate90WithDirectiond,
    SWCToMask,
    SWCToMaskd,
)

SHAPE = (16, 32, 36)
SPACING = (2.0, 0.5, 0.5)


def _swc():
    t = np.linspace(0, 1, 25)
    xyz = np.stack([4 + 28 * t, 6 + 20 * t**2, 3 + 9 * t], 1)
    swc = np.column_stack([np.arange(1, 26), np.full(25, 3), xyz, np.full(25, 1.5), np.arange(0, 25)])
    swc[0, 6] = -1
    branch = np.array([[26, 3, 18.0, 12.0, 7.0, 1.2, 12], [27, 3, 18.0, 24.0, 9.0, 1.2, 26]])
    return np.vstack([swc, branch])


@pytest.fixture()
def sample(tmp_path):
    swc = _swc()
    label = SWCToMask(SHAPE, SPACING)(swc)[0]
    rng = np.random.default_rng(0)
    image = (rng.poisson(20, SHAPE) + 900 * label.astype(np.int64)).astype(
        np.uint16
    )  # 16-bit camera data, weak background
    return {
        "image": str(write_tiff_stack(tmp_path / "img.tif", image, SPACING)),
        "swc": str(write_swc(tmp_path / "t.swc", swc)),
    }


@pytest.mark.parametrize("use_swc", [True, False])
def test_training_pipeline_end_to_end(sample, use_swc):
    pipeline = Compose(
        [
            LoadImaged("image"),
            EnsureChannelFirstd("image"),
            LoadSWCd("swc"),
            SWCToMaskd("swc", ref_key="image", output_keys="label"),
            CheckVolumed(("image", "label")),
            MicroscopyNormalized("image"),
            RandSpatialCropd(("image", "label"), roi_size=(12, 24, 24), random_size=False),
            RandFlipd(("image", "label"), prob=0.5, spatial_axis=2),
            RandRotate90d(("image", "label"), prob=0.5, spatial_axes=(1, 2)),
            DirectionMapd("label", swc_key="swc" if use_swc else None),
            DistanceMapd("label"),
            DeleteItemsd("swc"),
        ]
    )
    pipeline.set_random_state(0)
    loader = DataLoader(Dataset([sample] * 3, pipeline), batch_size=3, num_workers=0)
    batch = next(iter(loader))
    assert batch["image"].shape == (3, 1, 12, 24, 24) and batch["image"].dtype == torch.float32
    assert float(batch["image"].min()) >= 0 and float(batch["image"].max()) <= 1
    assert batch["label"].shape == (3, 1, 12, 24, 24)
    assert batch["direction"].shape == (3, 3, 12, 24, 24) and batch["direction"].dtype == torch.float32
    assert batch["distance"].shape == (3, 1, 12, 24, 24) and float(batch["distance"].min()) >= 0
    fg = batch["label"] > 0
    norms = batch["direction"].norm(dim=1, keepdim=True)
    on = norms[fg]
    assert bool(((on - 1).abs() < 1e-5).logical_or(on == 0).all())  # unit vectors on the neurite ...
    if use_swc:
        assert bool(((on - 1).abs() < 1e-5).all())
    else:  # ... except where a crop leaves a fragment too small to have a direction
        assert float((on == 0).float().mean()) < 0.02
    assert bool((batch["distance"][fg] > 0).all()) and bool((batch["distance"][~fg] == 0).all())
    # targets match the ones computed directly from each augmented label (the SWC follows the augmentation)
    for i in range(3):
        label = batch["label"][i]
        if use_swc:
            ref = DirectionMap()(label, _swc())
            np.testing.assert_allclose(np.asarray(batch["direction"][i]), np.asarray(ref), atol=1e-5)
        np.testing.assert_allclose(np.asarray(batch["distance"][i]), np.asarray(DistanceMap()(label)), atol=1e-5)


def test_label_image_shape_mismatch_names_files(tmp_path, sample):
    other = write_tiff_stack(tmp_path / "label_small.tif", np.zeros((16, 32, 30), np.uint8), SPACING)
    load = Compose([LoadImaged(("image", "label")), EnsureChannelFirstd(("image", "label"))])
    d = load({"image": sample["image"], "label": str(other)})
    with pytest.raises(
        ValueError, match=r"shape mismatch: \S*label_small\.tif has spatial shape \(16, 32, 30\) but \S*img\.tif"
    ):
        CheckVolumed(("image", "label"))(d)


@pytest.mark.parametrize("transform", ["flip", "rot"])
def test_augmentation_aware_transforms_keep_precomputed_targets_right(transform):
    swc = _swc()
    aff = torch.diag(torch.tensor([*SPACING, 1.0], dtype=torch.float64))
    label = MetaTensor(
        torch.as_tensor(SWCToMask(SHAPE, SPACING)(swc)), affine=aff, meta={"original_affine": aff.numpy()}
    )
    data = {"label": label, "direction": DirectionMap()(label, swc), "distance": DistanceMap()(label)}
    if transform == "flip":
        t = RandFlipWithDirectiond(("label", "distance"), "direction", prob=1.0, spatial_axis=(0, 2))
        aug = Flip(spatial_axis=(0, 2))
    else:
        t = RandRotate90WithDirectiond(("label", "distance"), "direction", prob=1.0, max_k=3, spatial_axes=(1, 2))
        t.set_random_state(3)
        t.randomize()
        k = t._k
        t.set_random_state(3)
        aug = Rotate90(k, (1, 2))
    out = t(data)
    aug_label = aug(label)
    np.testing.assert_array_equal(np.asarray(out["label"]), np.asarray(aug_label))
    assert isinstance(out["direction"], MetaTensor)
    np.testing.assert_allclose(np.asarray(out["direction"]), np.asarray(DirectionMap()(aug_label, swc)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["distance"]), np.asarray(DistanceMap()(aug_label)), atol=1e-5)
