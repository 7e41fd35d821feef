# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor, PILReader
from monai.transforms import Compose, EnsureChannelFirstd, LoadImage, LoadImaged, SaveImage, SaveImaged

from neurolink_monai.io import TiffStackError, TiffStackReader, TiffStackWriter, read_tiff_stack, write_tiff_stack
from neurolink_monai.transforms import CheckVolumed

SPACING = (2.0, 0.5, 0.25)


@pytest.fixture()
def stack(tmp_path):
    arr = np.arange(4 * 6 * 8, dtype=np.uint16).reshape(4, 6, 8) * 7
    return write_tiff_stack(tmp_path / "img.tif", arr, SPACING), arr


def _check(img, arr):
    assert isinstance(img, MetaTensor)
    assert tuple(img.shape) == arr.shape
    np.testing.assert_array_equal(img.numpy(), arr.astype(np.float32))
    np.testing.assert_allclose(img.pixdim.numpy(), SPACING, rtol=1e-6)
    np.testing.assert_allclose(np.diag(img.affine.numpy())[:3], SPACING, rtol=1e-6)


@pytest.mark.parametrize(
    "reader", ["instance", "class", "TiffStackReader", "neurolink_monai.io.TiffStackReader", "default"]
)
def test_load_image_routes(stack, reader):
    path, arr = stack
    r = {"instance": TiffStackReader(), "class": TiffStackReader, "default": None}.get(reader, reader)
    _check(LoadImage(reader=r)(path), arr)


def test_bundle_config_target_and_string(stack):
    path, arr = stack
    readers = (
        {"_target_": "neurolink_monai.io.TiffStackReader"},
        "TiffStackReader",
        "neurolink_monai.io.TiffStackReader",
        "$@tiff_reader_class",
    )
    for reader in readers:
        parser = ConfigParser(
            {
                "tiff_reader_class": "$__import__('neurolink_monai.io', fromlist=['x']).TiffStackReader",
                "load": {"_target_": "LoadImaged", "keys": "image", "reader": reader},
            }
        )
        d = parser.get_parsed_content("load")({"image": str(path)})
        _check(d["image"], arr)


@pytest.mark.parametrize("reader", [None, TiffStackReader, "TiffStackReader"])
def test_2d_tiff_gives_clear_error(tmp_path, reader):
    flat = (np.arange(6 * 8) % 251).astype(np.uint8).reshape(6, 8)
    tifffile.imwrite(tmp_path / "flat.tif", flat)
    # no silent fallback to PILReader, neither on the default route nor with a named reader
    with pytest.raises(TiffStackError, match=r"flat\.tif: this is a 2D image"):
        LoadImage(reader=reader)(tmp_path / "flat.tif")
    # MONAI's 2D reader stays available on request; CheckVolumed then names the file
    img = LoadImage(reader=PILReader)(tmp_path / "flat.tif")
    assert img.numel() == flat.size and img.ndim == 2
    with pytest.raises(ValueError, match=r"flat\.tif: got shape \(1, 8, 6\), a 2D image"):
        CheckVolumed("image")(EnsureChannelFirstd("image")({"image": img}))


def test_multichannel_and_list_of_files(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (2, 4, 6, 8), dtype=np.uint8)
    p = write_tiff_stack(tmp_path / "mc.tif", arr, SPACING)
    img = LoadImaged("image", reader=TiffStackReader)({"image": p})["image"]
    assert img.shape == (2, 4, 6, 8) and img.meta["original_channel_dim"] == 0
    d = EnsureChannelFirstd("image")({"image": img})
    assert d["image"].shape == (2, 4, 6, 8)
    p1 = write_tiff_stack(tmp_path / "a.tif", arr[0], SPACING)
    p2 = write_tiff_stack(tmp_path / "b.tif", arr[1], SPACING)
    both = EnsureChannelFirstd("image")(LoadImaged("image", reader=TiffStackReader)({"image": [p1, p2]}))["image"]
    np.testing.assert_array_equal(both.numpy(), arr.astype(np.float32))


def test_corrupt_file_error_names_file(tmp_path):
    raw = write_tiff_stack(tmp_path / "ok.tif", np.ones((3, 4, 5), np.uint8)).read_bytes()
    (tmp_path / "broken.tif").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(TiffStackError, match=r"broken\.tif: .*truncated"):
        LoadImage()(tmp_path / "broken.tif")
    with pytest.raises(TiffStackError, match=r"broken\.tif: .*truncated"):
        LoadImaged("image", reader=TiffStackReader())({"image": tmp_path / "broken.tif"})


@pytest.mark.parametrize("writer", ["class", "string", "default"])
def test_save_image_round_trip_keeps_spacing(stack, tmp_path, writer):
    path, arr = stack
    out_dir = tmp_path / f"out_{writer}"
    w = {"class": TiffStackWriter, "string": "neurolink_monai.io.TiffStackWriter", "default": None}[writer]
    pipeline = Compose(
        [
            LoadImaged("image", reader=TiffStackReader),
            EnsureChannelFirstd("image"),
            SaveImaged(
                "image",
                output_dir=out_dir,
                output_ext=".tif",
                output_dtype=np.uint16,
                writer=w,
                separate_folder=False,
                print_log=False,
            ),
        ]
    )
    pipeline({"image": str(path)})
    files = os.listdir(out_dir)
    assert files == ["img_trans.tif"]
    back, sp = read_tiff_stack(out_dir / files[0])
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, arr)
    np.testing.assert_allclose(sp, SPACING, rtol=1e-6)


def test_writer_float_to_uint8_rounds_and_clips(tmp_path):
    img = MetaTensor(
        torch.tensor([[[[-3.0, 0.4, 0.6, 300.0]]]]).repeat(1, 2, 2, 1), affine=torch.diag(torch.tensor([3.0, 1, 1, 1]))
    )
    SaveImage(output_dir=tmp_path, output_ext=".tif", output_dtype=np.uint8, separate_folder=False, print_log=False)(
        img, filename=str(tmp_path / "r")
    )
    back, sp = read_tiff_stack(tmp_path / "r.tif")
    np.testing.assert_array_equal(back[0, 0], [0, 0, 1, 255])
    assert sp == pytest.approx((3.0, 1.0, 1.0))


def test_writer_multichannel_and_bad_dtype(tmp_path):
    w = TiffStackWriter(output_dtype=np.float32)
    data = torch.rand(3, 4, 5, 6)
    w.set_data_array(data, channel_dim=0)
    w.set_metadata({"affine": np.diag([2.0, 0.5, 0.5, 1.0])})
    w.write(tmp_path / "mc.tif")
    back, sp = read_tiff_stack(tmp_path / "mc.tif")
    np.testing.assert_allclose(back, data.numpy())
    assert sp == pytest.approx((2.0, 0.5, 0.5))
    w = TiffStackWriter(output_dtype=np.int32)
    w.set_data_array(torch.zeros(1, 2, 3, 4))
    w.set_metadata(None)
    with pytest.raises(TypeError, match="int32"):
        w.write(tmp_path / "bad.tif")
    with pytest.raises(ValueError, match="3D stacks"):
        TiffStackWriter().set_data_array(torch.zeros(1, 5, 6))
    assert sorted(os.listdir(tmp_path)) == ["mc.tif"]


def test_nifti_goes_through_monai_nibabel(tmp_path):
    arr = np.random.default_rng(0).random((4, 6, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(arr, np.diag([2.0, 0.5, 0.25, 1.0])), tmp_path / "v.nii.gz")
    img = LoadImaged("image")({"image": tmp_path / "v.nii.gz"})["image"]
    np.testing.assert_allclose(img.numpy(), arr)
    np.testing.assert_allclose(img.pixdim.numpy(), (2.0, 0.5, 0.25))
    SaveImage(output_dir=tmp_path, output_ext=".nii.gz", separate_folder=False, print_log=False)(
        img[None], filename=str(tmp_path / "w")
    )
    back = nib.load(tmp_path / "w.nii.gz")
    np.testing.assert_allclose(back.header.get_zooms(), (2.0, 0.5, 0.25))


def test_registration_keeps_monai_defaults():
    from monai.data import NibabelWriter, PILWriter, resolve_writer

    assert resolve_writer("tif")[0] is TiffStackWriter and PILWriter in resolve_writer("tif")
    assert NibabelWriter in resolve_writer("nii.gz") and PILWriter in resolve_writer("png")


def test_metatensor_spacing_has_one_failure_policy():
    from neurolink_monai.io import metatensor_spacing

    affine = torch.diag(torch.tensor([2.0, 0.5, 0.25, 1.0], dtype=torch.float64))
    img = MetaTensor(torch.zeros(1, 2, 3, 4), affine=affine, meta={"filename_or_obj": "a.nii"})
    assert metatensor_spacing(img) == SPACING
    assert metatensor_spacing(torch.zeros(1, 2, 3, 4)) is None  # no metadata: the caller picks the default
    flat = MetaTensor(torch.zeros(1, 2, 3, 4), affine=torch.diag(torch.tensor([0.0, 1.0, 1.0, 1.0])))
    flat.meta["filename_or_obj"] = "flat.nii"
    with pytest.raises(ValueError, match=r"flat\.nii: no voxel spacing in the affine: degenerate"):
        metatensor_spacing(flat)
    with pytest.raises(ValueError, match=r"^label: no voxel spacing"):
        metatensor_spacing(flat, where="label")
