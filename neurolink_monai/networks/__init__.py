# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

from .dsconv import DSConv3D, snake_accumulation_matrix
from .outputs import DIRECTION_CHANNELS, DISTANCE_CHANNELS, num_output_channels, split_outputs

__all__ = [
    "DSConv3D",
    "snake_accumulation_matrix",
    "DIRECTION_CHANNELS",
    "DISTANCE_CHANNELS",
    "num_output_channels",
    "split_outputs",
]
