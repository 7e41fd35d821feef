# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Python helpers of the NeuroLink-MONAI bundle (``bundle/configs/*.json``): paths and datasets, the shared
image preprocessing, inference input checks, output post-processing and writing, and ignite handlers.

Importing it (the configs do, in ``imports``) installs :func:`neurolink_monai.errors.install_error_hook`, so that a
failing ``python -m monai.bundle run ...`` ends with one line naming the bad file or option and the problem
instead of MONAI's ``RuntimeError: Failed to evaluate ConfigExpression``."""

from __future__ import annotations

from ..errors import (
    CheckpointError,
    DatasetError,
    MissingFileError,
    NeuroLinkUserError,
    OutputDirError,
    StackContentError,
    install_error_hook,
)
from .batch import PrepareKeyedBatch
from .checkpoint import CheckedCheckpointLoader, check_state_dict, read_checkpoint
from .flags import as_bool
from .handlers import (
    EvaluationReport,
    LossProgressBar,
    TrainingCheckpoint,
    TrainingRandomState,
    ValidationState,
    latest_checkpoint,
)
from .init import init_foreground_prior, load_pretrained
from .inputs import InferenceInputError, check_inference_input, list_inference_inputs
from .naming import INPUT_SUFFIXES, OUTPUT_SUFFIXES, input_stem, output_paths
from .paths import (
    BUNDLE_ROOT_ENV,
    check_output_dir,
    default_bundle_root,
    default_inference_input,
    load_datalist,
    paired_datalist,
    resolve_dataset_dir,
)
from .postprocessing import NeuroLinkOutputsd, inference_heads
from .preprocessing import (
    BinaryLabel,
    BinaryLabeld,
    LoadLabeld,
    image_preprocessing_from_config,
    load_image_transforms,
)
from .writers import OutputWriteError, SaveNeuroLinkOutputsd

__all__ = [
    "BUNDLE_ROOT_ENV",
    "BinaryLabel",
    "BinaryLabeld",
    "CheckedCheckpointLoader",
    "CheckpointError",
    "DatasetError",
    "MissingFileError",
    "NeuroLinkUserError",
    "OutputDirError",
    "StackContentError",
    "TrainingRandomState",
    "check_output_dir",
    "check_state_dict",
    "install_error_hook",
    "read_checkpoint",
    "EvaluationReport",
    "INPUT_SUFFIXES",
    "InferenceInputError",
    "LoadLabeld",
    "LossProgressBar",
    "NeuroLinkOutputsd",
    "OUTPUT_SUFFIXES",
    "OutputWriteError",
    "PrepareKeyedBatch",
    "SaveNeuroLinkOutputsd",
    "TrainingCheckpoint",
    "as_bool",
    "ValidationState",
    "check_inference_input",
    "default_bundle_root",
    "default_inference_input",
    "image_preprocessing_from_config",
    "inference_heads",
    "init_foreground_prior",
    "input_stem",
    "latest_checkpoint",
    "list_inference_inputs",
    "load_datalist",
    "load_image_transforms",
    "load_pretrained",
    "paired_datalist",
    "output_paths",
    "resolve_dataset_dir",
]

install_error_hook()
