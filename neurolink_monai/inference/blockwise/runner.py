# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""``run_blockwise``: out-of-core NeuroLink inference of a Zarr/TIFF volume into an OME-Zarr group, on Dask."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
from torch import nn

from ...networks.outputs import check_threshold, head_channels
from ...transforms.intensity import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_PERCENTILES,
    check_percentiles,
    intensity_window,
    subsample_strides,
)
from ..sliding import fit_roi_size, network_divisor
from .engine import postprocess_block, predict_block
from .grid import BlockGrid, SlidingWindowGrid, overlap_from_halo
from .model import ModelSpec, bundle_inference_settings, load_model_spec, model_spec_from_module
from .sources import BlockwiseInputError, VolumeSource, open_volume
from .store import (
    OUTPUT_FORMAT_VERSION,
    BlockwiseOutputError,
    OutputSpec,
    completed_blocks,
    create_output,
    finalize_output,
    output_lock,
    partial_path,
    read_record,
    write_block,
)

__all__ = [
    "BlockwiseResult",
    "BlockwiseRunError",
    "DEFAULT_ROI_SIZE",
    "estimate_block_memory",
    "run_block",
    "run_blockwise",
]

DEFAULT_ROI_SIZE = (64, 128, 128)
DEFAULT_OVERLAP = 0.25
DEFAULT_THRESHOLD = 0.5
BLOCKS_PER_AXIS_STEP = 4  # default block = 4 window steps per axis: each window is evaluated ~(5/4)^3 ~ 2x


class BlockwiseRunError(RuntimeError):
    """A block failed while the volume was processed (unreadable input block, full disk, dead worker...)."""


@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs to produce one block, except the model (scattered separately)."""

    source: VolumeSource
    grid: SlidingWindowGrid
    blocks: BlockGrid
    window: tuple[float, float]
    partial: str
    arrays: tuple[str, ...]
    seg_channels: int
    threshold: float
    prob_dtype: str
    maps_dtype: str
    sw_batch_size: int
    device: str
    torch_threads: int | None
    amp: bool = False
    run_id: str = ""


@dataclass
class BlockwiseResult:
    """What a run did. ``voxels_per_second`` counts output voxels over the wall time of the block phase."""

    output: Path
    status: str
    blocks_total: int
    blocks_skipped: int
    blocks_computed: int
    voxels_computed: int
    seconds: float
    voxels_per_second: float
    window_evaluations: int
    num_windows: int
    intensity_window: tuple[float, float]
    record: dict = field(default_factory=dict, repr=False)


_IMPORTANCE: dict[SlidingWindowGrid, torch.Tensor] = {}


def run_block(job: BlockJob, spec: ModelSpec, index: tuple[int, int, int]) -> tuple[tuple[int, int, int], int, int]:
    """Compute, write and mark one block; runs on a Dask worker. Returns ``(index, voxels, window evaluations)``."""
    if job.torch_threads:
        torch.set_num_threads(job.torch_threads)
    net = spec.load(job.device)
    imp = _IMPORTANCE.get(job.grid)
    if imp is None:
        imp = _IMPORTANCE.setdefault(job.grid, job.grid.importance_map("cpu"))
    start, stop = job.blocks.box(index)
    k = job.seg_channels
    heads = ("seg", *(name for name in ("direction", "distance") if name in job.arrays))
    channels = head_channels(k, heads)  # blend only the heads that are stored
    with torch.autocast("cuda", enabled=job.amp):  # the bundle runs its inference with AMP on CUDA
        try:
            out = predict_block(
                job.source, job.grid, start, stop, net, job.window, job.sw_batch_size, job.device, imp, channels
            )
        except IndexError as e:
            raise ValueError(
                f"the network output has no channels {channels[k:]} for the direction/distance heads: "
                f"it is not a multi-task NeuroLinkNet ({e})."
            ) from e
    data = postprocess_block(out, k, job.threshold, job.prob_dtype, job.maps_dtype, heads)
    del out
    write_block(Path(job.partial), index, start, stop, data, job.run_id)
    evaluations = math.prod(len(s) for s in job.grid.block_window_starts(start, stop))
    return index, math.prod(b - a for a, b in zip(start, stop)), evaluations


def _load_model(spec: ModelSpec, device: str, torch_threads: int | None) -> int:
    if torch_threads:
        torch.set_num_threads(torch_threads)
    spec.load(device)
    return os.getpid()


def _sample_slab(source: VolumeSource, z0: int, z1: int, strides: tuple[int, int, int]) -> np.ndarray:
    return source[(slice(z0, z1, strides[0]), slice(None, None, strides[1]), slice(None, None, strides[2]))]


def _parallel_window(client: Any, source: VolumeSource, lower: float, upper: float, max_samples: int) -> tuple:
    """:func:`intensity_window` with the subsample read by the cluster, slab by slab."""
    strides = subsample_strides(source.shape, max_samples)
    rows = source.chunks[0] if source.chunks else 16
    slab = max(strides[0], -(-max(rows, 16) // strides[0]) * strides[0])
    futures = [
        client.submit(_sample_slab, source, z, min(z + slab, source.shape[0]), strides, pure=False)
        for z in range(0, source.shape[0], slab)
    ]
    return intensity_window(np.concatenate(client.gather(futures), axis=0), lower, upper, max_samples=2**62)


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


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: recorded {a!r}, now {b!r}"]


def _identity(record: dict) -> dict:
    return {k: record.get(k) for k in ("format_version", "input", "model", "settings")}


def _make_client(scheduler: Any, workers: int, threads: int) -> tuple[Any, Any, bool]:
    """(client, cluster or None, whether we own the client)."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, None, False
    if scheduler:
        try:
            return Client(scheduler, timeout="30s"), None, True
        except Exception as e:
            raise BlockwiseRunError(f"cannot connect to the Dask scheduler at {scheduler!r}: {e}") from e
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return Client(cluster), cluster, True


def _failure_message(e: BaseException, index: Any, output: Path, done: int, total: int) -> str:
    where = f"block {tuple(index)}" if index is not None else "a block"
    resume = f"{done} of {total} blocks are written in {partial_path(output)}; rerun the same command to resume."
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full while writing {where} of {output} ({e}). Free space, then {resume}"
    if type(e).__name__ == "KilledWorker":
        return (
            f"a Dask worker died while computing {where} (out of memory? use smaller --chunks or fewer "
            f"--threads-per-worker): {e}. {resume}"
        )
    return f"{where} failed: {type(e).__name__}: {e}. {resume}"


def _check_window_contrast(source: VolumeSource, window: Sequence[float], percentiles: tuple[float, float]) -> None:
    """The bundle's contrast rule (:func:`neurolink_monai.transforms.check_contrast`) on the whole-volume window:
    a constant or near-constant volume is refused before any output is created."""
    from neurolink_monai.errors import StackContentError
    from neurolink_monai.transforms.checks import check_contrast

    try:
        check_contrast(window[0], window[1], source.dtype, source.path, percentiles, option="--lower/--upper")
    except StackContentError as e:
        raise BlockwiseInputError(str(e)) from None


def run_blockwise(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    model: nn.Module | ModelSpec | str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    bundle_dir: str | os.PathLike | None = None,
    chunks: Sequence[int] | int | None = None,
    roi_size: Sequence[int] | int | None = None,
    overlap: Sequence[float] | float | None = None,
    halo: Sequence[int] | int | None = None,
    mode: str | None = None,
    sigma_scale: Sequence[float] | float | None = None,
    padding_mode: str | None = None,
    cval: float | None = None,
    sw_batch_size: int | None = None,
    lower: float | None = None,
    upper: float | None = None,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    threshold: float | None = None,
    prob_dtype: str = "float16",
    maps_dtype: str = "float16",
    save_direction: bool = False,
    save_distance: bool = False,
    spacing: Sequence[float] | None = None,
    zarr_format: int = 3,
    overwrite: bool = False,
    scheduler: Any = None,
    workers: int = 1,
    threads_per_worker: int = 1,
    torch_threads: int | None = None,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> BlockwiseResult:
    """Segment a volume larger than memory block by block, exactly as MONAI's in-memory sliding window would.

    The windows of ``SlidingWindowInferer(roi_size, overlap=overlap, mode=mode)`` are placed on the whole volume;
    every output block (``chunks``) evaluates the windows that overlap it, reading their input lazily, and blends
    them with MONAI's importance map and weight sum (see :mod:`.grid`), so the result matches the whole-volume
    inferer (max abs difference ~1e-6 before casting) with no seams. Preprocessing is the bundle's: percentile
    scaling to [0, 1] with the percentiles of the whole volume (:func:`~neurolink_monai.transforms.intensity_window`).

    Args:
        input_path: Zarr array or OME-Zarr group (v2/v3), or a TIFF (memory-mapped or read through tifffile's Zarr
            store); a single-channel ``(D, H, W)`` volume (singleton t/c axes are dropped).
        output_path: the output Zarr group (see :mod:`.store` for its layout); written as
            ``<output>.partial`` and renamed when complete.
        model: ``None`` for the bundle's ``models/model.pt`` with ``configs/inference.json``'s ``network_def``; a
            checkpoint path (TorchScript, or state dict with ``config``); an ``nn.Module``; or a :class:`ModelSpec`.
        config: bundle config with ``network_def``; its sliding-window, percentile and threshold settings become
            the defaults here (see :func:`~neurolink_monai.inference.blockwise.bundle_inference_settings`).
        bundle_dir: the bundle folder (default: ``bundle/`` of this checkout).
        chunks: block size ``(z, y, x)``, also the output's storage chunks. Default: 4 window steps per axis.
        roi_size: window size; default from the bundle's inferer, else ``(64, 128, 128)``.
        overlap: window overlap fraction(s) in ``[0, 1)``; default the bundle's, else 0.25.
        halo: alternative to ``overlap``: the overlap of neighbouring windows in voxels ``(z, y, x)``, which is the
            least margin each block reads beyond its borders.
        mode, sigma_scale, padding_mode, cval, sw_batch_size: as in ``SlidingWindowInferer``.
        lower, upper: intensity percentiles (default the bundle's, else ``DEFAULT_PERCENTILES``, 0.5 and 99.95).
        max_samples: percentiles are exact up to this many voxels, else from a strided subsample this large.
        threshold: probability threshold of the mask (binary segmentation); default the bundle's, else 0.5.
        prob_dtype: ``"float16"`` or ``"uint8"`` (probability x 255, rounded).
        maps_dtype: ``"float16"`` or ``"float32"`` for the direction and distance maps.
        save_direction, save_distance: also store these heads (multi-task networks only).
        spacing: ``(z, y, x)`` voxel size overriding the input's metadata.
        zarr_format: 3 (OME-NGFF 0.5) or 2 (OME-NGFF 0.4).
        overwrite: replace an output (complete or partial) that belongs to another input or other settings, or
            that is not ours at all. The old output is only removed once the new one is complete.
        scheduler: ``None`` for a new ``LocalCluster(workers, threads_per_worker)``; a scheduler address
            ``"tcp://host:8786"`` or a ``distributed.Client`` for an existing cluster; ``"synchronous"`` to run in
            this process without Dask.
        workers, threads_per_worker: LocalCluster size; each thread processes one block at a time.
        torch_threads: torch intra-op threads per worker process; default: cores / (workers x threads) for a
            LocalCluster, torch's default otherwise.
        device: ``"cuda"``/``"cpu"``; default CUDA when available.
        amp: mixed precision on CUDA; default on for CUDA, as in the bundle's inference config.
        progress: show a tqdm progress bar.
        log: called with one-line status messages.

    Returns:
        :class:`BlockwiseResult`.

    Raises:
        BlockwiseInputError: missing, corrupt or non-3D input.
        BlockwiseOutputError: the output path holds something else (and ``overwrite`` is False), or is the input.
        ValueError / TypeError: bad settings (chunk sizes, roi, overlap, dtypes...).
        FileNotFoundError: the (default) model or config is missing.
        BlockwiseRunError: a block failed (unreadable block, full disk, dead worker); the partial output is kept and
            the same call resumes it.
    """
    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    # ---- arguments
    for name, value in (("workers", workers), ("threads_per_worker", threads_per_worker)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if torch_threads is not None and (
        isinstance(torch_threads, bool) or not isinstance(torch_threads, int) or torch_threads < 1
    ):
        raise ValueError(f"torch_threads must be a positive int, got {torch_threads!r}.")
    if prob_dtype not in ("float16", "uint8"):
        raise ValueError(f"prob_dtype must be 'float16' or 'uint8', got {prob_dtype!r}.")
    if maps_dtype not in ("float16", "float32"):
        raise ValueError(f"maps_dtype must be 'float16' or 'float32', got {maps_dtype!r}.")
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3, got {zarr_format!r}.")
    if overlap is not None and halo is not None:
        raise ValueError("give either overlap (a fraction of the window) or halo (voxels), not both.")
    if isinstance(scheduler, str) and scheduler not in ("synchronous",) and "://" not in scheduler:
        raise ValueError(f"scheduler must be 'synchronous' or an address like tcp://host:8786, got {scheduler!r}.")
    dev = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev_type = torch.device(dev).type
    except RuntimeError as e:
        raise ValueError(f"bad device {device!r}: {e}") from e
    use_amp = (dev_type == "cuda") if amp is None else (bool(amp) and dev_type == "cuda")

    # ---- input, model, settings
    source = open_volume(input_path, spacing=tuple(spacing) if spacing is not None else None)
    if isinstance(model, ModelSpec):
        spec = model
    elif isinstance(model, nn.Module):
        spec = model_spec_from_module(model)
    else:
        spec = load_model_spec(model, config, bundle_dir)
    bundle = bundle_inference_settings(config, bundle_dir)
    roi = roi_size if roi_size is not None else bundle.get("roi_size", DEFAULT_ROI_SIZE)
    roi_t = SlidingWindowGrid.create(source.shape, roi).roi_size  # validates and resolves roi entries <= 0
    # Windows never larger than the stack (the bundle's NeuroLinkInferer rule): shrink to a multiple of the divisor.
    roi_t = fit_roi_size(source.shape, roi_t, network_divisor(spec.load("cpu")))
    if halo is not None:
        ov = overlap_from_halo(roi_t, halo)
    else:
        ov = overlap if overlap is not None else bundle.get("overlap", DEFAULT_OVERLAP)
    grid = SlidingWindowGrid.create(
        source.shape,
        roi_t,
        ov,
        mode if mode is not None else bundle.get("mode", "constant"),
        sigma_scale if sigma_scale is not None else bundle.get("sigma_scale", 0.125),
        padding_mode if padding_mode is not None else bundle.get("padding_mode", "constant"),
        cval if cval is not None else bundle.get("cval", 0.0),
    )
    swb = sw_batch_size if sw_batch_size is not None else int(bundle.get("sw_batch_size", 1))
    if isinstance(swb, bool) or not isinstance(swb, int) or swb < 1:
        raise ValueError(f"sw_batch_size must be a positive int, got {swb!r}.")
    lo_p = lower if lower is not None else bundle.get("lower", DEFAULT_PERCENTILES[0])
    hi_p = upper if upper is not None else bundle.get("upper", DEFAULT_PERCENTILES[1])
    check_percentiles(lo_p, hi_p)
    thr = check_threshold(threshold if threshold is not None else bundle.get("threshold", DEFAULT_THRESHOLD))
    if chunks is None:
        chunks = tuple(BLOCKS_PER_AXIS_STEP * s for s in grid.scan_interval)
    blocks = BlockGrid.create(source.shape, chunks)
    if spec.seg_channels not in (1, 2):
        raise ValueError(
            f"the network has {spec.seg_channels} segmentation channels; blockwise inference, like the "
            "bundle, takes 1 (sigmoid) or 2 (softmax, channel 1 = neurite)."
        )
    if (save_direction or save_distance) and spec.out_channels is not None and spec.out_channels == spec.seg_channels:
        raise ValueError("save_direction/save_distance need a multi-task network (direction and distance heads).")
    out_spec = OutputSpec(
        source.shape,
        blocks.chunks,
        source.spacing,
        spec.seg_channels,
        prob_dtype,
        maps_dtype,
        save_direction,
        save_distance,
        zarr_format,
    )

    # ---- output path
    out = Path(output_path).expanduser().absolute()
    inp = Path(source.path)
    if out.resolve() == inp or inp in out.resolve().parents or out.resolve() in inp.parents:
        raise BlockwiseOutputError(f"{out}: the output must not be the input {inp} or contain it or lie inside it.")
    if not out.parent.is_dir():
        raise BlockwiseOutputError(f"{out}: the output folder {out.parent} does not exist.")
    partial = partial_path(out)
    identity = _jsonable(
        {
            "format_version": OUTPUT_FORMAT_VERSION,
            "input": source.describe(),
            "model": spec.describe(),
            "settings": {
                **grid.describe(),
                "chunks": list(blocks.chunks),
                "sw_batch_size": swb,
                "percentiles": [float(lo_p), float(hi_p)],
                "max_samples": int(max_samples),
                "threshold": thr,
                "output": out_spec.describe(),
            },
        }
    )
    evaluations = grid.evaluations(blocks)
    total = blocks.num_blocks
    blended = spec.seg_channels + 3 * bool(save_direction) + bool(save_distance)
    mem = estimate_block_memory(
        grid, blocks, np.dtype(source.dtype).itemsize, blended, swb, spec.out_channels or spec.seg_channels + 4
    )
    if scheduler is None or scheduler == "synchronous":
        ram = psutil.virtual_memory().total
        per_process = mem * (threads_per_worker if scheduler is None else 1)
        if per_process > ram:
            raise ValueError(
                f"bad chunk sizes: blocks of {list(blocks.chunks)} need ~{per_process / 2**30:.1f} GiB per worker "
                f"process ({threads_per_worker} thread(s)) but this machine has {ram / 2**30:.1f} GiB; use smaller "
                "--chunks."
            )
    say(f"input {inp} {list(source.shape)} {source.dtype}, spacing {list(source.spacing)} ({source.spacing_source})")
    say(
        f"windows {list(grid.roi_size)} overlap {[round(o, 4) for o in grid.overlap]} (halo {list(grid.halo)} voxels), "
        f"{grid.num_windows} windows; {total} blocks of {list(blocks.chunks)}; {evaluations} window evaluations "
        f"({evaluations / grid.num_windows:.2f} per window); ~{mem / 2**20:.0f} MiB per block task + network"
    )

    with output_lock(out):
        if out.exists() or out.is_symlink():
            rec = read_record(out)
            if rec is not None and _identity(rec) == identity and rec.get("status") == "complete":
                say(f"{out} is complete for this input and these settings: all {total} blocks already written.")
                return BlockwiseResult(
                    out,
                    "already complete",
                    total,
                    total,
                    0,
                    0,
                    time.perf_counter() - t_start,
                    0.0,
                    0,
                    grid.num_windows,
                    tuple(rec.get("intensity_window", (0.0, 0.0))),
                    rec,
                )
            if not overwrite:
                why = (
                    "it is not a NeuroLink blockwise output"
                    if rec is None
                    else "it was made from another input or with other settings: "
                    + "; ".join(_differences(_identity(rec), identity)[:4])
                )
                raise BlockwiseOutputError(
                    f"{out} already exists and {why}. Refusing to touch it; pass --overwrite "
                    "(overwrite=True) to replace it, or choose another output path."
                )
        resume = False
        if partial.exists() or partial.is_symlink():
            prec = read_record(partial)
            if prec is not None and _identity(prec) == identity and (partial / "_progress").exists():
                resume = True
            elif overwrite:
                say(f"removing the unfinished output {partial} (other input or settings)")
                if partial.is_dir() and not partial.is_symlink():
                    shutil.rmtree(partial)
                else:
                    partial.unlink()
            else:
                why = (
                    "is not a NeuroLink blockwise output"
                    if prec is None
                    else "belongs to another input or other settings: "
                    + "; ".join(_differences(_identity(prec), identity)[:4])
                )
                raise BlockwiseOutputError(
                    f"{partial} (an unfinished run's output) {why}. Pass --overwrite to discard " "it and start again."
                )
        free = shutil.disk_usage(out.parent).free
        if free < out_spec.nbytes():
            say(
                f"warning: {free / 2**30:.1f} GiB free on the output disk; the output holds up to "
                f"{out_spec.nbytes() / 2**30:.1f} GiB before compression"
            )

        client = cluster = None
        own = False
        try:
            if scheduler != "synchronous":
                client, cluster, own = _make_client(scheduler, workers, threads_per_worker)
                if torch_threads is None and cluster is not None:
                    torch_threads = max(1, (os.cpu_count() or 1) // (workers * threads_per_worker))
            if resume:
                rec = read_record(partial) or {}
                window = tuple(float(v) for v in rec["intensity_window"])
                run_id = str(rec.get("run_id", ""))
                done = completed_blocks(partial)
            else:
                t0 = time.perf_counter()
                if client is not None and source.size > max_samples:
                    window = _parallel_window(client, source, lo_p, hi_p, max_samples)
                else:
                    window = intensity_window(source, lo_p, hi_p, max_samples)
                _check_window_contrast(source, window, (lo_p, hi_p))
                say(
                    f"intensity window {window[0]:.6g} .. {window[1]:.6g} (percentiles {lo_p}, {hi_p}; "
                    f"{'exact' if source.size <= max_samples else 'subsampled'}; {time.perf_counter() - t0:.1f} s)"
                )
                record = {
                    **identity,
                    "status": "incomplete",
                    "intensity_window": list(window),
                    "run_id": uuid.uuid4().hex,
                    "model_source": spec.description,
                    "created_by": "neurolink_monai.inference.blockwise",
                }
                run_id = record["run_id"]
                try:
                    create_output(partial, out_spec, record, blocks.grid_shape)
                except OSError as e:
                    raise BlockwiseRunError(
                        f"cannot create the output {partial}: {e}"
                        + (" (disk full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "")
                    ) from e
                done = np.zeros(blocks.grid_shape, bool)
            todo = [idx for idx in blocks.indices() if not done[idx]]
            skipped = total - len(todo)
            if resume:
                say(f"resuming {partial}: {skipped} of {total} blocks already written, {len(todo)} to go")
            job = BlockJob(
                source,
                grid,
                blocks,
                (float(window[0]), float(window[1])),
                str(partial),
                tuple(out_spec.arrays),
                spec.seg_channels,
                thr,
                prob_dtype,
                maps_dtype,
                swb,
                dev,
                torch_threads,
                bool(use_amp),
                run_id,
            )
            voxels, evals, seconds = _execute(job, spec, todo, client, progress, out, skipped, total)
        finally:
            if own and client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
        if not completed_blocks(partial).all():
            raise BlockwiseRunError(f"{partial}: not every block is marked written after the run; rerun to resume.")
        try:
            finalize_output(partial, out)
        except OSError as e:
            raise BlockwiseRunError(
                f"all blocks are written in {partial} but moving it to {out} failed: {e}; "
                "rerun the same command to finish."
            ) from e
    rate = voxels / seconds if seconds > 0 else 0.0
    say(f"wrote {out}: {len(todo)} blocks computed, {skipped} skipped, {voxels / max(seconds, 1e-9):.3g} voxels/s")
    return BlockwiseResult(
        out,
        "complete",
        total,
        skipped,
        len(todo),
        voxels,
        seconds,
        rate,
        evals,
        grid.num_windows,
        (float(window[0]), float(window[1])),
        read_record(out) or {},
    )


def _execute(
    job: BlockJob, spec: ModelSpec, todo: list, client: Any, progress: bool, out: Path, skipped: int, total: int
) -> tuple[int, int, float]:
    """Run the blocks in ``todo``; returns voxels, window evaluations and seconds (after the model is loaded)."""
    from tqdm.auto import tqdm

    voxels = evals = 0
    done = skipped
    bar = tqdm(total=total, initial=skipped, unit="block", desc="blockwise", disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()

    def tick(v: int, e: int) -> None:
        nonlocal voxels, evals, done
        voxels += v
        evals += e
        done += 1
        bar.update(1)
        bar.set_postfix_str(f"{voxels / max(time.perf_counter() - t0, 1e-9):.3g} vox/s", refresh=False)

    try:
        if client is None:
            for idx in todo:
                try:
                    _, v, n_eval = run_block(job, spec, idx)
                except (BlockwiseInputError, ValueError, TypeError):
                    raise
                except Exception as e:
                    raise BlockwiseRunError(_failure_message(e, idx, out, done, total)) from e
                tick(v, n_eval)
            return voxels, evals, time.perf_counter() - t0
        from distributed import as_completed

        token = uuid.uuid4().hex[:8]
        try:
            client.wait_for_workers(1, timeout=120)
        except Exception as e:
            raise BlockwiseRunError(f"the Dask cluster has no workers (waited 120 s): {e}") from e
        spec_f = client.scatter(spec, broadcast=True, hash=False)
        job_f = client.scatter(job, broadcast=True, hash=False)
        # load the model on every current worker before the clock starts (workers that join later load it lazily)
        warm = [
            client.submit(
                _load_model, spec_f, job.device, job.torch_threads, workers=[w], pure=False, allow_other_workers=False
            )
            for w in client.scheduler_info()["workers"]
        ]
        client.gather(warm)
        t0 = time.perf_counter()
        futures = {
            client.submit(
                run_block, job_f, spec_f, idx, key=f"neurolink-block-{token}-{'-'.join(map(str, idx))}", pure=False
            ): idx
            for idx in todo
        }
        try:
            for fut in as_completed(futures):
                try:
                    _, v, n_eval = fut.result()
                except (BlockwiseInputError, ValueError, TypeError):
                    raise
                except Exception as e:
                    raise BlockwiseRunError(_failure_message(e, futures[fut], out, done, total)) from e
                tick(v, n_eval)
        finally:
            client.cancel(list(futures))
        return voxels, evals, time.perf_counter() - t0
    finally:
        bar.close()
