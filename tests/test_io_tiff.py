# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import tifffile

from neurolink_monai.io import TiffStackError, read_tiff_stack, read_tiff_stack_with_metadata, write_tiff_stack


def _stack(dtype, shape=(5, 12, 16), seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.normal(size=shape).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 3])
def test_round_trip_dtypes_channels_spacing(tmp_path, dtype, channels):
    shape = (5, 12, 16) if channels is None else (channels, 5, 12, 16)
    arr = _stack(dtype, shape)
    spacing = (0.998835, 0.3296485, 0.25)
    p = write_tiff_stack(tmp_path / "s.tif", arr, spacing)
    back, sp = read_tiff_stack(p)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    np.testing.assert_allclose(sp, spacing, rtol=1e-6)
    with tifffile.TiffFile(p) as tf:  # a real ImageJ hyperstack that Fiji opens with its calibration
        assert tf.is_imagej
        assert tf.imagej_metadata["spacing"] == pytest.approx(spacing[0])
        assert tf.imagej_metadata["unit"] == "um"
        assert tf.imagej_metadata.get("channels", 1) == (channels or 1)
    assert os.listdir(tmp_path) == ["s.tif"]


def test_compressed_and_bool(tmp_path):
    arr = _stack(np.uint16)
    write_tiff_stack(tmp_path / "z.tif", arr, compression="zlib")
    np.testing.assert_array_equal(read_tiff_stack(tmp_path / "z.tif")[0], arr)
    mask = arr > 30000
    write_tiff_stack(tmp_path / "b.tif", mask)
    back, _ = read_tiff_stack(tmp_path / "b.tif")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, mask.astype(np.uint8))


def test_ome_tiff_spacing_with_units(tmp_path):
    arr = _stack(np.uint16)
    p = tmp_path / "o.ome.tif"
    tifffile.imwrite(
        p,
        arr,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.5,
            "PhysicalSizeY": 0.6,
            "PhysicalSizeZ": 2000.0,
            "PhysicalSizeZUnit": "nm",
        },
    )
    back, meta = read_tiff_stack_with_metadata(p)
    np.testing.assert_array_equal(back[0], arr)
    np.testing.assert_allclose(meta["spacing"], (2.0, 0.6, 0.5))
    assert meta["spacing_source"] == "ome" and meta["spacing_unit"] == "um"


@pytest.mark.parametrize(
    "unit, factor", [("um", 1.0), ("Micron", 1.0), ("nm", 1e-3), ("centimeter", 1e4), ("Angstrom", 1e-4), ("px", 1.0)]
)
def test_tiff_spacing_is_parsed_once_for_memory_and_blockwise_reading(tmp_path, unit, factor):
    """``read_tiff_spacing`` is the one parser: the in-memory reader and the blockwise source agree on every unit."""
    pytest.importorskip("zarr")
    from neurolink_monai.inference.blockwise import open_volume

    p = tmp_path / "s.tif"
    tifffile.imwrite(
        p,
        _stack(np.uint8),
        imagej=True,
        resolution=(1 / 0.3, 1 / 0.3),
        metadata={"axes": "ZYX", "spacing": 2.0, "unit": unit},
    )
    _, meta = read_tiff_stack_with_metadata(p)
    np.testing.assert_allclose(meta["spacing"], np.array((2.0, 0.3, 0.3)) * factor)
    src = open_volume(p)
    assert src.spacing == pytest.approx(meta["spacing"]) and src.spacing_source == meta["spacing_source"] == "imagej"


def test_plain_multipage_and_imagej_nanometres(tmp_path):
    arr = _stack(np.uint8)
    tifffile.imwrite(tmp_path / "plain.tif", arr)  # no metadata: spacing 1
    back, sp = read_tiff_stack(tmp_path / "plain.tif")
    np.testing.assert_array_equal(back, arr)
    assert sp == (1.0, 1.0, 1.0)
    tifffile.imwrite(
        tmp_path / "nm.tif",
        arr,
        imagej=True,
        resolution=(1 / 300.0, 1 / 300.0),
        metadata={"axes": "ZYX", "spacing": 1000.0, "unit": "nm"},
    )
    np.testing.assert_allclose(read_tiff_stack(tmp_path / "nm.tif")[1], (1.0, 0.3, 0.3))


def test_2d_and_empty_and_time_series_rejected(tmp_path):
    tifffile.imwrite(tmp_path / "flat.tif", _stack(np.uint8, (12, 16)))
    with pytest.raises(TiffStackError, match=r"flat\.tif.*2D image.*3D stack"):
        read_tiff_stack(tmp_path / "flat.tif")
    tifffile.imwrite(tmp_path / "t.tif", _stack(np.uint8, (2, 3, 12, 16)), imagej=True, metadata={"axes": "TZYX"})
    with pytest.raises(TiffStackError, match=r"t\.tif.*axis 'T' has size 2"):
        read_tiff_stack(tmp_path / "t.tif")
    tifffile.imwrite(tmp_path / "c.tif", _stack(np.uint8, (5, 12, 16)), imagej=True, metadata={"axes": "CYX"})
    with pytest.raises(TiffStackError, match=r"c\.tif.*2D image.*re-save it with axes 'ZYX'"):
        read_tiff_stack(tmp_path / "c.tif")


def test_non_finite_intensities(tmp_path):
    arr = _stack(np.float32)
    arr[2, 3, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", arr, imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(TiffStackError, match=r"nan\.tif: 1 non-finite.*\(0, 2, 3, 4\)"):
        read_tiff_stack(tmp_path / "nan.tif")
    back, _ = read_tiff_stack(tmp_path / "nan.tif", check_finite=False)
    assert np.isnan(back[2, 3, 4])


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_files_raise(tmp_path, compression):
    p = write_tiff_stack(tmp_path / "full.tif", _stack(np.uint16, (6, 20, 24)), compression=compression)
    raw = p.read_bytes()
    for cut in (0, 4, 9, 100, len(raw) // 3, len(raw) // 2, (2 * len(raw)) // 3):
        q = tmp_path / f"cut{cut}.tif"
        q.write_bytes(raw[:cut])
        with pytest.raises(TiffStackError) as err:
            read_tiff_stack(q)
        assert str(q) in str(err.value)


def test_random_corruption_gives_array_or_documented_error(tmp_path):
    arr = _stack(np.uint8, (4, 10, 12))
    raw = write_tiff_stack(tmp_path / "ok.tif", arr).read_bytes()
    rng = random.Random(1)
    for i in range(80):
        b = bytearray(raw)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        q = tmp_path / "bad.tif"
        q.write_bytes(bytes(b))
        try:
            out, sp = read_tiff_stack(q)
        except TiffStackError as e:
            assert str(q) in str(e)
            continue
        assert out.ndim in (3, 4) and out.size > 0 and len(sp) == 3


def test_not_a_tiff_and_missing(tmp_path):
    (tmp_path / "x.tif").write_text("hello, I am not a TIFF")
    with pytest.raises(TiffStackError, match=r"x\.tif.*not a TIFF"):
        read_tiff_stack(tmp_path / "x.tif")
    with pytest.raises(FileNotFoundError):
        read_tiff_stack(tmp_path / "missing.tif")


def test_writer_rejects_bad_input_without_partial_file(tmp_path):
    p = tmp_path / "out.tif"
    with pytest.raises(TypeError, match="float64"):
        write_tiff_stack(p, np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"shape \(3, 4\)"):
        write_tiff_stack(p, np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        write_tiff_stack(p, np.zeros((0, 3, 4), np.uint8))
    bad = np.zeros((2, 3, 4), np.float32)
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        write_tiff_stack(p, bad)
    with pytest.raises(ValueError, match="spacing"):
        write_tiff_stack(p, np.zeros((2, 3, 4), np.uint8), spacing=(1.0, -1.0, 1.0))
    assert os.listdir(tmp_path) == []


def test_writer_failure_keeps_existing_file(tmp_path, monkeypatch):
    p = write_tiff_stack(tmp_path / "keep.tif", np.ones((2, 3, 4), np.uint8))
    before = p.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", boom)
    with pytest.raises(OSError, match="disk full"):
        write_tiff_stack(p, np.zeros((2, 3, 4), np.uint8))
    assert p.read_bytes() == before
    assert os.listdir(tmp_path) == ["keep.tif"]


def test_real_stack_spacing(diadem_dir):
    arr, sp = read_tiff_stack(diadem_dir / "OP_1.tif")
    assert arr.shape == (60, 512, 512) and arr.dtype == np.uint8
    np.testing.assert_allclose(sp, (0.998835, 0.3296485, 0.3296485), rtol=1e-6)
