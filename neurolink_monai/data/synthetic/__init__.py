# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Synthetic weak-signal neuron stacks with ground-truth SWC and label masks: the bundle's embedded dataset.

Neuron-like trees (:func:`generate_neuron`) are rendered as a fluorescence microscope would image them
(:func:`render_stack`: anisotropic PSF, Poisson shot and Gaussian read noise, slowly varying background, out-of-focus
blobs, crossing fibres, and neurite stretches fading towards the noise floor, the weak signals of NeuroLink,
Yan et al., MICCAI 2024). :func:`generate_dataset` writes an MSD-style folder; :func:`ensure_dataset` generates it
once and reuses it. Command line: ``python -m neurolink_monai.data.synthetic --help``.

``SyntheticConfig(realism="confocal")`` adds what real confocal stacks hold (:class:`RealismConfig`: puncta,
speckle, varicosities, cell bodies, haze, autofluorescence, uneven illumination and depth attenuation, per-sample PSF,
anisotropy and signal level, saturation, uint8 output); ``SyntheticConfig(swc_dir=DIR)`` renders real SWC traces
(:func:`place_swc`) instead of random trees. Both are off by default, and the default dataset is unchanged by them.
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
from .realism import REALISM_PRESETS, RealismConfig
from .render import RenderedStack, render_components, render_stack
from .snr import centreline_snr, snr_summary
from .swc_source import crop_swc, list_swc_files, load_swc_folder, place_swc

__all__ = [
    "DATASET_JSON",
    "DEFAULT_NUM_SAMPLES",
    "DEFAULT_SEED",
    "DEFAULT_SHAPE",
    "DEFAULT_SPLITS",
    "DIFFICULTY_PRESETS",
    "GENERATOR_VERSION",
    "MANIFEST_NAME",
    "REALISM_PRESETS",
    "RealismConfig",
    "RenderedStack",
    "SyntheticConfig",
    "centreline_snr",
    "concatenate_swc",
    "crop_swc",
    "ensure_dataset",
    "generate_crossing_fibres",
    "generate_dataset",
    "generate_neuron",
    "generate_sample",
    "list_swc_files",
    "load_swc_folder",
    "place_swc",
    "read_manifest",
    "regenerate_sample",
    "render_components",
    "render_stack",
    "sample_centreline",
    "snr_summary",
    "split_counts",
]
