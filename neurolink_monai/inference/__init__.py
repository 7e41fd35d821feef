# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Inference utilities: percentile intensity windowing shared with the bundle, the bundle's sliding-window inferer
(:class:`NeuroLinkInferer`: windows fitted to the stack, background windows skipped), and out-of-core blockwise
inference.

``neurolink_monai.inference.blockwise`` (also a command: ``python -m neurolink_monai.inference.blockwise``) runs
NeuroLink over Zarr/TIFF volumes larger than memory on Dask, writing OME-Zarr.
"""

from __future__ import annotations

from .blockwise import BlockwiseInputError, BlockwiseOutputError, BlockwiseRunError, run_blockwise
from .intensity import (
    DEFAULT_LOWER_PERCENTILE,
    DEFAULT_MAX_SAMPLES,
    DEFAULT_UPPER_PERCENTILE,
    intensity_window,
    scale_intensity,
    subsample_strides,
)
from .sliding import (
    DEFAULT_BACKGROUND_Z,
    NeuroLinkInferer,
    NoiseFloor,
    background_floor,
    fit_roi_size,
    is_background_window,
    network_divisor,
)

__all__ = [
    "BlockwiseInputError",
    "BlockwiseOutputError",
    "BlockwiseRunError",
    "DEFAULT_LOWER_PERCENTILE",
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_UPPER_PERCENTILE",
    "DEFAULT_BACKGROUND_Z",
    "NeuroLinkInferer",
    "NoiseFloor",
    "background_floor",
    "fit_roi_size",
    "is_background_window",
    "network_divisor",
    "intensity_window",
    "run_blockwise",
    "scale_intensity",
    "subsample_strides",
]
