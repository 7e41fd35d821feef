# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .contrast import LocalContrast3d
from .conv import Conv3d
from .dsconv import DSConv3D, snake_accumulation_matrix
from .neurolink_net import ConvNormAct, MultiViewBlock, NeuroLinkNet
from .outputs import (
    DIRECTION_CHANNELS,
    DISTANCE_CHANNELS,
    HEADS,
    check_heads,
    check_threshold,
    head_channels,
    interpret_outputs,
    num_output_channels,
    split_outputs,
)

__all__ = [
    "Conv3d",
    "ConvNormAct",
    "DIRECTION_CHANNELS",
    "DISTANCE_CHANNELS",
    "DSConv3D",
    "HEADS",
    "LocalContrast3d",
    "MultiViewBlock",
    "NeuroLinkNet",
    "check_heads",
    "check_threshold",
    "head_channels",
    "interpret_outputs",
    "num_output_channels",
    "snake_accumulation_matrix",
    "split_outputs",
]
