# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Whole-stack sliding-window inference: windows fitted to the stack, background windows skipped.

One implementation for the bundle (:class:`NeuroLinkInferer`, the ``inferer`` of ``inference.json`` and
``evaluate.json``) and the blockwise path (:func:`fit_roi_size` and :func:`context_margins` in
``neurolink_monai.inference.blockwise``, which skips the same background windows when told to, with the noise floor
of the whole volume measured slab by slab: :func:`streamed_background_floor`).

Window size. A window is never larger than the stack: along an axis shorter than ``roi_size`` the window shrinks to
the largest multiple of the network's divisor (``NeuroLinkNet.divisor``, ``2 ** (levels - 1)``) that fits, or to
the whole axis when the axis is shorter than the divisor (the network zero-pads to its divisor internally). Only a
stack no longer than the divisor along every axis (say 3x5x7) is padded, by repeating its border voxels up to twice
the divisor, because the network's coarsest level would otherwise hold a single voxel. A stack
is therefore never zero-padded up to a window it does not fill, which the network never saw in training and which
made small stacks come out mostly "neurite".

Context margin. Along an axis shorter than ``roi_size`` the stack is first padded on both sides by up to
``context_margin`` voxels (never beyond ``roi_size``) of its background level (the median of each channel), and
the output is cropped back: the network then sees the stack's border as it would see the same stack inside a larger,
empty volume, so a short stack and that stack embedded in background give the same mask, provided the network's
normalisation does not depend on the window's content (batch norm; not instance norm). Axes at least as long as the
window are not padded, so large stacks cost nothing more. The margin is trimmed so that the padded axis fills whole
windows (:func:`margin_pads`): with a window of 80 slices a 60-slice stack is padded to one 72-slice window instead of
76 slices in two. Off by default (:data:`DEFAULT_CONTEXT_MARGIN` 0; the bundle sets 8): with the instance-norm
weights shipped before 0.5.0 it scored lower on the real stacks (``benchmarks/results/real_data_margin.json``).

Background rule (:class:`NoiseFloor`). Let ``m`` and ``sigma`` be the median and robust spread (1.4826 MAD) of
the 3x3x3 mean of the whole (scaled) stack. A window is skipped, and the network not run on it, when the 3x3x3 mean
of its input (i) nowhere exceeds ``m + z * sigma`` and (ii) nowhere exceeds the window's own median by more than
``z * sigma``; ``z`` defaults to :data:`DEFAULT_BACKGROUND_Z`. The 3x3x3 mean averages uncorrelated noise down by
up to ``sqrt(27)`` while a neurite at least three voxels thick (any neurite after the microscope's blur) keeps its
full brightness, so a neurite brighter than its surroundings by ``z * sigma`` of the smoothed stack (about
``0.6`` of the raw noise's standard deviation at ``z = 3`` when the noise is uncorrelated) always keeps its window,
also in a region darker than the stack's usual background (rule ii). What gets skipped: dark or flat regions (empty
borders, regions darker than the typical background); windows of ordinary noisy background usually stay. Skipped
windows take no part in the blending; voxels that only skipped windows cover get the background output: a
segmentation logit of ``-BACKGROUND_LOGIT`` (probability ~2e-9), zero direction and distance.

Heads. With ``heads`` (say ``("seg",)`` when neither the direction nor the distance map is saved or traced), only
those heads of a multi-task output are kept from each window: the others are neither blended nor held for the
whole stack (a 76x512x512 stack: 80 MB for the segmentation channel against 400 MB for all five).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.utils import convert_to_dst_type

from ..networks.outputs import check_heads, head_channels, num_output_channels
from ..transforms.intensity import scale_intensity, volume_percentiles
from ..utils import as_positive_int
from .blockwise.grid import SlidingWindowGrid

__all__ = [
    "BACKGROUND_LOGIT",
    "alone_and_embedded",
    "DEFAULT_BACKGROUND_Z",
    "DEFAULT_CONTEXT_MARGIN",
    "NeuroLinkInferer",
    "NoiseFloor",
    "background_floor",
    "background_output",
    "context_margins",
    "finish_blend",
    "fit_roi_size",
    "is_background_window",
    "margin_pads",
    "network_divisor",
    "pad_with_background",
    "streamed_background_floor",
]

DEFAULT_BACKGROUND_Z = 3.0
DEFAULT_CONTEXT_MARGIN = 0
BACKGROUND_LOGIT = 20.0
_FLOOR_SAMPLES = 2**22


def fit_roi_size(image_shape: Sequence[int], roi_size: Sequence[int], divisor: int = 1) -> tuple[int, ...]:
    """The window size used on a stack of ``image_shape``: ``roi_size`` shrunk per axis to fit the stack.

    Along an axis at least as long as the window, the window is kept. Along a shorter axis it becomes the largest
    multiple of ``divisor`` not longer than the axis, or the axis length itself when the axis is shorter than
    ``divisor``. Entries of ``roi_size`` <= 0 take the axis length.
    """
    if len(image_shape) != len(roi_size):
        raise ValueError(f"roi_size {list(roi_size)} and image shape {list(image_shape)} differ in length.")
    as_positive_int(divisor, "divisor")
    out = []
    for n, r in zip(image_shape, roi_size):
        n, r = int(n), int(r)
        if n < 1:
            raise ValueError(f"image shape must be positive, got {list(image_shape)}.")
        if r <= 0:
            out.append(n)
        elif r <= n:
            out.append(r)
        else:
            out.append(n // divisor * divisor if n >= divisor else n)
    return tuple(out)


def context_margins(image_shape: Sequence[int], roi_size: Sequence[int], margin: int) -> tuple[int, ...]:
    """Voxels of background added on each side of each axis before inference (see the module docstring).

    ``min(margin, (roi - n) // 2)`` along an axis of length ``n`` shorter than its window ``roi``, else 0.
    """
    if len(image_shape) != len(roi_size):
        raise ValueError(f"roi_size {list(roi_size)} and image shape {list(image_shape)} differ in length.")
    as_positive_int(margin, "context_margin", allow_zero=True)
    return tuple(
        min(margin, (int(r) - int(n)) // 2) if 0 < int(n) < int(r) else 0 for n, r in zip(image_shape, roi_size)
    )


def margin_pads(
    image_shape: Sequence[int], roi_size: Sequence[int], margin: int, divisor: int = 1
) -> tuple[tuple[int, int], ...]:
    """``(before, after)`` voxels of background added to each axis shorter than its window: up to ``margin`` on each
    side, as many as make the padded axis one whole window (a multiple of ``divisor``, at most ``roi_size``), split
    as MONAI splits padding (the smaller half first); none where no such window holds the axis.

    With ``margin`` 8 and divisor 8: a 60-slice axis and a window of 80 are padded 6 + 6 to one 72-slice window (not
    8 + 8 to 76 slices that two 72-slice windows would cover); 75 slices 2 + 3 to 80; 61 slices and a window of 64,
    1 + 2 to 64. The blockwise grid places its windows by the same rule.
    """
    context_margins(image_shape, roi_size, margin)  # checks the arguments
    as_positive_int(divisor, "divisor")
    pads = []
    for n, r in zip((int(v) for v in image_shape), (int(v) for v in roi_size)):
        window = min(n + 2 * margin, r) // divisor * divisor if 0 < n < r else 0
        total = window - n if window >= n else 0
        pads.append((total // 2, total - total // 2))
    return tuple(pads)


def pad_with_background(image: torch.Tensor, margins: Sequence[int | tuple[int, int]]) -> torch.Tensor:
    """``image`` ``(B, C, D, H, W)`` padded by ``margins[a]`` voxels on both sides of spatial axis ``a`` (or by
    ``(before, after)``), with each channel's median (its background level in a microscopy stack;
    :func:`volume_percentiles`, as the blockwise path measures it)."""
    sides = [(m, m) if isinstance(m, int) else tuple(m) for m in margins]
    pads = [m for side in reversed(sides) for m in side]
    channels = [
        F.pad(image[:, c : c + 1].float(), pads, value=volume_percentiles(image[:, c], (50.0,))[0])
        for c in range(image.shape[1])
    ]
    return torch.cat(channels, 1)


def alone_and_embedded(
    inferer: Callable[[torch.Tensor, Any], torch.Tensor], network: Any, image: torch.Tensor, border: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """The output for ``image`` ``(B, C, D, H, W)`` on its own and for the same image embedded in a larger volume of
    its background level (:func:`pad_with_background` by ``border`` voxels on every side), cropped back to the image:
    the check of issue 15 that the answer for a stack does not depend on what surrounds it. Runs without gradients.

    Returns:
        ``(alone, embedded)``, both ``(B, C_out, D, H, W)``.
    """
    as_positive_int(border, "border")
    big = pad_with_background(image, (border,) * 3)
    inside = (slice(None), slice(None), *(slice(border, border + n) for n in image.shape[2:]))
    with torch.no_grad():
        return inferer(image, network), inferer(big, network)[inside]


def network_divisor(network: Any) -> int:
    """``network.divisor`` (NeuroLinkNet's spatial multiple), looking through ``.module`` wrappers; else 1."""
    for obj in (network, getattr(network, "module", None)):
        value = getattr(obj, "divisor", None)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    return 1


def _local_mean(volume: torch.Tensor) -> torch.Tensor:
    """3x3x3 mean of a ``(D, H, W)`` volume, float32, averaging only the voxels inside the volume."""
    v = volume.to(torch.float32)[None, None]
    if min(v.shape[2:]) >= 3:
        return F.avg_pool3d(v, 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    # avg_pool3d refuses an axis shorter than its kernel: the zero-padded mean over the mean of the in-volume mask
    total = F.avg_pool3d(F.pad(v, [1] * 6), 3, stride=1)
    count = F.avg_pool3d(F.pad(torch.ones_like(v), [1] * 6), 3, stride=1)
    return (total / count)[0, 0]


def _mean_at_brightest(window: torch.Tensor) -> float:
    """:func:`_local_mean` of ``window`` ``(D, H, W)`` at its brightest voxel, computed on the 5x5x5 block around it
    (clipped to the window): the voxel's whole 3x3x3 neighbourhood lies in the block, so the value is the same to
    the bit, for a fraction of the cost."""
    z, y, x = (int(i) for i in torch.unravel_index(window.argmax(), window.shape))
    lo = (max(z - 2, 0), max(y - 2, 0), max(x - 2, 0))
    block = window[lo[0] : z + 3, lo[1] : y + 3, lo[2] : x + 3]
    return float(_local_mean(block)[z - lo[0], y - lo[1], x - lo[2]])


@dataclass(frozen=True)
class NoiseFloor:
    """Background statistics of a stack's 3x3x3 mean: ``median`` and robust ``sigma`` (1.4826 MAD), and ``z``."""

    median: float
    sigma: float
    z: float = DEFAULT_BACKGROUND_Z

    @property
    def level(self) -> float:
        """``median + z * sigma``: the brightest 3x3x3 mean a background window may have."""
        return self.median + self.z * self.sigma

    def is_background(self, window: torch.Tensor) -> bool:
        """Whether ``window`` ``(D, H, W)`` is background: its 3x3x3 mean (own voxels only) nowhere exceeds
        :attr:`level`, and nowhere exceeds its own median by more than ``z * sigma`` (so a faint neurite in a
        region darker than the stack's typical background still keeps its window)."""
        if _mean_at_brightest(window) > self.level:  # a neurite's window, usually: decided without the whole map
            return False
        local = _local_mean(window)
        peak = float(local.max())
        if peak > self.level:
            return False
        return peak <= float(local.flatten().median()) + self.z * self.sigma


def background_floor(volume: torch.Tensor, z: float = DEFAULT_BACKGROUND_Z) -> NoiseFloor:
    """The :class:`NoiseFloor` of ``volume`` ``(D, H, W)``: statistics of its 3x3x3 mean, taken on an even subsample
    of at most 2^22 voxels."""
    if volume.dim() != 3:
        raise ValueError(f"volume must be (D, H, W), got shape {list(volume.shape)}.")
    _check_z(z)
    flat = _local_mean(volume).flatten()
    return _floor_of_sample(flat[:: _floor_step(flat.numel())], z)


def streamed_background_floor(
    volume: Any, window: Sequence[float], z: float = DEFAULT_BACKGROUND_Z, slab: int | None = None
) -> NoiseFloor:
    """:func:`background_floor` of ``volume`` ``(D, H, W)`` (raw intensities: numpy, Zarr, a blockwise
    ``VolumeSource``) scaled by the intensity ``window`` (:func:`~neurolink_monai.transforms.scale_intensity`),
    read ``slab`` planes at a time (default: 2^24 voxels' worth; with one plane on each side for the 3x3x3 mean):
    the same statistics as :func:`background_floor` of the whole scaled volume, to the bit, from the same voxels,
    without holding the volume."""
    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3:
        raise ValueError(f"volume must be (D, H, W), got shape {list(shape)}.")
    _check_z(z)
    depth, plane = shape[0], shape[1] * shape[2]
    slab = max(1, 2**24 // max(plane, 1)) if slab is None else as_positive_int(slab, "slab")
    step = _floor_step(math.prod(shape))
    parts = []
    for z0 in range(0, depth, slab):
        z1 = min(z0 + slab, depth)
        # one plane on each side, and at least three planes in all (avg_pool3d's least input)
        lo = max(min(z0 - 1, depth - 3), 0)
        hi = min(max(z1 + 1, lo + 3), depth)
        raw = torch.from_numpy(np.require(volume[lo:hi, :, :], requirements=["C", "W"]))
        local = _local_mean(scale_intensity(raw, window))[z0 - lo : z1 - lo].flatten()
        first = -(-z0 * plane // step) * step - z0 * plane  # the slab's first flat index that the step samples
        parts.append(local[first::step])
    return _floor_of_sample(torch.cat(parts), z)


def _check_z(z: float) -> None:
    if not math.isfinite(z) or z < 0:
        raise ValueError(f"background_z must be a finite number >= 0, got {z!r}.")


def _floor_step(numel: int) -> int:
    """Stride of the flattened 3x3x3 mean that leaves at most ``_FLOOR_SAMPLES`` values."""
    return max(1, -(-numel // _FLOOR_SAMPLES))


def _floor_of_sample(sample: torch.Tensor, z: float) -> NoiseFloor:
    median = sample.median()
    sigma = 1.4826 * (sample - median).abs().median()
    return NoiseFloor(float(median), float(sigma), float(z))


def is_background_window(window: torch.Tensor, floor: NoiseFloor) -> bool:
    """:meth:`NoiseFloor.is_background` (the one background rule of the bundle and the blockwise path)."""
    return floor.is_background(window)


def background_output(num_channels: int, seg_channels: int = 1) -> torch.Tensor:
    """The output ``(num_channels,)`` given to voxels only skipped windows cover.

    A sigmoid segmentation channel gets ``-BACKGROUND_LOGIT``; a two-channel softmax ``(+L, -L)``; the direction
    and distance heads 0.
    """
    out = torch.zeros(num_channels, dtype=torch.float32)
    if seg_channels == 2:
        out[0], out[1] = BACKGROUND_LOGIT, -BACKGROUND_LOGIT
    else:
        out[:seg_channels] = -BACKGROUND_LOGIT
    return out


def finish_blend(acc: torch.Tensor, count: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """The blended output: the weighted sum ``acc`` ``(C, D, H, W)`` divided in place by the summed weights
    ``count`` ``(D, H, W)``; voxels that no evaluated window covered (``count`` 0, only skipped background windows)
    get ``fill`` ``(C,)`` (:func:`background_output` of the kept channels)."""
    covered = count > 0
    acc.div_(count.clamp_min(torch.finfo(torch.float32).tiny))
    if bool(covered.all()):
        return acc
    return torch.where(covered, acc, fill.to(acc.device, acc.dtype).reshape(-1, 1, 1, 1))


class NeuroLinkInferer(Inferer):
    """Sliding-window inference over whole stacks with windows fitted to the stack and background windows skipped.

    Window placement and blending follow ``monai.inferers.SlidingWindowInferer`` (same window grid, same importance
    map), so without skipping and on a stack at least as large as ``roi_size`` the output equals MONAI's to float
    rounding. See the module docstring for the window-size and background rules.

    Args:
        roi_size: largest window ``(D, H, W)``.
        sw_batch_size: windows per network call.
        overlap: overlap fraction of neighbouring windows.
        mode: blending, ``"gaussian"`` or ``"constant"``.
        sigma_scale: Gaussian blending width relative to the window.
        sw_device: where the network runs (default: the input's device).
        device: where the output is assembled (default: the input's device).
        progress: print one line per 10% of the windows.
        divisor: spatial multiple of the network; default ``network.divisor`` or 1.
        skip_background: skip windows below the noise floor.
        background_z: ``z`` of the noise floor.
        seg_channels: segmentation channels at the front of the output (for the background output).
        context_margin: background voxels added on each side of an axis shorter than ``roi_size`` (0: none).
        heads: heads of a multi-task output to keep (:data:`~neurolink_monai.networks.HEADS` names, ``"seg"``
            among them), the others dropped from each window; None keeps every channel. A segmentation-only
            output is kept whole.

    Inputs ``(B, C, D, H, W)``; output ``(B, C_out, D, H, W)`` float32 (a MetaTensor when the input is one).
    After a call, ``last_windows`` and ``last_skipped`` hold the window counts of the last stack.
    """

    def __init__(
        self,
        roi_size: Sequence[int],
        sw_batch_size: int = 1,
        overlap: float | Sequence[float] = 0.25,
        mode: str = "gaussian",
        sigma_scale: float | Sequence[float] = 0.125,
        sw_device: torch.device | str | None = None,
        device: torch.device | str | None = None,
        progress: bool = False,
        divisor: int | None = None,
        skip_background: bool = True,
        background_z: float = DEFAULT_BACKGROUND_Z,
        seg_channels: int = 1,
        context_margin: int = DEFAULT_CONTEXT_MARGIN,
        heads: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        roi = tuple(int(r) for r in roi_size)
        if len(roi) != 3:
            raise ValueError(f"roi_size must hold 3 sizes (D, H, W), got {list(roi_size)!r}.")
        as_positive_int(sw_batch_size, "sw_batch_size")
        if seg_channels not in (1, 2):
            raise ValueError(f"seg_channels must be 1 (sigmoid) or 2 (softmax), got {seg_channels!r}.")
        self.roi_size = roi
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap
        self.mode = mode
        self.sigma_scale = sigma_scale
        self.sw_device = sw_device
        self.device = device
        self.progress = progress
        self.divisor = divisor
        self.skip_background = bool(skip_background)
        self.background_z = float(background_z)
        self.seg_channels = seg_channels
        context_margins((1, 1, 1), roi, context_margin)  # validates it
        self.context_margin = context_margin
        self.heads = None if heads is None else check_heads(heads)
        self.last_windows = 0
        self.last_skipped = 0

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 5:
            got = list(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
            raise ValueError(f"NeuroLinkInferer expects a (B, C, D, H, W) tensor, got {got}.")
        outs = [self._one_stack(inputs[b : b + 1], network, *args, **kwargs) for b in range(inputs.shape[0])]
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        if isinstance(inputs, MetaTensor):
            out = convert_to_dst_type(out, inputs, device=out.device)[0]
        return out

    def _one_stack(self, image: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any):
        image = image.as_tensor() if isinstance(image, MetaTensor) else image
        shape = tuple(int(s) for s in image.shape[2:])
        floor = background_floor(image[0].amax(0), self.background_z) if self.skip_background else None
        divisor = self.divisor if self.divisor is not None else network_divisor(network)
        pads = margin_pads(shape, self.roi_size, self.context_margin, divisor)
        if not any(sum(p) for p in pads):
            return self._windows(image, floor, network, *args, **kwargs)
        out = self._windows(pad_with_background(image, pads), floor, network, *args, **kwargs)
        return out[(slice(None), slice(None), *(slice(p[0], p[0] + n) for p, n in zip(pads, shape)))]

    def _kept_channels(self, num_channels: int) -> list[int] | None:
        """Indices of the channels of ``self.heads`` in a network output of ``num_channels``; None: keep all."""
        if self.heads is None or num_channels == self.seg_channels:
            return None
        if num_channels != num_output_channels(self.seg_channels, multitask=True):
            raise ValueError(
                f"heads {list(self.heads)} need a multi-task output of {num_output_channels(self.seg_channels)} "
                f"channels (seg_channels={self.seg_channels}), but the network gives {num_channels}."
            )
        return head_channels(self.seg_channels, self.heads)

    def _windows(
        self,
        image: torch.Tensor,
        floor: NoiseFloor | None,
        network: Callable[..., torch.Tensor],
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Sliding-window output ``(1, C_out, D, H, W)`` of ``image`` ``(1, C, D, H, W)``; ``floor`` (of the stack
        before any margin) decides which windows are background."""
        divisor = self.divisor if self.divisor is not None else network_divisor(network)
        shape = tuple(int(s) for s in image.shape[2:])
        if divisor > 1 and all(n <= divisor for n in shape):
            # So small that the network's coarsest level would be one voxel (instance norm needs more): repeat the
            # border voxels up to twice the divisor, then crop the output back.
            pad = [max(2 * divisor - n, 0) for n in shape]
            padded = F.pad(image.float(), [0, pad[2], 0, pad[1], 0, pad[0]], mode="replicate")
            out = self._windows(padded, floor, network, *args, **kwargs)
            return out[(slice(None), slice(None), *(slice(0, n) for n in shape))]
        roi = fit_roi_size(shape, self.roi_size, divisor)
        grid = SlidingWindowGrid.create(shape, roi, self.overlap, self.mode, self.sigma_scale)
        out_device = torch.device(self.device) if self.device is not None else image.device
        sw_device = torch.device(self.sw_device) if self.sw_device is not None else image.device
        importance = grid.importance_map(out_device)
        windows = list(grid.iter_windows([grid.axis_starts(a) for a in range(3)]))

        def region(w: tuple[int, ...]) -> tuple[slice, ...]:
            return tuple(slice(s, s + r) for s, r in zip(w, roi))

        def background(w: tuple[int, ...]) -> bool:
            return floor is not None and floor.is_background(image[0][(slice(None), *region(w))].amax(0))

        keep = [w for w in windows if not background(w)]
        if not keep:  # an all-background stack: run the window with the brightest input, so the output is defined
            keep = [max(windows, key=lambda w: float(image[0][(slice(None), *region(w))].max()))]
        self.last_windows, self.last_skipped = len(windows), len(windows) - len(keep)

        acc: torch.Tensor | None = None
        count = torch.zeros(shape, dtype=torch.float32, device=out_device)
        step = max(1, len(keep) // 10)
        for i in range(0, len(keep), self.sw_batch_size):
            batch = keep[i : i + self.sw_batch_size]
            x = torch.cat([image[(slice(None), slice(None), *region(w))] for w in batch]).to(sw_device)
            with torch.inference_mode():
                y = network(x, *args, **kwargs)
            if not isinstance(y, torch.Tensor) or y.dim() != 5 or tuple(y.shape[2:]) != roi:
                got = list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                raise ValueError(f"the network must map (B, C, *roi) to one (B, C_out, *roi) tensor, got {got}.")
            full_channels = y.shape[1]
            channels = self._kept_channels(full_channels)
            if channels is not None:
                y = y[:, channels]
            y = y.to(out_device, torch.float32)
            if acc is None:
                acc = torch.zeros((y.shape[1], *shape), dtype=torch.float32, device=out_device)
                fill = background_output(full_channels, self.seg_channels)
                fill = fill if channels is None else fill[channels]
            for b, w in enumerate(batch):
                sl = region(w)
                acc[(slice(None), *sl)].add_(y[b] * importance)
                count[sl].add_(importance)
            if self.progress and (i // self.sw_batch_size) % step == 0:
                print(f"NeuroLinkInferer: window {i + len(batch)}/{len(keep)} ({self.last_skipped} background skipped)")
        assert acc is not None
        return finish_blend(acc, count, fill)[None]
