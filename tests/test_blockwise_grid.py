# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The global window grid (against MONAI's own slicing) and the out-of-core percentile window."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import torch
import zarr
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval
from monai.transforms import ScaleIntensityRangePercentiles

from neurolink_monai.inference.blockwise import BlockGrid, SlidingWindowGrid, overlap_from_halo
from neurolink_monai.transforms import intensity_window, scale_intensity, subsample_strides

sizes = st.tuples(*[st.integers(1, 64)] * 3)
rois = st.tuples(*[st.integers(1, 40)] * 3)
overlaps = st.tuples(*[st.sampled_from([0.0, 0.1, 0.25, 0.33, 0.5, 0.6, 0.875, 0.99])] * 3)


@settings(max_examples=150, deadline=None)
@given(shape=sizes, roi=rois, overlap=overlaps)
def test_window_starts_match_monai(shape, roi, overlap):
    grid = SlidingWindowGrid.create(shape, roi, overlap)
    assume(grid.num_windows <= 4000)
    padded = tuple(max(s, r) for s, r in zip(shape, roi))
    assert grid.padded_shape == padded
    assert grid.scan_interval == _get_scan_interval(padded, roi, 3, overlap)
    expected = [tuple(s.start for s in sl) for sl in dense_patch_slices(padded, roi, grid.scan_interval)]
    assert list(grid.iter_windows([grid.axis_starts(a) for a in range(3)])) == expected
    assert grid.num_windows == len(expected)


@settings(max_examples=80, deadline=None)
@given(shape=sizes, roi=rois, overlap=overlaps, chunks=st.tuples(*[st.integers(1, 50)] * 3))
def test_block_windows_are_exactly_the_overlapping_ones(shape, roi, overlap, chunks):
    grid = SlidingWindowGrid.create(shape, roi, overlap)
    blocks = BlockGrid.create(shape, chunks)
    assume(grid.num_windows <= 4000 and blocks.num_blocks <= 400)
    every = np.array(list(grid.iter_windows([grid.axis_starts(a) for a in range(3)])))
    roi_, pad = np.array(grid.roi_size), np.array(grid.pad_before)
    total = 0
    for idx in blocks.indices():
        start, stop = np.array(blocks.box(idx))
        mine = list(grid.iter_windows(grid.block_window_starts(start, stop)))
        keep = ((every < stop + pad) & (every + roi_ > start + pad)).all(axis=1)
        assert mine == [tuple(w) for w in every[keep].tolist()]  # same windows, in MONAI's order
        total += len(mine)
    assert grid.evaluations(blocks) == total
    assert all(grid.halo[a] == grid.roi_size[a] - grid.scan_interval[a] for a in range(3))


def test_overlap_from_halo_gives_the_step():
    for roi in [(7, 33, 100), (64, 128, 128), (3, 5, 97)]:
        for h in range(0, min(roi)):
            ov = overlap_from_halo(roi, h)
            assert _get_scan_interval((1000,) * 3, roi, 3, ov) == tuple(r - h for r in roi)
    with pytest.raises(ValueError, match="halo must satisfy"):
        overlap_from_halo((8, 8, 8), 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"roi_size": (8, 8)}, "roi_size"),
        ({"overlap": 1.0}, "overlap"),
        ({"mode": "median"}, "mode"),
        ({"padding_mode": "wrap"}, "padding_mode"),
        ({"roi_size": (8, 8.5, 8)}, "integers"),
    ],
)
def test_grid_rejects_bad_settings(kwargs, match):
    args = {"image_shape": (10, 10, 10), "roi_size": (4, 4, 4), **kwargs}
    with pytest.raises(ValueError, match=match):
        SlidingWindowGrid.create(**args)


@pytest.mark.parametrize("chunks", [0, (8, -1, 8), (8, 8), (8, 8, 2.5), "big"])
def test_block_grid_rejects_bad_chunks(chunks):
    with pytest.raises(ValueError, match="bad chunk sizes"):
        BlockGrid.create((20, 20, 20), chunks)


def test_block_grid_covers_volume_once():
    blocks = BlockGrid.create((10, 17, 5), (4, 8, 100))
    assert blocks.chunks == (4, 8, 5) and blocks.grid_shape == (3, 3, 1)
    cover = np.zeros((10, 17, 5), int)
    for idx in blocks.indices():
        a, b = blocks.box(idx)
        cover[a[0] : b[0], a[1] : b[1], a[2] : b[2]] += 1
    assert (cover == 1).all()


def test_intensity_window_exact_matches_monai():
    rng = np.random.default_rng(3)
    vol = rng.gamma(2.0, 300.0, size=(12, 40, 50)).astype(np.uint16)
    lo, hi = intensity_window(vol, 1.0, 99.5)
    assert (lo, hi) == tuple(np.percentile(vol, [1.0, 99.5]))
    ours = scale_intensity(vol, (lo, hi))
    ref = ScaleIntensityRangePercentiles(1.0, 99.5, 0.0, 1.0, clip=True)(vol.astype(np.float32)[None])[0]
    assert ours.dtype == np.float32 and ours.min() == 0.0 and ours.max() == 1.0
    np.testing.assert_allclose(ours, np.asarray(ref), atol=1e-5)  # MONAI keeps float32 percentiles
    t = scale_intensity(torch.from_numpy(vol), (lo, hi))
    assert isinstance(t, torch.Tensor) and torch.equal(t, torch.from_numpy(ours))


def test_intensity_window_same_on_zarr_dask_numpy(tmp_path):
    rng = np.random.default_rng(4)
    vol = rng.integers(0, 60000, size=(30, 64, 48)).astype(np.uint16)
    z = zarr.create_array(tmp_path / "v.zarr", shape=vol.shape, chunks=(7, 32, 32), dtype="uint16")
    z[:] = vol
    for max_samples in (10**9, 5000):
        ref = intensity_window(vol, 2.0, 98.0, max_samples)
        assert intensity_window(z, 2.0, 98.0, max_samples) == ref
        assert intensity_window(da.from_array(vol, chunks=(5, 20, 20)), 2.0, 98.0, max_samples) == ref


def test_subsampled_window_is_close_and_bounded():
    rng = np.random.default_rng(5)
    vol = rng.normal(1000, 100, size=(40, 200, 200)).astype(np.float32)
    strides = subsample_strides(vol.shape, 50_000)
    assert np.prod([-(-n // s) for n, s in zip(vol.shape, strides)]) <= 50_000
    assert subsample_strides(vol.shape, vol.size) == (1, 1, 1)
    exact = np.percentile(vol, [1, 99])
    approx = intensity_window(vol, 1, 99, max_samples=50_000)
    assert np.allclose(approx, exact, atol=5.0)  # 100-sigma noise: 50k samples pin the tails to a few units


def test_intensity_window_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        intensity_window(np.array([[[1.0, np.nan, 2.0]]]))
    with pytest.raises(ValueError, match="smaller than upper"):
        intensity_window(np.ones((2, 2, 2)), 50, 50)
    with pytest.raises(ValueError, match=r"in \[0, 100\]"):
        intensity_window(np.ones((2, 2, 2)), -1, 50)
    with pytest.raises(ValueError, match="empty"):
        intensity_window(np.ones((0, 2, 2)))
    with pytest.warns(UserWarning, match="degenerate"):
        out = scale_intensity(np.array([0, 0, 5], np.uint16), (0.0, 0.0))
    assert out.tolist() == [0.0, 0.0, 1.0]
