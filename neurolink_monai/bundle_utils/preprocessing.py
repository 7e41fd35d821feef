# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The bundle's image preprocessing: the ONE chain shared by training, validation, evaluation and inference.

:func:`inference_preprocessing` returns the transforms that turn an image file into the network input
``(1, D, H, W)`` float32 in ``[0, 1]``:

1. ``LoadImaged`` (3D TIFF stacks through :class:`neurolink_monai.io.TiffStackReader`, NIfTI through nibabel),
2. ``EnsureChannelFirstd``,
3. :class:`~neurolink_monai.transforms.ToZYXd`: NIfTI volumes, stored ``(x, y, z)``, are reordered to the
   ``(z, y, x)`` array order of the project (TIFF stacks already are),
4. :class:`~neurolink_monai.transforms.CheckStackd`: a 3D stack of at least two slices with exactly one channel,
   finite intensities and more than one grey level of contrast between the scaling percentiles, else a
   ``ValueError`` naming the file,
5. :func:`intensity_scaling`: percentile scaling (``MicroscopyNormalized``), ``DEFAULT_PERCENTILES`` (0.5, 99.95,
   in :mod:`neurolink_monai.transforms.intensity`) of the whole stack mapped to ``[0, 1]`` and clipped (a
   degenerate window too, with a warning).

Out-of-core inference (``neurolink_monai.inference.blockwise``) applies the same mapping from the same module
(:mod:`neurolink_monai.transforms.intensity`): the percentiles of the whole stack, not of one block.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, MapTransform, Transform

import neurolink_monai.io  # noqa: F401  (registers the TIFF stack reader/writer with MONAI)
from neurolink_monai.transforms import (
    DEFAULT_PERCENTILES,
    CheckStackd,
    LoadSWCd,
    MicroscopyNormalized,
    SWCToMaskd,
    ToZYXd,
    check_binary_label,
)
from neurolink_monai.utils import describe_source

from .naming import SWC_SUFFIX

__all__ = [
    "BinaryLabel",
    "BinaryLabeld",
    "LoadLabeld",
    "inference_preprocessing",
    "intensity_scaling",
    "load_image_transforms",
]


class BinaryLabel(Transform):
    """A training label mask as 0/1 float32, refusing masks that are not binary (the file and values are named).

    See :func:`neurolink_monai.transforms.check_binary_label`: 0 and one foreground value (1, 255...) pass;
    several nonzero values raise unless ``nonzero_is_neurite`` (config key ``label_nonzero_is_neurite``).
    Replaces a silent ``AsDiscrete(threshold=0.5)``, which turned a 0..5 instance map into a mask without a word.
    """

    def __init__(self, nonzero_is_neurite: bool = False) -> None:
        from .flags import as_bool

        self.nonzero_is_neurite = as_bool(nonzero_is_neurite, "label_nonzero_is_neurite")

    def __call__(self, label: Any) -> Any:
        return check_binary_label(label, describe_source(label, "label"), self.nonzero_is_neurite)


class BinaryLabeld(MapTransform):
    """Dictionary version of :class:`BinaryLabel`."""

    def __init__(self, keys: KeysCollection, nonzero_is_neurite: bool = False, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.transform = BinaryLabel(nonzero_is_neurite)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


def intensity_scaling(
    keys: KeysCollection = "image", percentiles: Sequence[float] = DEFAULT_PERCENTILES, clip: bool = True
) -> MicroscopyNormalized:
    """Percentile intensity scaling (:class:`neurolink_monai.transforms.MicroscopyNormalized`): the ``percentiles``
    (low, high) of the whole stack map to 0 and 1, clipped to [0, 1] when ``clip``."""
    if len(percentiles) != 2:
        raise ValueError(f"percentiles must be (low, high), got {percentiles!r}.")
    return MicroscopyNormalized(keys, lower=float(percentiles[0]), upper=float(percentiles[1]), clip=clip)


def load_image_transforms(
    keys: KeysCollection = "image",
    num_channels: int | None = 1,
    percentiles: Sequence[float] | None = DEFAULT_PERCENTILES,
) -> list[Transform]:
    """Load, channel-first, ``(z, y, x)`` order and (when ``num_channels`` is given)
    :class:`~neurolink_monai.transforms.CheckStackd` with the contrast rule measured between ``percentiles``."""
    out: list[Transform] = [
        LoadImaged(keys, image_only=True),
        EnsureChannelFirstd(keys),
        ToZYXd(keys),
    ]
    if num_channels is not None:
        out.append(CheckStackd(keys, num_channels=num_channels, percentiles=percentiles))
    return out


def inference_preprocessing(
    keys: KeysCollection = "image",
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    num_channels: int = 1,
    clip: bool = True,
) -> list[Transform]:
    """The bundle's image preprocessing chain (see the module docstring), as a list for ``Compose``.

    Args:
        keys: image key(s) of the data dicts ``{"image": path}``.
        percentiles: (low, high) percentiles mapped to 0 and 1.
        num_channels: channels the network takes.
        clip: clip the scaled intensities to ``[0, 1]``.

    Returns:
        transforms producing ``(num_channels, D, H, W)`` float32 MetaTensors (metadata: file name, affine with the
        spacing).
    """
    return [
        *load_image_transforms(keys, num_channels, percentiles),
        intensity_scaling(keys, percentiles, clip),
        EnsureTyped(keys, dtype=torch.float32, track_meta=True),
    ]


class LoadLabeld(MapTransform):
    """Load a training label given either as a mask file or as an SWC trace.

    A mask (TIFF, NIfTI) goes through :func:`load_image_transforms` like the image. An ``.swc`` path is read and
    rasterised on the fly onto the grid and spacing of ``ref_key``'s image (:class:`~neurolink_monai.transforms.
    SWCToMaskd`, tapered capsules with radius at least ``min_radius``), so traces users already have are labels;
    the trace is also kept under ``swc_key`` (when that key is not set) for the direction targets.

    Args:
        keys: label key(s).
        ref_key: the loaded image ``(C, D, H, W)`` whose grid the SWC is drawn on.
        swc_key: where the trace goes for the direction targets.
        min_radius: smallest rasterised radius (in-plane voxels).
    """

    def __init__(
        self, keys: KeysCollection = "label", ref_key: str = "image", swc_key: str = "swc", min_radius: float = 1.0
    ) -> None:
        super().__init__(keys)
        self.ref_key, self.swc_key = ref_key, swc_key
        self.load_mask = Compose(load_image_transforms(self.keys, num_channels=None))
        self.min_radius = float(min_radius)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if not (isinstance(value, (str, bytes)) or hasattr(value, "__fspath__")):
                continue
            if not str(value).lower().endswith(SWC_SUFFIX):
                d.update(self.load_mask({key: value}))
                continue
            if self.ref_key not in d:
                raise ValueError(
                    f"{value}: an SWC label is drawn on the image's grid, but {self.ref_key!r} is missing."
                )
            tmp_key = f"__{key}_swc"
            loaded = LoadSWCd(tmp_key)({tmp_key: str(value), self.ref_key: d[self.ref_key]})
            mask = SWCToMaskd(tmp_key, self.ref_key, output_keys=key, min_radius=self.min_radius)(loaded)[key]
            d[key] = mask
            if d.get(self.swc_key) is None:
                d[self.swc_key] = loaded[tmp_key]
                d[f"{self.swc_key}_meta_dict"] = loaded[f"{tmp_key}_meta_dict"]
        return d
