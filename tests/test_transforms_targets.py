# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Flip, Rotate90, SpatialCrop
from scipy import ndimage as ndi

from neurolink_monai.transforms import (
    DirectionMap,
    DirectionMapd,
    DistanceMap,
    DistanceMapd,
    SWCToMask,
    SWCToMaskd,
    canonicalize_direction,
    direction_map_from_label,
    flip_direction_map,
    mask_distance_transform,
    radius_from_distance,
    rotate90_direction_map,
)


def _segment(a_xyz, b_xyz, ra, rb=None):
    rb = ra if rb is None else rb
    return np.array([[1, 3, *a_xyz, ra, -1], [2, 3, *b_xyz, rb, 1]], dtype=float)


def _tree(shape=(24, 40, 40), seed=3, n=60):
    """A small branching SWC (voxel units) inside ``shape`` (D, H, W)."""
    rng = np.random.default_rng(seed)
    hi = np.array(shape[::-1], float) - 4
    pos = [hi / 2]
    heading = [rng.normal(size=3)]
    swc = [[1, 3, *pos[0], 2.0, -1]]
    for i in range(1, n):
        p = i - 1 if rng.random() > 0.15 else int(rng.integers(0, i))
        h = heading[p] + 0.4 * rng.normal(size=3)
        h /= np.linalg.norm(h)
        q = np.clip(pos[p] + 1.8 * h, 3, hi)
        pos.append(q)
        heading.append(h)
        swc.append([i + 1, 3, *q, rng.uniform(1.0, 2.2), p + 1])
    return np.array(swc)


def test_coordinate_convention_single_node():
    swc = np.array([[1, 1, 5.0, 7.0, 3.0, 0.0, -1]])  # x=5, y=7, z=3
    mask = SWCToMask((6, 10, 12), min_radius=0.0)(swc)
    assert mask.shape == (1, 6, 10, 12) and mask.dtype == np.uint8
    assert list(zip(*np.nonzero(mask[0]))) == [(3, 7, 5)]  # array[round(z), round(y), round(x)]


def test_straight_cylinder_cross_sections_isotropic_and_anisotropic():
    swc = _segment((2, 10, 6), (27, 10, 6), 2.0)  # along x (W)
    iso = SWCToMask((12, 20, 30))(swc)[0]
    assert iso[:, :, 10].sum() == 13  # lattice points with dy^2 + dz^2 <= 4
    aniso = SWCToMask((12, 20, 30), spacing=(2.0, 1.0, 1.0))(swc)[0]
    assert aniso[:, :, 10].sum() == 7  # (2 dz)^2 + dy^2 <= 4
    assert set(np.nonzero(aniso[:, :, 10])[0]) == {5, 6, 7}
    # physical spacing scale does not matter, only ratios (radii are in x voxels)
    np.testing.assert_array_equal(aniso, SWCToMask((12, 20, 30), spacing=(0.66, 0.33, 0.33))(swc)[0])


def test_taper_min_radius_and_scale():
    swc = _segment((3, 15, 10), (36, 15, 10), 1.0, 4.0)
    mask = SWCToMask((20, 30, 40))(swc)[0]
    areas = mask.sum(axis=(0, 1))[5:34]
    assert (np.diff(areas) >= 0).all() and areas[-1] > 5 * areas[0]
    thin = _segment((3, 15, 10), (36, 15, 10), 0.1)
    assert SWCToMask((20, 30, 40), min_radius=1.0)(thin)[0, :, :, 20].sum() == 5
    assert SWCToMask((20, 30, 40), min_radius=0.0)(thin)[0, :, :, 20].sum() == 1
    doubled = SWCToMask((20, 30, 40), radius_scale=2.0)(_segment((3, 15, 10), (36, 15, 10), 1.0))
    np.testing.assert_array_equal(doubled, SWCToMask((20, 30, 40))(_segment((3, 15, 10), (36, 15, 10), 2.0)))


def test_oblique_trace_is_connected():
    swc = _segment((1.3, 2.2, 1.1), (37.7, 28.9, 18.4), 0.2)
    mask = SWCToMask((20, 30, 40), spacing=(3.0, 1.0, 1.0))(swc)[0]
    _, n = ndi.label(mask, structure=np.ones((3, 3, 3)))
    assert n == 1


def test_nodes_outside_raise_with_file_name(tmp_path):
    swc = np.array([[1, 1, 5.0, 7.0, 3.0, 1.0, -1], [2, 1, 5.0, 70.0, 3.0, 1.0, 1]])
    with pytest.raises(ValueError, match=r"1 of 2 SWC nodes lie outside.*node id 2.*\(x, y, z\) = \(5, 70, 3\)"):
        SWCToMask((6, 10, 12))(swc)
    image = MetaTensor(torch.zeros(1, 6, 10, 12), meta={"filename_or_obj": "img.tif"})
    data = {"image": image, "swc": swc, "swc_meta_dict": {"filename_or_obj": "cell.swc"}}
    with pytest.raises(ValueError, match=r"cell\.swc \(grid of img\.tif\): 1 of 2 SWC nodes"):
        SWCToMaskd("swc")(data)
    with pytest.raises(ValueError, match=r"reference must be channel-first"):
        SWCToMaskd("swc")({"image": torch.zeros(10, 12), "swc": swc})


def test_swc_to_maskd_uses_reference_grid_and_meta():
    swc = _tree()
    aff = torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    image = MetaTensor(torch.zeros(1, 24, 40, 40), affine=aff, meta={"original_affine": aff.numpy()})
    out = SWCToMaskd("swc", ref_key="image")({"image": image, "swc": swc})
    label = out["label"]
    assert isinstance(label, MetaTensor) and label.dtype == torch.uint8 and label.shape == (1, 24, 40, 40)
    np.testing.assert_allclose(label.affine.numpy(), aff.numpy())
    np.testing.assert_array_equal(label.numpy(), SWCToMask((24, 40, 40), spacing=(2, 1, 1))(swc))


def test_distance_map_is_exact_edt():
    label = SWCToMask((24, 40, 40), spacing=(2, 1, 1))(_tree())
    for sp in ((2.0, 1.0, 1.0), (1.0, 1.0, 1.0), (3.0, 0.7, 1.3)):
        dist = DistanceMap(spacing=sp)(label)
        ref = ndi.distance_transform_edt(label[0], sampling=np.array(sp) / sp[2])
        assert dist.shape == (1, 24, 40, 40) and dist.dtype == np.float32
        np.testing.assert_allclose(dist[0], ref, atol=1e-5)
    assert (DistanceMap(max_distance=1.5)(label) <= 1.5).all()
    with pytest.raises(ValueError, match="foreground everywhere"):
        DistanceMap()(np.ones((1, 3, 4, 5)))
    np.testing.assert_array_equal(DistanceMap()(np.zeros((1, 3, 4, 5))), 0)


@pytest.mark.parametrize("radius", [1.0, 2.0, 3.5, 5.0])
def test_radius_recovered_from_distance_map(radius):
    rng = np.random.default_rng(int(radius * 10))
    errors = []
    for _ in range(6):
        v = rng.normal(size=3)
        v /= np.linalg.norm(v)
        c = np.array([24.0, 24.0, 24.0]) + rng.uniform(-0.5, 0.5, 3)
        label = SWCToMask((48, 48, 48), min_radius=0.0)(_segment(c - 16 * v, c + 16 * v, radius))
        dist = DistanceMap()(label)[0]
        errors.append(radius_from_distance(dist[20:29, 20:29, 20:29].max()) - radius)
    assert abs(np.mean(errors)) < 0.2 and np.max(np.abs(errors)) < 0.5


def test_direction_from_swc_straight_line_band_and_sign():
    a, b = np.array([4.0, 6.0, 3.0]), np.array([30.0, 20.0, 9.0])  # x, y, z
    swc = _segment(a, b, 1.5)
    label = SWCToMask((12, 26, 34), spacing=(2, 1, 1))(swc)
    d = DirectionMap(spacing=(2, 1, 1), band_margin=1.0)(label, swc)
    assert d.shape == (3, 12, 26, 34) and d.dtype == np.float32
    norm = np.linalg.norm(d, axis=0)
    band = norm > 0
    np.testing.assert_allclose(norm[band], 1.0, atol=1e-6)
    assert band[label[0] > 0].all() and band.sum() > 1.5 * (label > 0).sum()  # band = mask + margin
    expected = (b - a)[::-1] / np.linalg.norm(b - a)  # (z, y, x) in voxel index space, z > 0: canonical
    np.testing.assert_allclose(d[:, band].T, np.broadcast_to(expected, (band.sum(), 3)), atol=1e-6)


def test_canonical_sign_rule():
    v = np.array([[-1.0, 0.0, 0.0, 1e-9, 0.0], [0.5, -1.0, 0.0, -0.5, 0.0], [0.0, 0.3, -1.0, 0.2, 0.0]])
    out = canonicalize_direction(v)
    np.testing.assert_allclose(out, [[1, 0, 0, -1e-9, 0], [-0.5, 1, 0, 0.5, 0], [0, -0.3, 1, -0.2, 0]])


def test_direction_from_label_follows_tube_and_arc():
    v = np.array([0.3, 0.5, 0.81])
    v /= np.linalg.norm(v)
    c = np.array([20.0, 25.0, 30.0])
    label = SWCToMask((40, 50, 60))(_segment((c - 15 * v)[::-1], (c + 15 * v)[::-1], 2.5))
    d = direction_map_from_label(label[0])
    band = np.linalg.norm(d, axis=0) > 0
    assert band[label[0] > 0].all()
    assert np.percentile(np.abs(np.tensordot(v, d, 1))[band], 5) > 0.99
    # an arc in the (y, x) plane: the direction is the tangent
    t = np.linspace(0, np.pi, 40)
    xyz = np.stack([30 + 20 * np.cos(t), 8 + 20 * np.sin(t), np.full_like(t, 6.0)], 1)
    swc = np.column_stack([np.arange(1, 41), np.full(40, 3), xyz, np.full(40, 1.5), np.arange(0, 40)])
    swc[0, 6] = -1
    label = SWCToMask((12, 36, 60))(swc)
    d = direction_map_from_label(label[0])
    ref = DirectionMap()(label, swc)
    inside = label[0] > 0
    cos = np.abs((d * ref).sum(0))[inside]
    assert np.median(cos) > 0.98 and np.percentile(cos, 10) > 0.9


def _meta_label(mask, spacing):
    aff = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    return MetaTensor(torch.as_tensor(mask), affine=aff, meta={"original_affine": aff.numpy().copy()})


AUGS = [("flip", 0), ("flip", 1), ("flip", 2), ("rot", (1, (1, 2))), ("rot", (2, (1, 2))), ("rot", (3, (1, 2)))]
ISO_AUGS = [("rot", (1, (0, 1))), ("rot", (3, (0, 2))), ("rot", (2, (0, 1)))]


def _aug_volume(x, aug):
    kind, arg = aug
    return Flip(spatial_axis=arg)(x) if kind == "flip" else Rotate90(arg[0], arg[1])(x)


def _aug_direction(d, aug):
    kind, arg = aug
    return flip_direction_map(d, arg) if kind == "flip" else rotate90_direction_map(d, arg[0], arg[1])


@pytest.mark.parametrize(
    "aug, spacing", [(a, (2.0, 1.0, 1.0)) for a in AUGS] + [(a, (1.0, 1.0, 1.0)) for a in ISO_AUGS]
)
def test_targets_commute_with_flips_and_rotations(aug, spacing):
    swc = _tree()
    label = _meta_label(SWCToMask((24, 40, 40), spacing=spacing)(swc), spacing)
    aug_label = _aug_volume(label, aug)
    # label path: target(aug(label)) == aug(target(label))
    d_then_aug = _aug_direction(DirectionMap()(label), aug)
    aug_then_d = DirectionMap()(aug_label)
    np.testing.assert_allclose(np.asarray(aug_then_d), np.asarray(d_then_aug), atol=1e-5)
    assert (np.linalg.norm(np.asarray(aug_then_d), axis=0) > 0).sum() > (np.asarray(aug_label) > 0).sum()
    dist_then_aug = _aug_volume(DistanceMap()(label), aug)
    np.testing.assert_allclose(np.asarray(DistanceMap()(aug_label)), np.asarray(dist_then_aug), atol=1e-5)
    # SWC path: the SWC follows the augmented grid through the MetaTensor affine
    swc_then_aug = _aug_direction(DirectionMap()(label, swc), aug)
    np.testing.assert_allclose(np.asarray(DirectionMap()(aug_label, swc)), np.asarray(swc_then_aug), atol=1e-5)
    image = MetaTensor(torch.zeros(1, 24, 40, 40), affine=label.affine, meta={"original_affine": label.affine.numpy()})
    mask_aug = SWCToMaskd("swc", ref_key="image")({"image": _aug_volume(image, aug), "swc": swc})["label"]
    np.testing.assert_array_equal(mask_aug.numpy(), np.asarray(aug_label))


def test_swc_path_follows_crops():
    swc = _tree()
    spacing = (2.0, 1.0, 1.0)
    label = _meta_label(SWCToMask((24, 40, 40), spacing=spacing)(swc), spacing)
    full = DirectionMapd("label")({"label": label, "swc": swc})["direction"]
    crop = SpatialCrop(roi_start=(3, 5, 7), roi_end=(20, 33, 36))
    cropped = DirectionMapd("label")({"label": crop(label), "swc": swc})["direction"]
    np.testing.assert_allclose(np.asarray(cropped), np.asarray(full)[:, 3:20, 5:33, 7:36], atol=1e-6)
    dist = DistanceMapd("label")({"label": label})["distance"]
    assert isinstance(dist, MetaTensor) and dist.shape == (1, 24, 40, 40) and float(dist.min()) >= 0


def test_dictionary_versions_and_missing_keys():
    swc = _tree()
    label = SWCToMask((24, 40, 40))(swc)
    d = DirectionMapd("label", swc_key=None)({"label": label, "swc": swc})
    np.testing.assert_allclose(d["direction"], direction_map_from_label(label[0]))
    assert "direction" not in DirectionMapd("other", allow_missing_keys=True)({"label": label})
    with pytest.raises(KeyError):
        DistanceMapd("other")({"label": label})
    with pytest.raises(ValueError, match=r"expected 1 channel"):
        DistanceMap()(np.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match=r"\(C, D, H, W\)"):
        DirectionMap()(np.zeros((4, 5)))


def test_sparse_edt_matches_scipy_on_random_masks():
    rng = np.random.default_rng(0)
    mask = ndi.binary_opening(rng.random((16, 24, 20)) > 0.55)
    out, idx = mask_distance_transform(mask, (1.7, 1.0, 1.0), return_indices=True)
    np.testing.assert_allclose(out, ndi.distance_transform_edt(mask, sampling=(1.7, 1.0, 1.0)), atol=1e-5)
    fg = np.argwhere(mask)
    assert not mask[tuple(idx[:, fg[:, 0], fg[:, 1], fg[:, 2]])].any()  # nearest points are background
