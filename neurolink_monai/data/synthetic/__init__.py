# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Synthetic weak-signal neuron stacks with ground-truth SWC and label masks: the bundle's embedded dataset.

Neuron-like trees (:func:`generate_neuron`) are rendered as a fluorescence microscope would image them
(:func:`render_stack`: anisotropic PSF, Poisson shot and Gaussian read noise, slowly varying background, out-of-focus
blobs, crossing fibres, and neurite stretches fading towards the noise floor, the weak signals of NeuroLink,
Yan et al., MICCAI 2024). :func:`generate_dataset` writes an MSD-style folder; :func:`ensure_dataset` generates it
once and reuses it. Command line: ``python -m neurolink_monai.data.synthetic --help``.
"""

from __future__ import annotations

from .config import DIFFICULTY_PRESETS, SyntheticConfig
from .dataset import (
    DATASET_JSON,
    DEFAULT_NUM_SAMPLES,
    DEFAULT_SEED,
    DEFAULT_SHAPE,
    DEFAULT_SPLITS,
    GENERATOR_VERSION,
    MANIFEST_NAME,
    ensure_dataset,
    generate_dataset,
    generate_sample,
    read_manifest,
    regenerate_sample,
    split_counts,
)
from .geometry import sample_centreline
from .morphology import concatenate_swc, generate_crossing_fibres, generate_neuron
from .render import RenderedStack, render_components, render_stack
from .snr import centreline_snr, snr_summary

__all__ = [
    "DATASET_JSON",
    "DEFAULT_NUM_SAMPLES",
    "DEFAULT_SEED",
    "DEFAULT_SHAPE",
    "DEFAULT_SPLITS",
    "DIFFICULTY_PRESETS",
    "GENERATOR_VERSION",
    "MANIFEST_NAME",
    "RenderedStack",
    "SyntheticConfig",
    "centreline_snr",
    "concatenate_swc",
    "ensure_dataset",
    "generate_crossing_fibres",
    "generate_dataset",
    "generate_neuron",
    "generate_sample",
    "read_manifest",
    "regenerate_sample",
    "render_components",
    "render_stack",
    "sample_centreline",
    "snr_summary",
    "split_counts",
]
