# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Inference utilities: the bundle's sliding-window inferer (:class:`NeuroLinkInferer`: windows fitted to the stack,
background windows skipped) and out-of-core blockwise inference. The intensity window both use lives in
:mod:`neurolink_monai.transforms.intensity`.

``neurolink_monai.inference.blockwise`` (also a command: ``python -m neurolink_monai.inference.blockwise``) runs
NeuroLink over Zarr/TIFF volumes larger than memory on Dask, writing OME-Zarr.
"""

from __future__ import annotations

from .blockwise import BlockwiseInputError, BlockwiseOutputError, BlockwiseRunError, run_blockwise
from .sliding import (
    DEFAULT_BACKGROUND_Z,
    DEFAULT_CONTEXT_MARGIN,
    NeuroLinkInferer,
    NoiseFloor,
    alone_and_embedded,
    background_floor,
    background_output,
    context_margins,
    fit_roi_size,
    is_background_window,
    margin_pads,
    network_divisor,
    pad_with_background,
    streamed_background_floor,
)

__all__ = [
    "BlockwiseInputError",
    "BlockwiseOutputError",
    "BlockwiseRunError",
    "DEFAULT_BACKGROUND_Z",
    "DEFAULT_CONTEXT_MARGIN",
    "NeuroLinkInferer",
    "NoiseFloor",
    "background_floor",
    "background_output",
    "alone_and_embedded",
    "context_margins",
    "fit_roi_size",
    "is_background_window",
    "margin_pads",
    "network_divisor",
    "pad_with_background",
    "run_blockwise",
    "streamed_background_floor",
]
