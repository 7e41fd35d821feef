# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Data for NeuroLink-MONAI: the synthetic weak-signal neuron dataset and MIP previews."""

from __future__ import annotations

from .preview import TREE_COLOURS, draw_swc, mip_preview, save_mip_png
from .synthetic import SyntheticConfig, ensure_dataset, generate_dataset, generate_neuron, generate_sample, render_stack

__all__ = [
    "TREE_COLOURS",
    "SyntheticConfig",
    "draw_swc",
    "ensure_dataset",
    "generate_dataset",
    "generate_neuron",
    "generate_sample",
    "mip_preview",
    "render_stack",
    "save_mip_png",
]
