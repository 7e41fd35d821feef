# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""MONAI ``ImageReader`` / ``ImageWriter`` for 3D TIFF stacks, so ``LoadImage(d)`` and ``SaveImage(d)`` handle them.

MONAI's ``PILReader`` silently returns the first page of a multi-page TIFF. :class:`TiffStackReader` reads the
whole stack with tifffile and puts the ImageJ / OME-TIFF voxel spacing into the affine (array order
``(z, y, x)``, so ``affine = diag(sz, sy, sx, 1)`` and MONAI's ``pixdim`` is ``(sz, sy, sx)``).

Importing :mod:`neurolink_monai.io` calls :func:`register_tiff_stack_io`, which

* adds the reader to ``monai.transforms.io.array.SUPPORTED_READERS`` under ``"tiffstackreader"``: a default
  ``LoadImage()`` then routes ``.tif``/``.tiff`` files to it (MONAI's default readers had none for them; a 2D
  TIFF now fails with a clear message) and ``LoadImage(reader="TiffStackReader")`` resolves the short name;
* registers :class:`TiffStackWriter` first for the ``tif``/``tiff`` extensions, so
  ``SaveImage(output_ext=".tif")`` writes 3D stacks with it (2D data falls back to MONAI's ``PILWriter``).

From bundle JSON use ``"reader": "TiffStackReader"``, ``"reader": "neurolink_monai.io.TiffStackReader"`` or
``{"_target_": "neurolink_monai.io.TiffStackReader"}``; and ``"writer": "neurolink_monai.io.TiffStackWriter"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.data import ImageReader, ImageWriter, MetaTensor, register_writer
from monai.data.image_reader import _copy_compatible_dict, _stack_images
from monai.data.utils import is_supported_format
from monai.utils import MetaKeys, SpaceKeys, convert_data_type
from monai.utils.type_conversion import get_equivalent_dtype

from .tiff import TIFF_WRITE_DTYPES, TiffStackError, read_tiff_stack_with_metadata, write_tiff_stack

__all__ = ["TiffStackReader", "TiffStackWriter", "metatensor_spacing", "register_tiff_stack_io", "spacing_from_affine"]

_SUFFIXES = ("tif", "tiff")


def spacing_from_affine(affine: Any) -> tuple[float, float, float]:
    """Voxel spacing ``(z, y, x)`` (the column norms of the 3x3 part) of an array-order affine."""
    aff = np.asarray(convert_data_type(affine, np.ndarray)[0], dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise ValueError(f"expected a finite 4x4 affine, got shape {aff.shape}: {aff!r}.")
    sp = np.sqrt((aff[:3, :3] ** 2).sum(axis=0))
    if (sp <= 0).any():
        raise ValueError(f"degenerate affine (a zero spacing): {aff!r}.")
    return float(sp[0]), float(sp[1]), float(sp[2])


def metatensor_spacing(img: Any, where: str | None = None) -> tuple[float, float, float] | None:
    """The voxel spacing ``(z, y, x)`` of a MONAI ``MetaTensor``, read from its affine: the ONE place the package
    reads the spacing of a loaded volume.

    Returns:
        the spacing, or None when ``img`` carries no 3D affine (not a MetaTensor, or a non-4x4 affine); the caller
        decides what that means (unit spacing, an error...).

    Raises:
        ValueError: a degenerate or non-finite affine (a zero spacing), the message starting with ``where`` (default:
            the file the MetaTensor was loaded from).
    """
    if not isinstance(img, MetaTensor) or "affine" not in img.meta:
        return None
    affine = np.asarray(convert_data_type(img.affine, np.ndarray)[0], dtype=np.float64)
    if affine.shape != (4, 4):
        return None
    try:
        return spacing_from_affine(affine)
    except ValueError as e:
        name = where or img.meta.get("filename_or_obj") or "input"
        raise ValueError(f"{name}: no voxel spacing in the affine: {e}") from e


class _DeferredError:
    def __init__(self, error: Exception) -> None:
        self.error = error


class TiffStackReader(ImageReader):
    """Read 3D (and multi-channel 3D) TIFF stacks with tifffile; uint8, uint16, float32 and other real dtypes.

    ``get_data`` returns ``(D, H, W)`` (``original_channel_dim = "no_channel"``) for a single-channel stack or
    ``(C, D, H, W)`` (``original_channel_dim = 0``) for a multi-channel one; several files are stacked as
    channels. Metadata: ``affine`` and ``original_affine`` ``diag(sz, sy, sx, 1)`` in micrometres, ``spatial_shape``,
    ``spacing`` ``(z, y, x)``, ``spacing_unit``, ``spacing_source`` (``imagej``/``ome``/``none``), ``stored_dtype``
    (the sample type in the file, e.g. ``"uint8"``; the array MONAI returns is float32).

    Args:
        check_finite: raise :class:`~neurolink_monai.io.TiffStackError` on NaN/Inf intensities (default True).
        kwargs: unused, accepted so that ``LoadImage(reader=..., **kwargs)`` passes through.

    Raises (from ``read``):
        TiffStackError: corrupt/truncated/2D/empty file or non-finite values; the message names the file.
    """

    def __init__(self, check_finite: bool = True, **kwargs: Any) -> None:
        super().__init__()
        self.check_finite = bool(check_finite)
        self.kwargs = kwargs

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        """True for ``.tif``/``.tiff`` (including ``.ome.tif``) file names."""
        return is_supported_format(filename, _SUFFIXES)

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any):
        """Read one file or several; returns ``(array, meta)`` or a list of them for ``get_data``.

        A failure is returned as a deferred error that ``get_data`` raises: with a named reader, ``LoadImage``
        swallows exceptions from ``read`` and falls back to ``PILReader``, which returns one page of a stack
        or fails with an unrelated message; deferring keeps the real cause (and the file name) visible.
        """
        check_finite = kwargs.get("check_finite", self.check_finite)
        names = data if isinstance(data, (list, tuple)) else (data,)
        try:
            out = [read_tiff_stack_with_metadata(n, check_finite=check_finite) for n in names]
        except (TiffStackError, OSError) as e:
            return _DeferredError(e)
        return out if len(out) > 1 else out[0]

    def get_data(self, img) -> tuple[np.ndarray, dict]:
        """Return the image array and the MONAI metadata dict (see the class docstring)."""
        if isinstance(img, _DeferredError):
            raise img.error
        items = img if isinstance(img, list) else [img]
        arrays: list[np.ndarray] = []
        compatible: dict = {}
        for czyx, info in items:
            sz, sy, sx = info["spacing"]
            affine = np.diag([sz, sy, sx, 1.0])
            header = {
                MetaKeys.AFFINE: affine,
                MetaKeys.ORIGINAL_AFFINE: affine.copy(),
                MetaKeys.SPATIAL_SHAPE: np.asarray(czyx.shape[1:]),
                MetaKeys.SPACE: SpaceKeys.RAS,
                MetaKeys.ORIGINAL_CHANNEL_DIM: 0 if info["has_channel"] else "no_channel",
                "spacing": np.asarray(info["spacing"], dtype=np.float64),
                "spacing_unit": info["spacing_unit"],
                "spacing_source": info["spacing_source"],
                "stored_dtype": str(czyx.dtype),
            }
            arrays.append(czyx if info["has_channel"] else czyx[0])
            _copy_compatible_dict(header, compatible)
        if len(arrays) > 1 and compatible[MetaKeys.ORIGINAL_CHANNEL_DIM] == "no_channel":
            compatible[MetaKeys.ORIGINAL_CHANNEL_DIM] = float("nan")  # _stack_images then stacks on a new axis 0
        return _stack_images(arrays, compatible), compatible


class TiffStackWriter(ImageWriter):
    """Write 3D stacks as ImageJ-compatible TIFFs (uint8, uint16, float32), spacing from the affine, atomically.

    Used by ``SaveImage(d)``: ``SaveImaged(keys="pred", writer="neurolink_monai.io.TiffStackWriter",
    output_ext=".tif", output_dtype=np.uint8)``. A ``(C, D, H, W)`` input with ``C > 1`` becomes an ImageJ
    hyperstack (``ZCYX``). Float data cast to an integer ``output_dtype`` are rounded and clipped to its range;
    ``scale=255`` or ``65535`` first clips to [0, 1] and scales, as MONAI's ``PILWriter`` does.

    Args:
        output_dtype: uint8, uint16 or float32; ``None`` keeps the data dtype (must be one of those).
        scale: ``None``, 255 or 65535.
        compression: tifffile codec name, e.g. ``"zlib"``; ``None`` (default) writes uncompressed.
    """

    def __init__(
        self, output_dtype: Any = np.float32, scale: int | None = None, compression: str | None = None, **kwargs
    ) -> None:
        super().__init__(output_dtype=output_dtype, scale=scale, compression=compression, affine=None, **kwargs)
        if scale not in (None, 0, 255, 65535):
            raise ValueError(f"scale must be None, 255 or 65535, got {scale!r}.")

    def set_data_array(
        self, data_array: Any, channel_dim: int | None = 0, squeeze_end_dims: bool = True, **kwargs: Any
    ) -> None:
        """Store the data channel-last: ``(D, H, W)`` or ``(D, H, W, C)``; 2D data raise ValueError."""
        spatial = len(data_array.shape) - (0 if channel_dim is None else 1)
        if spatial != 3:
            raise ValueError(
                f"TiffStackWriter writes 3D stacks (D, H, W) with an optional channel; got shape "
                f"{tuple(data_array.shape)} with channel_dim={channel_dim} (2D data go to PILWriter)."
            )
        data = self.convert_to_channel_last(
            data=data_array, channel_dim=channel_dim, squeeze_end_dims=False, spatial_ndim=None
        )
        data = convert_data_type(data, np.ndarray)[0]
        if data.shape[-1] == 1:
            data = data[..., 0]
        self.data_obj = data

    def set_metadata(self, meta_dict: Mapping | None, resample: bool = False, **options: Any) -> None:
        """Take the affine from ``meta_dict``; with ``resample=True`` resample to ``original_affine`` first."""
        original_affine, affine, spatial_shape = self.get_meta_info(meta_dict)
        if resample and original_affine is not None:
            self.data_obj, self.affine = self.resample_if_needed(
                data_array=self.data_obj,
                affine=affine,
                target_affine=original_affine,
                output_spatial_shape=spatial_shape,
                mode=options.pop("mode", "bilinear"),
                padding_mode=options.pop("padding_mode", "border"),
                align_corners=options.pop("align_corners", False),
                dtype=options.pop("dtype", np.float64),
            )
            self.data_obj = convert_data_type(self.data_obj, np.ndarray)[0]
        else:
            self.affine = affine

    def write(self, filename: str | os.PathLike, verbose: bool = False, **kwargs: Any) -> None:
        """Cast, then write ``filename`` with :func:`~neurolink_monai.io.write_tiff_stack`."""
        super().write(filename, verbose=verbose)
        data = np.asarray(self.data_obj)
        spacing = spacing_from_affine(self.affine) if self.affine is not None else (1.0, 1.0, 1.0)
        dtype = (
            data.dtype if self.output_dtype is None else np.dtype(get_equivalent_dtype(self.output_dtype, np.ndarray))
        )
        if self.scale:
            data = np.clip(data.astype(np.float64), 0.0, 1.0) * self.scale
        if dtype.kind in "ui" and data.dtype.kind == "f":
            if not np.isfinite(data).all():
                raise ValueError(f"{filename}: cannot cast non-finite values to {dtype}.")
            info = np.iinfo(dtype)
            data = np.clip(np.rint(data), info.min, info.max)
        if dtype.newbyteorder("=") not in TIFF_WRITE_DTYPES and dtype != np.bool_:
            raise TypeError(f"{filename}: TiffStackWriter writes uint8, uint16 or float32, got output_dtype {dtype}.")
        data = data.astype(dtype, copy=False)
        if data.ndim == 4:
            data = np.moveaxis(data, -1, 0)
        write_tiff_stack(Path(filename), data, spacing=spacing, compression=self.compression)


def register_tiff_stack_io() -> None:
    """Make MONAI's ``LoadImage`` / ``SaveImage`` find the TIFF stack reader and writer (idempotent)."""
    from monai.data import image_writer
    from monai.transforms.io.array import SUPPORTED_READERS

    SUPPORTED_READERS["tiffstackreader"] = TiffStackReader
    if not image_writer.SUPPORTED_WRITERS:  # MONAI fills its defaults lazily, only while the table is empty
        image_writer.init()
    for ext in _SUFFIXES:
        existing = image_writer.SUPPORTED_WRITERS.get(ext, ())
        if TiffStackWriter not in existing:
            register_writer(ext, TiffStackWriter)
