# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Out-of-core blockwise NeuroLink inference on Dask: Zarr/TIFF in, OME-Zarr out, seam-free and resumable.

Run ``python -m neurolink_monai.inference.blockwise --help`` for the command line, or call :func:`run_blockwise`.

Modules: :mod:`.sources` (the input volume), :mod:`.model` (the model and the bundle's inference settings),
:mod:`.grid` (MONAI's window grid and the output blocks), :mod:`.settings` (options resolved into the settings of a
run), :mod:`.claim` (reuse, resume or start an output), :mod:`.engine` (the inference of one block), :mod:`.store`
(the output group), :mod:`.runner` (:func:`run_blockwise`, the Dask client, the execution) and :mod:`.cli`.
"""

from __future__ import annotations

from .claim import BlockwiseRunError
from .engine import postprocess_block, predict_block, read_padded_region
from .grid import BlockGrid, SlidingWindowGrid, overlap_from_halo
from .model import (
    ModelSpec,
    bundle_inference_settings,
    default_bundle_dir,
    load_model_spec,
    model_spec_from_module,
    trace_step_id,
)
from .runner import BlockwiseResult, dask_client, run_block, run_blockwise, run_blockwise_with
from .settings import (
    DEFAULT_ROI_SIZE,
    BlockwiseOptions,
    BlockwiseSettings,
    ClusterOptions,
    estimate_block_memory,
    resolve_settings,
)
from .sources import BlockwiseInputError, VolumeSource, open_volume
from .store import BlockwiseOutputError, OutputSpec, completed_blocks, partial_path, read_record

__all__ = [
    "BlockGrid",
    "BlockwiseInputError",
    "BlockwiseOptions",
    "BlockwiseOutputError",
    "BlockwiseResult",
    "BlockwiseRunError",
    "BlockwiseSettings",
    "ClusterOptions",
    "DEFAULT_ROI_SIZE",
    "ModelSpec",
    "OutputSpec",
    "SlidingWindowGrid",
    "VolumeSource",
    "bundle_inference_settings",
    "completed_blocks",
    "dask_client",
    "default_bundle_dir",
    "estimate_block_memory",
    "load_model_spec",
    "model_spec_from_module",
    "open_volume",
    "overlap_from_halo",
    "partial_path",
    "postprocess_block",
    "predict_block",
    "read_padded_region",
    "read_record",
    "resolve_settings",
    "run_block",
    "run_blockwise",
    "run_blockwise_with",
    "trace_step_id",
]
