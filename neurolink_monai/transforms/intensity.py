# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Intensity normalisation for light-microscopy stacks (uint8/uint16, sparse bright neurites)."""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, ScaleIntensityRangePercentiles, Transform

from ..utils import count_nonfinite, describe_source

__all__ = ["DEFAULT_PERCENTILES", "MicroscopyNormalize", "MicroscopyNormalized"]

DEFAULT_PERCENTILES = (0.5, 99.95)  # the bundle's (low, high) intensity-scaling percentiles


class MicroscopyNormalize(Transform):
    """Map intensities to about [0, 1] with per-channel percentiles (MONAI ``ScaleIntensityRangePercentiles``).

    Neurites fill a tiny fraction of a light-microscopy stack (0.1 % of the voxels in the DIADEM OP stacks), so
    the upper percentile must sit above the background: the default 99.95 maps the brightest 0.05 % of voxels
    to >= 1 and ``clip=True`` saturates them, which keeps weak neurites away from zero whatever the bit depth
    (uint8, 12/16-bit uint16). The lower percentile (default 0.5) removes the camera offset. The output is
    float32; a constant patch becomes zeros. Spacing is not touched (networks run on the anisotropic grid).

    Raises:
        ValueError: non-finite intensities, naming the file.
    """

    def __init__(self, lower: float = 0.5, upper: float = 99.95, clip: bool = True, channel_wise: bool = True) -> None:
        if not (0 <= lower < upper <= 100):
            raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower!r}, upper={upper!r}.")
        self.scaler = ScaleIntensityRangePercentiles(
            lower=lower, upper=upper, b_min=0.0, b_max=1.0, clip=clip, channel_wise=channel_wise, dtype=np.float32
        )

    def __call__(self, img: Any) -> Any:
        count, first = count_nonfinite(img)
        if count:
            raise ValueError(
                f"{describe_source(img, 'image')}: non-finite intensities (NaN/Inf) in {count} voxel(s), the first "
                f"at {first}."
            )
        if isinstance(img, torch.Tensor):
            if not img.is_floating_point():
                img = img.to(torch.float32)
        else:
            img = np.asarray(img).astype(np.float32)
        with warnings.catch_warnings():  # a constant patch (a_min == a_max) legitimately maps to zeros
            warnings.filterwarnings("ignore", message="Divide by zero")
            return self.scaler(img)


class MicroscopyNormalized(MapTransform):
    """Dictionary version of :class:`MicroscopyNormalize`."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        lower: float = 0.5,
        upper: float = 99.95,
        clip: bool = True,
        channel_wise: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = MicroscopyNormalize(lower, upper, clip, channel_wise)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
