# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""MONAI transforms for NeuroLink's training targets and microscopy preprocessing.

Typical training pipeline (targets computed after spatial augmentation, so they are right by construction)::

    LoadImaged("image", reader="TiffStackReader"), EnsureChannelFirstd("image"), LoadSWCd("swc"),
    SWCToMaskd("swc", ref_key="image", output_keys="label"), CheckVolumed(("image", "label")),
    MicroscopyNormalized("image"), RandSpatialCropd(("image", "label"), ...), RandFlipd(...),
    RandRotate90d(...), DirectionMapd("label", swc_key="swc"), DistanceMapd("label"), DeleteItemsd("swc"),
    RandGammaContrastd("image"), RandAttenuationFieldd("image"), RandPoissonGaussianNoised("image")

The intensity and noise augmentations (``augment_intensity``) run last, on the normalised image only: they make
weak stretches and low-SNR windows out of bright ones without touching the targets.

``DirectionMapd`` with ``swc_key`` maps the SWC onto the augmented grid through the label's MetaTensor affine;
with ``swc_key=None`` it uses the label's own centreline.
"""

from __future__ import annotations

from .augment import RandFlipWithDirectiond, RandRotate90WithDirectiond
from .augment_intensity import (
    RandAttenuationField,
    RandAttenuationFieldd,
    RandGammaContrast,
    RandGammaContrastd,
    RandPoissonGaussianNoise,
    RandPoissonGaussianNoised,
    attenuation_field,
    degrade_to_weak,
    gamma_contrast,
    poisson_gaussian_noise,
    signal_background_levels,
)
from .checks import (
    CheckStack,
    CheckStackd,
    CheckVolume,
    CheckVolumed,
    check_binary_label,
    check_contrast,
    contrast_step,
)
from .direction import (
    DirectionMap,
    DirectionMapd,
    apply_component_map,
    direction_map_from_label,
    direction_map_from_swc,
    flip_components,
    flip_direction_map,
    rotate90_components,
    rotate90_direction_map,
)
from .direction_sign import canonicalize_direction
from .distance import DistanceMap, DistanceMapd, boundary_background, mask_distance_transform, radius_from_distance
from .intensity import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_PERCENTILES,
    MicroscopyNormalize,
    MicroscopyNormalized,
    check_percentiles,
    intensity_window,
    scale_intensity,
    subsample_strides,
    volume_percentiles,
)
from .orientation import ToZYX, ToZYXd
from .swc_raster import check_swc_inside, rasterize_swc
from .swc_to_mask import LoadSWC, LoadSWCd, SWCToMask, SWCToMaskd

__all__ = [
    "CheckStack",
    "CheckStackd",
    "CheckVolume",
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_PERCENTILES",
    "CheckVolumed",
    "check_binary_label",
    "check_percentiles",
    "check_contrast",
    "contrast_step",
    "DirectionMap",
    "DirectionMapd",
    "DistanceMap",
    "DistanceMapd",
    "LoadSWC",
    "LoadSWCd",
    "MicroscopyNormalize",
    "MicroscopyNormalized",
    "RandAttenuationField",
    "RandAttenuationFieldd",
    "RandGammaContrast",
    "RandGammaContrastd",
    "RandPoissonGaussianNoise",
    "RandPoissonGaussianNoised",
    "RandFlipWithDirectiond",
    "RandRotate90WithDirectiond",
    "SWCToMask",
    "SWCToMaskd",
    "ToZYX",
    "ToZYXd",
    "apply_component_map",
    "attenuation_field",
    "boundary_background",
    "canonicalize_direction",
    "degrade_to_weak",
    "check_swc_inside",
    "direction_map_from_label",
    "direction_map_from_swc",
    "flip_components",
    "flip_direction_map",
    "gamma_contrast",
    "intensity_window",
    "volume_percentiles",
    "mask_distance_transform",
    "poisson_gaussian_noise",
    "radius_from_distance",
    "rasterize_swc",
    "rotate90_components",
    "rotate90_direction_map",
    "scale_intensity",
    "signal_background_levels",
    "subsample_strides",
]
