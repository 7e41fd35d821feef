# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""MONAI transforms for NeuroLink's training targets and microscopy preprocessing.

Typical training pipeline (targets computed after spatial augmentation, so they are right by construction)::

    LoadImaged("image", reader="TiffStackReader"), EnsureChannelFirstd("image"), LoadSWCd("swc"),
    SWCToMaskd("swc", ref_key="image", output_keys="label"), CheckVolumed(("image", "label")),
    MicroscopyNormalized("image"), RandSpatialCropd(("image", "label"), ...), RandFlipd(...),
    RandRotate90d(...), DirectionMapd("label", swc_key="swc"), DistanceMapd("label"), DeleteItemsd("swc")

``DirectionMapd`` with ``swc_key`` maps the SWC onto the augmented grid through the label's MetaTensor affine;
with ``swc_key=None`` it uses the label's own centreline.
"""

from __future__ import annotations

from .augment import RandFlipWithDirectiond, RandRotate90WithDirectiond
from .checks import CheckVolume, CheckVolumed, check_binary_label, check_contrast, contrast_step
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
from .intensity import MicroscopyNormalize, MicroscopyNormalized
from .swc_raster import check_swc_inside, rasterize_swc
from .swc_to_mask import LoadSWC, LoadSWCd, SWCToMask, SWCToMaskd

__all__ = [
    "CheckVolume",
    "CheckVolumed",
    "check_binary_label",
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
    "RandFlipWithDirectiond",
    "RandRotate90WithDirectiond",
    "SWCToMask",
    "SWCToMaskd",
    "apply_component_map",
    "boundary_background",
    "canonicalize_direction",
    "check_swc_inside",
    "direction_map_from_label",
    "direction_map_from_swc",
    "flip_components",
    "flip_direction_map",
    "mask_distance_transform",
    "radius_from_distance",
    "rasterize_swc",
    "rotate90_components",
    "rotate90_direction_map",
]
