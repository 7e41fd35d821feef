# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Sliding-window inference on an in-memory stack, as the bundle's inference workflow runs it (no Qt, no napari).

:func:`segment_volume` is the ONE place where the napari plugin calls the model: the bundle's network (built from
``network_def`` of ``bundle/configs/inference.json`` by ``monai.bundle.ConfigParser``, weights from
``bundle/models/model.pt`` by default, through :func:`neurolink_monai.inference.blockwise.load_model_spec`), the
bundle's preprocessing chain (the config's ``image_preprocessing`` list, the bundle's when the config has none,
without its file loading), MONAI's ``SlidingWindowInferer`` with the config's settings, and the bundle's head
post-processing (:func:`neurolink_monai.networks.interpret_outputs`). Switching to another inferer means editing
:func:`_make_inferer` only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor

__all__ = ["InferenceCancelled", "SegmentationResult", "count_windows", "default_checkpoint", "segment_volume"]

ProgressCallback = Callable[[int, int], None]


class InferenceCancelled(RuntimeError):
    """The user cancelled a running inference (raised between two sliding windows)."""


@dataclass
class SegmentationResult:
    """The interpreted network heads of one ``(D, H, W)`` stack.

    Attributes:
        prob: ``(D, H, W)`` float32 neurite probability in [0, 1].
        mask: ``(D, H, W)`` uint8, 1 where ``prob >= threshold``.
        direction: ``(3, D, H, W)`` float32 unit tangents ``(z, y, x)`` (0 where undefined), or None.
        distance: ``(D, H, W)`` float32 distance map (radius along the centreline), or None.
        threshold: the threshold of ``mask``.
        checkpoint: the weights used (a path, or a description).
    """

    prob: np.ndarray
    mask: np.ndarray
    direction: np.ndarray | None
    distance: np.ndarray | None
    threshold: float
    checkpoint: str


def default_checkpoint() -> Path:
    """The shipped weights, ``bundle/models/model.pt`` of this source checkout."""
    from neurolink_monai.inference.blockwise import default_bundle_dir

    return default_bundle_dir() / "models" / "model.pt"


def _check_image(image: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(
            f"{name}: the model segments a single-channel 3D stack (D, H, W), got an array of shape {arr.shape}; "
            "open a 3D stack (one channel, no time axis)."
        )
    if min(arr.shape) < 2:
        raise ValueError(f"{name}: every axis of the stack needs at least 2 voxels, got shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name}: expected a real-valued image, got dtype {arr.dtype}.")
    return arr


def count_windows(shape: Sequence[int], roi_size: Sequence[int], overlap: float, sw_batch_size: int = 1) -> int:
    """Network calls MONAI's ``SlidingWindowInferer`` makes on a ``(D, H, W)`` volume (for a progress bar)."""
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    image_size = tuple(max(int(s), int(r)) for s, r in zip(shape, roi_size))
    roi = tuple(min(int(r), s) for r, s in zip(roi_size, image_size))
    scan = _get_scan_interval(image_size, roi, len(image_size), (float(overlap),) * len(image_size))
    return math.ceil(len(dense_patch_slices(image_size, roi, scan)) / max(1, int(sw_batch_size)))


def _make_inferer(settings: dict, device: torch.device):
    """The bundle's ``SlidingWindowInferer`` from its config settings (the one line to change for another inferer)."""
    from monai.inferers import SlidingWindowInferer

    keys = ("roi_size", "overlap", "sw_batch_size", "mode", "sigma_scale", "padding_mode", "cval")
    kwargs = {k: settings[k] for k in keys if k in settings}
    return SlidingWindowInferer(**kwargs, sw_device=device, device=torch.device("cpu"), progress=False)


def _preprocess(image: np.ndarray, lower: float, upper: float, config: str | os.PathLike | None = None) -> torch.Tensor:
    """The bundle's preprocessing chain without its file loading: ``(D, H, W)`` -> ``(1, 1, D, H, W)`` float32.

    The chain is the ``image_preprocessing`` list of ``config`` (of the bundle's ``inference.json`` when ``config``
    is None or has none), with the intensity percentiles ``(lower, upper)``."""
    from monai.bundle import ConfigParser
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    from neurolink_monai.bundle_utils import image_preprocessing_from_config
    from neurolink_monai.inference.blockwise import default_bundle_dir
    from neurolink_monai.transforms import ToZYXd

    has_chain = config is not None and "image_preprocessing" in ConfigParser.load_config_file(str(config))
    source = config if has_chain else default_bundle_dir() / "configs" / "inference.json"
    steps = image_preprocessing_from_config(source, intensity_percentiles=[lower, upper])
    chain = [t for t in steps if not isinstance(t, (LoadImaged, EnsureChannelFirstd, ToZYXd))]
    data = Compose(chain)({"image": torch.as_tensor(image.astype(np.float32, copy=False))[None]})
    return torch.as_tensor(data["image"]).float()[None]


class _CountingNetwork(torch.nn.Module):
    """Calls ``net`` and reports each call; raises :class:`InferenceCancelled` when ``cancelled()`` turns true."""

    def __init__(self, net: torch.nn.Module, total: int, progress: ProgressCallback | None, cancelled) -> None:
        super().__init__()
        self.net, self.total, self.done = net, total, 0
        self.progress, self.cancelled = progress, cancelled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cancelled is not None and self.cancelled():
            raise InferenceCancelled(f"inference cancelled after {self.done} of {self.total} windows.")
        out = self.net(x)
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)
        return out


def segment_volume(
    image: np.ndarray,
    checkpoint: str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    roi_size: Sequence[int] | None = None,
    overlap: float | None = None,
    threshold: float | None = None,
    device: str | torch.device | None = None,
    progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] | None = None,
    name: str = "image",
) -> SegmentationResult:
    """Segment one ``(D, H, W)`` stack with the bundle's model and sliding-window settings.

    Args:
        image: ``(D, H, W)`` (or ``(1, D, H, W)``) intensities, any real dtype; it is not modified.
        checkpoint: a state dict for the config's ``network_def`` or a TorchScript file; default
            :func:`default_checkpoint`.
        config: the bundle inference config; default ``bundle/configs/inference.json``.
        roi_size, overlap, threshold: override the config's values.
        device: default CUDA when available, else CPU.
        progress: called as ``progress(done, total)`` after each network call (from the calling thread).
        cancelled: polled before each network call; when it returns True, :class:`InferenceCancelled` is raised.
        name: names the image in error messages.

    Raises:
        FileNotFoundError: the checkpoint or config does not exist.
        ValueError / TypeError: the image is not a single-channel 3D stack, or the checkpoint does not fit.
        InferenceCancelled: ``cancelled()`` returned True.
    """
    from neurolink_monai.inference.blockwise import bundle_inference_settings, load_model_spec
    from neurolink_monai.networks import check_threshold, interpret_outputs

    arr = _check_image(image, name)
    ckpt = Path(checkpoint).expanduser() if checkpoint not in (None, "") else default_checkpoint()
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt} (pick a .pt state dict or a TorchScript file).")
    settings = bundle_inference_settings(config)
    for key, value in (("roi_size", roi_size), ("overlap", overlap), ("threshold", threshold)):
        if value is not None:
            settings[key] = list(value) if key == "roi_size" else float(value)
    thr = check_threshold(settings.get("threshold", 0.5))
    dev = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    spec = load_model_spec(ckpt, config)
    net = spec.load(dev)
    x = _preprocess(arr, settings.get("lower", 0.5), settings.get("upper", 99.95), config)
    roi = settings.get("roi_size", [64, 128, 128])
    total = count_windows(arr.shape, roi, float(settings.get("overlap", 0.25)), int(settings.get("sw_batch_size", 1)))
    counting = _CountingNetwork(net, total, progress, cancelled)
    with torch.no_grad():
        pred = _make_inferer(settings, dev)(x, counting)
    plain = pred.as_tensor() if isinstance(pred, MetaTensor) else pred
    heads = interpret_outputs(plain[0].float(), spec.seg_channels, thr)
    direction, distance = heads["direction"], heads["distance"]
    return SegmentationResult(
        prob=heads["prob"][0].numpy().astype(np.float32),
        mask=heads["mask"][0].numpy().astype(np.uint8),
        direction=None if direction is None else direction.numpy().astype(np.float32),
        distance=None if distance is None else distance[0].numpy().astype(np.float32),
        threshold=thr,
        checkpoint=str(ckpt),
    )
