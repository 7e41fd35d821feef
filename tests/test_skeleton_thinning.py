# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""neurolink_monai.skeleton.thin_curves: one-voxel-wide centrelines that keep the topology of every mask, even-width
ones included."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from neurolink_monai.skeleton import thin_curves

FULL_3D = np.ones((3, 3, 3), dtype=bool)


def n_components(mask: np.ndarray) -> int:
    return ndi.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))[1]


def n_background_components(mask: np.ndarray) -> int:
    """6-connected (4 in 2D) background components, the outside included: 1 + the number of cavities."""
    return ndi.label(np.pad(~mask, 1), structure=ndi.generate_binary_structure(mask.ndim, 1))[1]


def assert_topology_kept(mask: np.ndarray, centre: np.ndarray) -> None:
    assert centre.dtype == bool and centre.shape == mask.shape
    assert not (centre & ~mask).any(), "centreline leaves the mask"
    labels, n = ndi.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    assert n_components(centre) == n
    for i in range(1, n + 1):  # every component keeps exactly one connected piece
        assert n_components(centre & (labels == i)) == 1
    assert n_background_components(centre) == n_background_components(mask)  # no cavity made or filled


def assert_covered(mask: np.ndarray, centre: np.ndarray) -> None:
    """No stretch of the mask is left without centreline: every voxel lies within twice its component's largest
    in-plane half-width (+3) of the component's centreline."""
    labels, _ = ndi.label(mask, structure=FULL_3D)
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        component = labels[box] == i
        padded = np.pad(component, 1)
        sampling = [(1, 1, 1), (1e3, 1, 1), (1, 1e3, 1), (1, 1, 1e3)]
        width = max(ndi.distance_transform_edt(padded, sampling=s).max() for s in sampling)
        assert ndi.distance_transform_edt(~(centre[box] & component))[component].max() <= 2 * width + 3


def degrees(centre: np.ndarray) -> np.ndarray:
    counts = ndi.convolve(centre.astype(np.int32), np.ones((3,) * centre.ndim, dtype=np.int32), mode="constant")
    return (counts - 1)[centre]


@pytest.mark.parametrize("wz", range(1, 7))
@pytest.mark.parametrize("wx", range(1, 7))
def test_straight_bars_of_any_width_become_a_simple_curve_along_them(wz, wx):
    # skimage's 3D skeletonize deletes several of these even-width bars completely (scikit-image issue #3757)
    mask = np.zeros((10, 30, 10), dtype=bool)
    mask[2 : 2 + wz, 2:28, 2 : 2 + wx] = True
    centre = thin_curves(mask)
    assert_topology_kept(mask, centre)
    d = degrees(centre)
    assert d.max() <= 2 and (d == 1).sum() == 2  # one simple curve with two tips
    # each tip is shortened by about the half-width plus one, like any thinning
    assert (centre.sum(axis=(0, 2)) > 0).sum() >= 26 - (max(wz, wx) + 2)


def test_random_tubes_and_balls_keep_components_and_are_thin():
    rng = np.random.default_rng(3)
    shape = (20, 40, 40)
    p = np.stack(np.indices(shape), axis=-1).astype(np.float64)
    for _ in range(6):
        mask = np.zeros(shape, dtype=bool)
        for _ in range(4):
            a, b = rng.uniform(1, 19, 3) * [1, 2, 2], rng.uniform(1, 19, 3) * [1, 2, 2]
            ab = b - a
            t = np.clip(((p - a) @ ab) / (ab @ ab), 0, 1)
            mask |= np.linalg.norm(p - (a + t[..., None] * ab), axis=-1) <= rng.uniform(0.8, 3.0)
        mask |= np.linalg.norm(p - rng.uniform(4, 16, 3) * [1, 2, 2], axis=-1) <= rng.uniform(2, 5)  # a soma
        centre = thin_curves(mask)
        assert_topology_kept(mask, centre)
        assert_covered(mask, centre)
        assert centre.sum() < 0.2 * mask.sum()


def test_a_ring_keeps_its_loop_and_a_hollow_ball_its_cavity():
    zz, yy, xx = np.indices((9, 25, 25))
    r = np.hypot(yy - 12, xx - 12)
    ring = (np.abs(zz - 4) <= 1) & (np.abs(r - 8) <= 1.5)
    centre = thin_curves(ring)
    assert n_components(centre) == 1
    assert (degrees(centre) == 2).all()  # a closed curve: no tips
    shell = np.abs(np.sqrt((zz - 4) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2) - 3.5) <= 1.0
    assert n_background_components(shell) == 2
    centre = thin_curves(shell)
    assert n_components(centre) == 1 and n_background_components(centre) == 2


def test_two_dimensional_masks_and_empty_masks():
    mask = np.zeros((20, 30), dtype=bool)
    mask[5:9, 3:27] = True
    mask[9:18, 14:16] = True  # a T
    centre = thin_curves(mask)
    assert_topology_kept(mask, centre)
    assert (degrees(centre) == 1).sum() == 3  # three tips
    assert not thin_curves(np.zeros((4, 5, 6))).any()
    assert thin_curves(np.zeros((4, 5, 6), dtype=bool), return_coords=True).shape == (0, 3)
    with pytest.raises(ValueError, match=r"2D or 3D mask.*\[2, 2, 2, 2\]"):
        thin_curves(np.zeros((2, 2, 2, 2)))


def test_voxels_match_the_mask_result_and_shifting_by_even_steps_changes_nothing():
    rng = np.random.default_rng(7)
    mask = ndi.binary_opening(rng.random((14, 30, 26)) < 0.45)
    centre = thin_curves(mask)
    np.testing.assert_array_equal(thin_curves(mask, return_coords=True), np.argwhere(centre))
    # only the object's bounding box is thinned; an even shift keeps every voxel's subfield, so the same curve
    shifted = np.zeros((20, 36, 34), dtype=bool)
    shifted[4:18, 2:32, 6:32] = mask
    np.testing.assert_array_equal(thin_curves(shifted, return_coords=True), np.argwhere(centre) + [4, 2, 6])
    plane = mask[5]
    np.testing.assert_array_equal(thin_curves(plane, return_coords=True), np.argwhere(thin_curves(plane)))
    assert thin_curves(np.zeros((3, 4)), return_coords=True).shape == (0, 2)


def test_small_compact_blobs_keep_a_voxel():
    # scikit-image's Lee thinning erases a 2x2x2 cube entirely; a skeleton must keep every component
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[1:3, 1:3, 1:3] = True
    mask[5:8, 5:8, 5:8] = True
    centre = thin_curves(mask)
    assert_topology_kept(mask, centre)
    assert centre[:4, :4, :4].sum() == 1 and centre.sum() < 0.2 * mask.sum()


def test_real_traces_keep_every_branch(diadem_dir):
    from neurolink_monai.io import read_swc
    from neurolink_monai.transforms import SWCToMask

    swc = read_swc(diadem_dir / "OP_1.swc")
    mask = SWCToMask((60, 512, 512), spacing=(0.9988, 0.3296, 0.3296))(swc)[0].astype(bool)
    ys, xs = np.nonzero(mask.any(axis=0))
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(6):
        y, x = int(rng.integers(ys.min(), ys.max() - 64)), int(rng.integers(xs.min(), xs.max() - 64))
        crop = mask[:, y : y + 96, x : x + 96]
        if crop.sum() == 0:
            continue
        centre = thin_curves(crop)
        assert_topology_kept(crop, centre)
        assert_covered(crop, centre)
        checked += 1
    assert checked >= 3
