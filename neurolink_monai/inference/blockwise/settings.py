# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Settings of a blockwise run: the user's options, checked, resolved against the bundle's defaults and the input.

:class:`BlockwiseOptions` holds what the caller asked for (``None``: the bundle's default, else the built-in one)
and checks what can be checked without reading anything; :class:`ClusterOptions` the Dask side.
:func:`resolve_settings` opens the input and the model and turns the options into :class:`BlockwiseSettings`:
the window grid, the block grid, the output arrays and the record identity that decides whether an existing output
may be resumed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil
import torch
from torch import nn

from ...networks.outputs import check_threshold
from ...transforms.intensity import DEFAULT_MAX_SAMPLES, DEFAULT_PERCENTILES, check_percentiles
from ...utils import as_float_in_range, as_positive_int
from ..sliding import DEFAULT_BACKGROUND_Z, DEFAULT_CONTEXT_MARGIN, fit_roi_size, margin_pads, network_divisor
from .grid import BlockGrid, SlidingWindowGrid, overlap_from_halo
from .model import ModelSpec, bundle_inference_settings, load_model_spec, model_spec_from_module
from .sources import VolumeSource, open_volume
from .store import OUTPUT_FORMAT_VERSION, OutputSpec

__all__ = [
    "BLOCKS_PER_AXIS_STEP",
    "DEFAULT_OVERLAP",
    "DEFAULT_ROI_SIZE",
    "DEFAULT_THRESHOLD",
    "BlockwiseOptions",
    "BlockwiseSettings",
    "ClusterOptions",
    "check_memory",
    "estimate_block_memory",
    "resolve_settings",
]

DEFAULT_ROI_SIZE = (64, 128, 128)
DEFAULT_OVERLAP = 0.25
DEFAULT_THRESHOLD = 0.5
BLOCKS_PER_AXIS_STEP = 4  # default block = 4 window steps per axis: each window is evaluated ~(5/4)^3 ~ 2x


@dataclass(frozen=True)
class ClusterOptions:
    """Where the blocks of a run are computed.

    Attributes:
        scheduler: ``None`` for a new ``LocalCluster(workers, threads_per_worker)``; a scheduler address
            ``"tcp://host:8786"`` or a ``distributed.Client`` for an existing cluster; ``"synchronous"`` to run in
            this process without Dask.
        workers: LocalCluster worker processes.
        threads_per_worker: blocks processed at once per LocalCluster worker, one block per thread.
        torch_threads: torch intra-op threads per worker process; default: cores / (workers x threads) for a
            LocalCluster, torch's default otherwise.
    """

    scheduler: Any = None
    workers: int = 1
    threads_per_worker: int = 1
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        as_positive_int(self.workers, "workers")
        as_positive_int(self.threads_per_worker, "threads_per_worker")
        if self.torch_threads is not None:
            as_positive_int(self.torch_threads, "torch_threads")
        if isinstance(self.scheduler, str) and self.scheduler not in ("synchronous",) and "://" not in self.scheduler:
            raise ValueError(
                f"scheduler must be 'synchronous' or an address like tcp://host:8786, got {self.scheduler!r}."
            )

    @property
    def synchronous(self) -> bool:
        return isinstance(self.scheduler, str) and self.scheduler == "synchronous"

    @property
    def local(self) -> bool:
        """Whether the blocks run on this machine (a new LocalCluster or in this process)."""
        return self.scheduler is None or self.synchronous


@dataclass(frozen=True)
class BlockwiseOptions:
    """The model, window, preprocessing and output options of a run as given; ``None`` means "the default".

    The fields are the keyword arguments of :func:`~neurolink_monai.inference.blockwise.run_blockwise` (see there);
    construction checks those that need nothing read (dtypes, zarr format, ``overlap`` xor ``halo``).
    """

    model: nn.Module | ModelSpec | str | os.PathLike | None = None
    config: str | os.PathLike | None = None
    bundle_dir: str | os.PathLike | None = None
    chunks: Sequence[int] | int | None = None
    roi_size: Sequence[int] | int | None = None
    overlap: Sequence[float] | float | None = None
    halo: Sequence[int] | int | None = None
    mode: str | None = None
    sigma_scale: Sequence[float] | float | None = None
    padding_mode: str | None = None
    cval: float | None = None
    context_margin: int | None = None
    skip_background: bool | None = None
    background_z: float | None = None
    sw_batch_size: int | None = None
    lower: float | None = None
    upper: float | None = None
    max_samples: int = DEFAULT_MAX_SAMPLES
    threshold: float | None = None
    prob_dtype: str = "float16"
    maps_dtype: str = "float16"
    save_direction: bool = False
    save_distance: bool = False
    spacing: Sequence[float] | None = None
    zarr_format: int = 3
    device: str | torch.device | None = None
    amp: bool | None = None

    def __post_init__(self) -> None:
        if self.prob_dtype not in ("float16", "uint8"):
            raise ValueError(f"prob_dtype must be 'float16' or 'uint8', got {self.prob_dtype!r}.")
        if self.maps_dtype not in ("float16", "float32"):
            raise ValueError(f"maps_dtype must be 'float16' or 'float32', got {self.maps_dtype!r}.")
        if self.zarr_format not in (2, 3):
            raise ValueError(f"zarr_format must be 2 or 3, got {self.zarr_format!r}.")
        if self.overlap is not None and self.halo is not None:
            raise ValueError("give either overlap (a fraction of the window) or halo (voxels), not both.")

    def resolve_device(self) -> tuple[str, bool]:
        """``(device, amp)``: CUDA when available unless told otherwise; AMP only on CUDA (default on there)."""
        dev = str(self.device) if self.device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev_type = torch.device(dev).type
        except RuntimeError as e:
            raise ValueError(f"bad device {self.device!r}: {e}") from e
        use_amp = (dev_type == "cuda") if self.amp is None else (bool(self.amp) and dev_type == "cuda")
        return dev, bool(use_amp)


@dataclass(frozen=True)
class BlockwiseSettings:
    """Everything a run needs, resolved: the input, the model, the grids, preprocessing and output layout.

    Attributes:
        source: the input volume ``(D, H, W)``.
        spec: the model (loaded lazily by each worker).
        grid: the global sliding-window grid on the volume.
        blocks: the output blocks (also the storage chunks).
        output: the arrays of the output group.
        percentiles: ``(lower, upper)`` intensity percentiles mapped to 0 and 1.
        max_samples: percentiles are exact up to this many voxels.
        threshold: the mask threshold on the probability.
        sw_batch_size: windows per forward pass.
        device: where the network runs.
        amp: mixed precision on CUDA.
        background_z: windows below the volume's noise floor at this ``z`` are skipped, as in the bundle's
            :class:`~neurolink_monai.inference.NeuroLinkInferer`; None evaluates every window.
    """

    source: VolumeSource
    spec: ModelSpec
    grid: SlidingWindowGrid
    blocks: BlockGrid
    output: OutputSpec
    percentiles: tuple[float, float]
    max_samples: int
    threshold: float
    sw_batch_size: int
    device: str
    amp: bool
    background_z: float | None = None

    @property
    def blended_channels(self) -> int:
        """Output channels blended per block: segmentation, plus direction (3) and distance (1) when stored."""
        arrays = self.output.arrays
        return self.spec.seg_channels + 3 * ("direction" in arrays) + ("distance" in arrays)

    def identity(self) -> dict:
        """What an existing output must match to be resumed or reused: format, input, model and settings."""
        return json.loads(
            json.dumps(
                {
                    "format_version": OUTPUT_FORMAT_VERSION,
                    "input": self.source.describe(),
                    "model": self.spec.describe(),
                    "settings": {
                        **self.grid.describe(),
                        "chunks": list(self.blocks.chunks),
                        "sw_batch_size": self.sw_batch_size,
                        "percentiles": [float(p) for p in self.percentiles],
                        "max_samples": int(self.max_samples),
                        "threshold": self.threshold,
                        "output": self.output.describe(),
                        # only when skipping, so outputs written before skipping existed can still be resumed
                        **({} if self.background_z is None else {"skip_background_z": self.background_z}),
                    },
                },
                default=str,
            )
        )

    def block_memory(self) -> int:
        """:func:`estimate_block_memory` of these settings."""
        spec = self.spec
        return estimate_block_memory(
            self.grid,
            self.blocks,
            np.dtype(self.source.dtype).itemsize,
            self.blended_channels,
            self.sw_batch_size,
            spec.out_channels or spec.seg_channels + 4,
        )

    def summary(self) -> list[str]:
        """Two status lines: the input, and the windows and blocks."""
        src, grid, blocks = self.source, self.grid, self.blocks
        evaluations = grid.evaluations(blocks)
        return [
            f"input {src.path} {list(src.shape)} {src.dtype}, spacing {list(src.spacing)} ({src.spacing_source})",
            f"windows {list(grid.roi_size)} overlap {[round(o, 4) for o in grid.overlap]} (halo {list(grid.halo)} "
            f"voxels), {grid.num_windows} windows; {blocks.num_blocks} blocks of {list(blocks.chunks)}; "
            f"{evaluations} window evaluations ({evaluations / grid.num_windows:.2f} per window); "
            f"~{self.block_memory() / 2**20:.0f} MiB per block task + network",
        ]


def _model_spec(options: BlockwiseOptions) -> ModelSpec:
    if isinstance(options.model, ModelSpec):
        return options.model
    if isinstance(options.model, nn.Module):
        return model_spec_from_module(options.model)
    return load_model_spec(options.model, options.config, options.bundle_dir)


def _window_with_margin(shape: Sequence[int], roi: Sequence[int], divisor: int, margin: int) -> tuple[int, ...]:
    """The window per axis: the stack plus its context margin (:func:`margin_pads`, the bundle's rule; the grid then
    pads the stack up to that window as MONAI does), else :func:`fit_roi_size` of the stack alone."""
    pads = margin_pads(shape, roi, margin, divisor)
    alone = fit_roi_size(shape, roi, divisor)
    return tuple(n + sum(p) if sum(p) else a for n, p, a in zip(shape, pads, alone))


def _window_grid(source: VolumeSource, spec: ModelSpec, options: BlockwiseOptions, bundle: dict) -> SlidingWindowGrid:
    """The sliding-window grid: the caller's settings, else the bundle's, else the built-in defaults."""

    def pick(name: str, default: Any) -> Any:
        value = getattr(options, name)
        return value if value is not None else bundle.get(name, default)

    roi = pick("roi_size", DEFAULT_ROI_SIZE)
    roi_t = SlidingWindowGrid.create(source.shape, roi).roi_size  # validates and resolves roi entries <= 0
    # The bundle's NeuroLinkInferer rules (windows never larger than the stack and its context margin, a multiple of
    # the divisor); the margin is padded with the stack's background level unless cval is given.
    margin = pick("context_margin", DEFAULT_CONTEXT_MARGIN)
    roi_t = _window_with_margin(source.shape, roi_t, network_divisor(spec.load("cpu")), margin)
    overlap = overlap_from_halo(roi_t, options.halo) if options.halo is not None else pick("overlap", DEFAULT_OVERLAP)
    return SlidingWindowGrid.create(
        source.shape,
        roi_t,
        overlap,
        pick("mode", "constant"),
        pick("sigma_scale", 0.125),
        pick("padding_mode", "constant"),
        pick("cval", None),
    )


def _check_heads(spec: ModelSpec, options: BlockwiseOptions) -> None:
    if spec.seg_channels not in (1, 2):
        raise ValueError(
            f"the network has {spec.seg_channels} segmentation channels; blockwise inference, like the "
            "bundle, takes 1 (sigmoid) or 2 (softmax, channel 1 = neurite)."
        )
    maps = options.save_direction or options.save_distance
    if maps and spec.out_channels is not None and spec.out_channels == spec.seg_channels:
        raise ValueError("save_direction/save_distance need a multi-task network (direction and distance heads).")


def resolve_settings(input_path: str | os.PathLike, options: BlockwiseOptions) -> BlockwiseSettings:
    """Open the input and the model and resolve ``options`` against the bundle's inference config.

    Raises:
        BlockwiseInputError: missing, corrupt or non-3D input.
        FileNotFoundError: the (default) model or config is missing.
        ValueError / TypeError: bad settings (chunk sizes, roi, overlap, percentiles, threshold, heads...).
    """
    device, amp = options.resolve_device()
    source = open_volume(input_path, spacing=tuple(options.spacing) if options.spacing is not None else None)
    spec = _model_spec(options)
    bundle = bundle_inference_settings(options.config, options.bundle_dir)
    grid = _window_grid(source, spec, options, bundle)
    swb = options.sw_batch_size if options.sw_batch_size is not None else int(bundle.get("sw_batch_size", 1))
    as_positive_int(swb, "sw_batch_size")
    lo_p = options.lower if options.lower is not None else bundle.get("lower", DEFAULT_PERCENTILES[0])
    hi_p = options.upper if options.upper is not None else bundle.get("upper", DEFAULT_PERCENTILES[1])
    check_percentiles(lo_p, hi_p)
    thr = check_threshold(
        options.threshold if options.threshold is not None else bundle.get("threshold", DEFAULT_THRESHOLD)
    )
    skip = options.skip_background if options.skip_background is not None else bundle.get("skip_background", False)
    if not isinstance(skip, (bool, np.bool_)):
        raise TypeError(f"skip_background must be True or False, got {skip!r}.")
    z = options.background_z if options.background_z is not None else bundle.get("background_z", DEFAULT_BACKGROUND_Z)
    background_z = as_float_in_range(z, "background_z", 0.0) if skip else None
    chunks = options.chunks
    if chunks is None:
        chunks = tuple(BLOCKS_PER_AXIS_STEP * s for s in grid.scan_interval)
    blocks = BlockGrid.create(source.shape, chunks)
    _check_heads(spec, options)
    output = OutputSpec(
        shape=source.shape,
        chunks=blocks.chunks,
        spacing=source.spacing,
        seg_channels=spec.seg_channels,
        prob_dtype=options.prob_dtype,
        maps_dtype=options.maps_dtype,
        save_direction=options.save_direction,
        save_distance=options.save_distance,
        zarr_format=options.zarr_format,
    )
    return BlockwiseSettings(
        source=source,
        spec=spec,
        grid=grid,
        blocks=blocks,
        output=output,
        percentiles=(lo_p, hi_p),
        max_samples=options.max_samples,
        threshold=thr,
        sw_batch_size=swb,
        device=device,
        amp=amp,
        background_z=background_z,
    )


def estimate_block_memory(
    grid: SlidingWindowGrid, blocks: BlockGrid, itemsize: int, channels: int, sw_batch: int, net_channels: int = 5
) -> int:
    """Upper estimate of the bytes one block task holds besides the network's activations.

    This is the bound behind "peak memory ~ block size x workers x threads": the input region (raw and float32;
    at most the block plus ``roi - 1`` on each side), the float32 accumulator of the ``channels`` blended heads and
    the weight sum, the post-processed arrays (float32 probability, stored probability and mask, and the maps), and
    one batch of windows in and out (``net_channels`` output channels).
    """
    region = math.prod(min(c + 2 * (r - 1), p) for c, r, p in zip(blocks.chunks, grid.roi_size, grid.padded_shape))
    block = math.prod(blocks.chunks)
    roi = math.prod(grid.roi_size)
    return int(
        region * (itemsize + 4)
        + block * 4 * (channels + 1)
        + block * (4 + 2 + 1 + 2 * 4 * (channels - 1))
        + sw_batch * roi * 4 * (1 + net_channels)
    )


def check_memory(settings: BlockwiseSettings, cluster: ClusterOptions) -> None:
    """Refuse blocks whose tasks would not fit this machine's memory (runs on this machine only).

    Raises:
        ValueError: ``threads_per_worker`` block tasks (one in synchronous mode) exceed the machine's RAM.
    """
    if not cluster.local:
        return
    ram = psutil.virtual_memory().total
    per_process = settings.block_memory() * (cluster.threads_per_worker if cluster.scheduler is None else 1)
    if per_process > ram:
        raise ValueError(
            f"bad chunk sizes: blocks of {list(settings.blocks.chunks)} need ~{per_process / 2**30:.1f} GiB per "
            f"worker process ({cluster.threads_per_worker} thread(s)) but this machine has {ram / 2**30:.1f} GiB; "
            "use smaller --chunks."
        )
