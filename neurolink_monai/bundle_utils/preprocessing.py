# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The bundle's image preprocessing, listed in the configs, and the training-label loading.

The image preprocessing is the ``image_preprocessing`` list of ``bundle/configs/train.json`` and
``bundle/configs/inference.json`` (the same list in both, ``tests/test_bundle_configs.py`` checks it), shared by
training, validation, evaluation and inference; it turns an image file into the network input ``(C, D, H, W)``
float32 in ``[0, 1]``:

0. ``LoadImaged`` (3D TIFF stacks through :class:`neurolink_monai.io.TiffStackReader`, NIfTI through nibabel),
1. ``EnsureChannelFirstd``,
2. :class:`~neurolink_monai.transforms.ToZYXd`: NIfTI volumes, stored ``(x, y, z)``, are reordered to the
   ``(z, y, x)`` array order of the project (TIFF stacks already are),
3. :class:`~neurolink_monai.transforms.CheckStackd`: a 3D stack of at least two slices with ``network_def#in_channels``
   channels, finite intensities and more than one grey level of contrast between the scaling percentiles, else a
   ``ValueError`` naming the file,
4. :class:`~neurolink_monai.transforms.MicroscopyNormalized`: the ``intensity_percentiles`` (0.5, 99.95, the
   ``DEFAULT_PERCENTILES`` of :mod:`neurolink_monai.transforms.intensity`) of the whole stack mapped to ``[0, 1]``
   and clipped (a degenerate window too, with a warning),
5. ``EnsureTyped`` float32, metadata kept (file name, affine with the spacing).

One step is changed with a config override, e.g. ``--image_preprocessing#4#clip False``. Python code outside a
bundle workflow (the napari plugin, benchmarks, tests) instantiates the same list with
:func:`image_preprocessing_from_config`. Out-of-core inference (``neurolink_monai.inference.blockwise``) applies the
same mapping from the same module (:mod:`neurolink_monai.transforms.intensity`): the percentiles of the whole stack,
not of one block.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai.config import KeysCollection
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, MapTransform, Transform

import neurolink_monai.io  # noqa: F401  (registers the TIFF stack reader/writer with MONAI)
from neurolink_monai.transforms import (
    DEFAULT_PERCENTILES,
    CheckStackd,
    LoadSWCd,
    SWCToMaskd,
    ToZYXd,
    check_binary_label,
)
from neurolink_monai.utils import describe_source

from .naming import SWC_SUFFIX
from .paths import default_bundle_root

__all__ = [
    "BinaryLabel",
    "BinaryLabeld",
    "LoadLabeld",
    "image_preprocessing_from_config",
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


def image_preprocessing_from_config(config_file: str | os.PathLike | None = None, **overrides: Any) -> list[Transform]:
    """The ``image_preprocessing`` list of a bundle config, instantiated: the bundle's image preprocessing for Python
    code that runs outside a bundle workflow.

    Args:
        config_file: a bundle config holding ``image_preprocessing``; default ``configs/inference.json`` of
            :func:`~neurolink_monai.bundle_utils.default_bundle_root`.
        overrides: config overrides applied first, e.g. ``intensity_percentiles=[1, 99]`` or
            ``**{"image_preprocessing#4#clip": False}``.

    Returns:
        the transforms, in order, turning ``{"image": path}`` into ``(C, D, H, W)`` float32 in ``[0, 1]``.

    Raises:
        ValueError: the config has no ``image_preprocessing`` list (the file is named).
    """
    from monai.bundle import ConfigParser

    path = Path(config_file) if config_file is not None else Path(default_bundle_root()) / "configs" / "inference.json"
    parser = ConfigParser()
    parser.read_config(str(path))
    parser.update(overrides)
    if not isinstance(parser.get("image_preprocessing"), list):
        raise ValueError(f"{path}: the config has no 'image_preprocessing' list of transforms.")
    return list(parser.get_parsed_content("image_preprocessing"))


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
