# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Inference output writer: every output of a stack named after its stem, written all-or-nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from neurolink_monai.data.preview import save_mip_png
from neurolink_monai.io import metatensor_spacing, write_swc, write_tiff_stack

from ..errors import NeuroLinkUserError
from ..utils import describe_source
from .flags import as_bool
from .naming import output_paths
from .paths import check_output_dir

__all__ = ["OutputWriteError", "SaveNeuroLinkOutputsd"]


class OutputWriteError(NeuroLinkUserError, RuntimeError):
    """Writing the outputs of one input failed; nothing of that input was left in the output folder."""


def _numpy(x: Any) -> np.ndarray:
    if isinstance(x, MetaTensor):
        x = x.as_tensor()
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _spacing(img: Any) -> tuple[float, float, float]:
    """The spacing written into the outputs: the input's (:func:`~neurolink_monai.io.metatensor_spacing`, which
    refuses a degenerate affine naming the file), else ``(1, 1, 1)``."""
    return metatensor_spacing(img) or (1.0, 1.0, 1.0)


class SaveNeuroLinkOutputsd(MapTransform):
    """Write the inference outputs of one stack into ``output_dir``, named after the input's stem.

    Files (``<stem>`` = input name without ``.tif``/``.tiff``/``.nii``/``.nii.gz``):

    - ``<stem>_prob.tif``: neurite probability, float32 in [0, 1], ``(z, y, x)``;
    - ``<stem>_seg.tif``: binary mask, uint8, neurite = ``seg_value`` (255 by default, Fiji's binary convention);
    - ``<stem>.swc``: the traced reconstruction, voxel units, 0-based (x -> W, y -> H, z -> D), when ``save_swc``;
    - ``<stem>_mip.png``: maximum-intensity projection along z of the (scaled) input with the mask in magenta;
    - ``<stem>_trace.png``: the same projection with the traced trees drawn on it, in the SWC's order: the first
      (the main neuron) blue, the second orange, the third green (:data:`~neurolink_monai.data.TREE_COLOURS`),
      when ``save_swc`` and ``save_mip``;
    - ``<stem>_dir.tif``: direction map, float32 ``(3, z, y, x)`` ImageJ hyperstack, components (z, y, x), unit
      vectors (0 where undefined), when ``save_direction``;
    - ``<stem>_dist.tif``: distance map, float32, in x-voxels, when ``save_distance``.

    TIFFs carry the input's voxel spacing. All files of a stack are first written into a hidden staging folder
    inside ``output_dir`` and moved into place (``os.replace``) only when every one of them succeeded, so a failure
    leaves no partial output of that stack; the error names the input file.

    Args:
        keys: image key(s) giving the name (``filename_or_obj``), the spacing and the MIP background.
        output_dir: destination folder (created if needed).
        prob_key, seg_key, swc_key, direction_key, distance_key: data keys of the outputs.
        save_swc, save_direction, save_distance, save_mip: which optional outputs to write (bools, or the strings
            "true"/"false" of the command line).
        seg_value: mask value of neurite voxels in ``_seg.tif`` (1 or 255).
        compression: tifffile codec for the TIFFs (e.g. ``"zlib"``) or None.
        allow_missing_keys: skip absent image keys.
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        output_dir: str | os.PathLike = "eval",
        prob_key: str = "prob",
        seg_key: str = "pred",
        swc_key: str = "swc",
        direction_key: str = "pred_direction",
        distance_key: str = "pred_distance",
        save_swc: bool = True,
        save_direction: bool = False,
        save_distance: bool = False,
        save_mip: bool = True,
        seg_value: int = 255,
        compression: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if seg_value not in (1, 255):
            raise ValueError(f"seg_value must be 1 or 255, got {seg_value!r}.")
        self.output_dir = check_output_dir(output_dir)
        self.keys_out = {
            "prob": prob_key,
            "seg": seg_key,
            "swc": swc_key if as_bool(save_swc, "save_swc") else None,
            "direction": direction_key if as_bool(save_direction, "save_direction") else None,
            "distance": distance_key if as_bool(save_distance, "save_distance") else None,
        }
        self.save_mip = as_bool(save_mip, "save_mip")
        self.seg_value = int(seg_value)
        self.compression = compression

    def _write_case(self, img: Any, d: Mapping[Hashable, Any], staging: Path) -> dict[str, Path]:
        src = describe_source(img, "")
        if not src:
            raise ValueError("the image has no 'filename_or_obj' metadata; cannot name the outputs.")
        names = output_paths(staging, src)
        spacing = _spacing(img)
        written: dict[str, Path] = {}
        seg = None
        for name in ("prob", "seg", "direction", "distance"):
            key = self.keys_out[name]
            if key is None:
                continue
            if key not in d:
                raise KeyError(f"{src}: the output {name!r} (data key {key!r}) is missing.")
            if d[key] is None:
                raise ValueError(
                    f"{src}: saving the {name} map was asked for but the network has no {name} head "
                    "(NeuroLinkNet(multitask=False)); drop --save_direction / --save_distance."
                )
            arr = _numpy(d[key])
            if name == "seg":
                seg = arr[0] > 0
                arr = (seg * self.seg_value).astype(np.uint8)
            elif name in ("prob", "distance"):
                arr = arr[0].astype(np.float32)
            else:
                arr = arr.astype(np.float32)
            written[name] = write_tiff_stack(names[name], arr, spacing=spacing, compression=self.compression)
        swc_key = self.keys_out["swc"]
        if swc_key is not None:
            if swc_key not in d:
                raise KeyError(f"{src}: the traced SWC (data key {swc_key!r}) is missing.")
            header = [
                f"NeuroLink-MONAI reconstruction of {Path(src).name}",
                "coordinates: voxel units, 0-based voxel centres, x -> W, y -> H, z -> D; radius in x voxels",
                f"voxel spacing (z, y, x) = {tuple(round(s, 6) for s in spacing)}",
            ]
            swc = _numpy(d[swc_key])
            written["swc"] = write_swc(names["swc"], swc, header=header)
        if self.save_mip:
            picture = _numpy(img)
            written["mip"] = save_mip_png(names["mip"], picture, seg)
            if swc_key is not None:
                written["trace"] = save_mip_png(names["trace"], picture, swc=swc)
        return written

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            self.output_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".neurolink-partial-", dir=self.output_dir))
            try:
                try:
                    written = self._write_case(img, d, staging)
                except Exception as e:
                    raise OutputWriteError(f"{describe_source(img)}: writing the outputs failed: {e}") from e
                for path in written.values():
                    os.replace(path, self.output_dir / path.name)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return d
