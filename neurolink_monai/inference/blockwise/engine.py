# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Inference of one output block from the global window grid, and the split into probability, mask and maps."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...networks.outputs import interpret_outputs
from ...transforms.intensity import scale_intensity
from ...utils import as_positive_int
from ..sliding import NoiseFloor, background_output, finish_blend
from .grid import SlidingWindowGrid

__all__ = ["predict_block", "postprocess_block", "read_padded_region"]


def read_padded_region(
    volume: Any,
    grid: SlidingWindowGrid,
    start: Sequence[int],
    stop: Sequence[int],
    window: Sequence[float],
) -> torch.Tensor:
    """The preprocessed input ``[start, stop)`` in padded coordinates as float32 ``(D', H', W')``.

    Reads the part inside the volume, scales it with :func:`~neurolink_monai.transforms.scale_intensity` and pads the
    rest like MONAI pads the whole (preprocessed) volume when it is smaller than the window. Along a padded axis the
    region spans the whole padded axis, so ``reflect``/``replicate``/``circular`` padding is reproduced too.
    """
    pad = grid.pad_before
    lo = [s - p for s, p in zip(start, pad)]
    hi = [s - p for s, p in zip(stop, pad)]
    lo_c = [max(v, 0) for v in lo]
    hi_c = [min(v, n) for v, n in zip(hi, grid.image_shape)]
    raw = volume[tuple(slice(a, b) for a, b in zip(lo_c, hi_c))]
    region = torch.from_numpy(np.require(raw, requirements=["C", "W"]))
    region = scale_intensity(region, window, name=getattr(volume, "path", None))
    amounts = []
    for a in (2, 1, 0):  # F.pad lists the last axis first
        amounts += [lo_c[a] - lo[a], hi[a] - hi_c[a]]
    if any(amounts):
        region = F.pad(region[None, None], amounts, mode=grid.padding_mode, value=grid.cval)[0, 0]
    return region


@torch.inference_mode()
def predict_block(
    volume: Any,
    grid: SlidingWindowGrid,
    start: Sequence[int],
    stop: Sequence[int],
    predictor: Callable[[torch.Tensor], torch.Tensor],
    window: Sequence[float],
    sw_batch_size: int = 1,
    device: torch.device | str = "cpu",
    importance: torch.Tensor | None = None,
    channels: Sequence[int] | None = None,
    floor: NoiseFloor | None = None,
    seg_channels: int = 1,
    stats: dict | None = None,
) -> torch.Tensor:
    """Blended network output of the block ``[start, stop)`` (volume coordinates): float32 ``(C, d, h, w)`` on CPU.

    Evaluates every window of ``grid`` that overlaps the block (in MONAI's window order; with ``floor``, those that
    are not background), weights each output by the importance map, accumulates the part inside the block and
    divides by the summed weights: the block of what ``SlidingWindowInferer(grid.roi_size, sw_batch_size,
    grid.overlap, grid.mode, ...)`` returns for the whole preprocessed volume (with ``floor``, what the bundle's
    ``NeuroLinkInferer`` returns).

    Args:
        volume: ``(D, H, W)`` array-like (numpy, Zarr, :class:`VolumeSource`) holding raw intensities.
        grid: the global window grid of the volume.
        start: block start ``(z, y, x)``.
        stop: block stop ``(z, y, x)``.
        predictor: maps ``(B, 1, *roi_size)`` to ``(B, C, *roi_size)`` (the network in eval mode).
        window: ``(low, high)`` intensity window (see :func:`~neurolink_monai.transforms.intensity_window`).
        sw_batch_size: windows per forward pass.
        device: where the predictor runs; blending happens on the CPU.
        importance: ``grid.importance_map()`` when already computed.
        channels: output channels to blend and return (default all); channels are blended independently, so
            leaving out heads that are not stored saves memory and time without changing the others.
        floor: the noise floor of the whole scaled volume (:func:`~neurolink_monai.inference.background_floor`):
            windows whose input it calls background are not evaluated, as in the bundle's
            :class:`~neurolink_monai.inference.NeuroLinkInferer`, and voxels that only such windows cover get
            :func:`~neurolink_monai.inference.background_output`. None evaluates every window. Needs ``channels``.
        seg_channels: segmentation channels of the network (for the background output).
        stats: a dict that receives ``"windows"`` (windows evaluated) and ``"skipped"`` (background windows).
    """
    as_positive_int(sw_batch_size, "sw_batch_size")
    if floor is not None and channels is None:
        raise ValueError("predict_block needs the output channels to skip background windows (channels=None).")
    starts = grid.block_window_starts(start, stop)
    roi = grid.roi_size
    pstart = [s + p for s, p in zip(start, grid.pad_before)]
    pstop = [s + p for s, p in zip(stop, grid.pad_before)]
    r0 = [int(s.min()) for s in starts]
    r1 = [int(s.max()) + r for s, r in zip(starts, roi)]
    region = read_padded_region(volume, grid, r0, r1, window)
    imp = grid.importance_map("cpu") if importance is None else importance.to("cpu", torch.float32)
    block_shape = [b - a for a, b in zip(start, stop)]
    count = torch.zeros(block_shape, dtype=torch.float32)

    def window_input(win: tuple[int, ...]) -> torch.Tensor:
        return region[tuple(slice(w - o, w - o + r) for w, o, r in zip(win, r0, roi))]

    overlapping = list(grid.iter_windows(starts))
    windows = [w for w in overlapping if floor is None or not floor.is_background(window_input(w))]
    if stats is not None:
        stats.update(windows=len(windows), skipped=len(overlapping) - len(windows))
    acc = None if channels is None else torch.zeros([len(channels), *block_shape], dtype=torch.float32)
    for i in range(0, len(windows), sw_batch_size):
        batch = windows[i : i + sw_batch_size]
        x = torch.stack([window_input(win) for win in batch]).unsqueeze(1)
        out = predictor(x.to(device))
        if not isinstance(out, torch.Tensor) or out.dim() != 5 or tuple(out.shape[2:]) != tuple(roi):
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"the network must map (B, 1, *roi) to one (B, C, *roi) tensor, got {got}.")
        if channels is not None:
            out = out[:, list(channels)]
        out = out.to("cpu", torch.float32)
        if acc is None:
            acc = torch.zeros([out.shape[1], *block_shape], dtype=torch.float32)
        for b, win in enumerate(batch):
            src, dst = [], []
            for w, r, a, z in zip(win, roi, pstart, pstop):
                lo, hi = max(w, a), min(w + r, z)
                src.append(slice(lo - w, hi - w))
                dst.append(slice(lo - a, hi - a))
            weight = imp[tuple(src)]
            acc[(slice(None), *dst)] += out[(b, slice(None), *src)] * weight
            count[tuple(dst)] += weight
    assert acc is not None  # every block overlaps a window; channels are given when windows may be skipped
    if floor is None:
        return acc.div_(count)
    return finish_blend(acc, count, background_output(max(channels) + 1, seg_channels)[list(channels)])


def postprocess_block(
    output: torch.Tensor,
    seg_channels: int = 1,
    threshold: float = 0.5,
    prob_dtype: str = "float16",
    maps_dtype: str = "float16",
    heads: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The stored arrays of a blended block, read as the bundle reads the network output
    (:func:`~neurolink_monai.networks.interpret_outputs`: sigmoid or softmax probability, ``prob >= threshold``,
    unit directions, the distance as it is).

    Args:
        output: blended logits ``(C, d, h, w)``: the whole NeuroLinkNet output (``heads`` None) or the channels of
            ``heads`` as :func:`~neurolink_monai.networks.head_channels` selects them.
        seg_channels: segmentation channels of the network, 1 (sigmoid) or 2 (softmax).
        threshold: probability threshold of the mask, in ``(0, 1]``.
        prob_dtype: ``"float16"`` or ``"uint8"`` (prob x 255, rounded).
        maps_dtype: dtype of the direction and distance maps.
        heads: the heads ``output`` holds (``"seg"`` among them), or None.

    Returns:
        ``{"prob": (d, h, w), "mask": (d, h, w) uint8 0/1}`` plus ``"direction"`` ``(3, d, h, w)`` and
        ``"distance"`` ``(d, h, w)`` in ``maps_dtype`` when ``output`` holds them.
    """
    parts = interpret_outputs(output, seg_channels, threshold, heads)
    out = {"mask": parts["mask"][0].to(torch.uint8).numpy()}
    prob = parts.pop("prob")[0]
    if prob_dtype == "uint8":
        out["prob"] = torch.round(prob.mul_(255.0)).to(torch.uint8).numpy()
    else:
        out["prob"] = prob.to(getattr(torch, prob_dtype)).numpy()
    del prob
    if parts["direction"] is not None:
        out["direction"] = parts["direction"].to(getattr(torch, maps_dtype)).numpy()
    if parts["distance"] is not None:
        out["distance"] = parts["distance"][0].to(getattr(torch, maps_dtype)).numpy()
    return out
