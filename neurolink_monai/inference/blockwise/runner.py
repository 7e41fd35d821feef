# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""``run_blockwise``: out-of-core NeuroLink inference of a Zarr/TIFF volume into an OME-Zarr group, on Dask.

A run has four steps: the options are resolved into settings (:mod:`.settings`), the output is claimed (reused,
resumed or created: :mod:`.claim`), the Dask client is opened (:func:`dask_client`), and the blocks are computed
(:func:`run_block` on each worker) and the output finalised.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...networks.outputs import head_channels
from ...transforms.intensity import DEFAULT_MAX_SAMPLES
from ...utils import keep_freed_memory
from ..sliding import NoiseFloor
from .claim import BlockwiseRunError, OutputClaim, RunState, check_output_path, claim_output, open_run
from .engine import postprocess_block, predict_block
from .grid import BlockGrid, SlidingWindowGrid
from .model import ModelSpec
from .settings import BlockwiseOptions, BlockwiseSettings, ClusterOptions, check_memory, resolve_settings
from .sources import BlockwiseInputError, VolumeSource
from .store import completed_blocks, finalize_output, output_lock, partial_path, read_record, write_block

__all__ = [
    "BlockJob",
    "BlockwiseResult",
    "BlockwiseRunError",
    "dask_client",
    "run_block",
    "run_blockwise",
    "run_blockwise_with",
]


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
    floor: NoiseFloor | None = None


@dataclass
class BlockwiseResult:
    """What a run did. ``voxels_per_second`` counts output voxels over the wall time of the block phase;
    ``window_evaluations`` the windows run (a window overlapping two blocks counts twice, a skipped background
    window not at all); ``blocks_skipped`` the blocks already written by an earlier run."""

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
    keep_freed_memory()  # the worker's process runs the network: large tensors reuse memory, as in the bundle
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
    stats: dict = {}
    with torch.autocast("cuda", enabled=job.amp):  # the bundle runs its inference with AMP on CUDA
        try:
            out = predict_block(
                job.source, job.grid, start, stop, net, job.window, job.sw_batch_size, job.device, imp, channels,
                job.floor, k, stats,
            )  # fmt: skip
        except IndexError as e:
            raise ValueError(
                f"the network output has no channels {channels[k:]} for the direction/distance heads: "
                f"it is not a multi-task NeuroLinkNet ({e})."
            ) from e
    data = postprocess_block(out, k, job.threshold, job.prob_dtype, job.maps_dtype, heads)
    del out
    write_block(Path(job.partial), index, start, stop, data, job.run_id)
    return index, math.prod(b - a for a, b in zip(start, stop)), stats["windows"]


def _load_model(spec: ModelSpec, device: str, torch_threads: int | None) -> int:
    if torch_threads:
        torch.set_num_threads(torch_threads)
    spec.load(device)
    return os.getpid()


@contextmanager
def dask_client(cluster: ClusterOptions) -> Iterator[tuple[Any, int | None]]:
    """The Dask client of a run and the torch threads per worker; ``(None, torch_threads)`` when synchronous.

    A new ``LocalCluster(workers, threads_per_worker)`` (``scheduler=None``) or a client of the scheduler address
    is closed on exit; a ``distributed.Client`` passed in is left open. On a new LocalCluster the torch threads
    default to cores / (workers x threads).

    Raises:
        BlockwiseRunError: the scheduler address cannot be reached.
    """
    if cluster.synchronous:
        yield None, cluster.torch_threads
        return
    from distributed import Client, LocalCluster

    if isinstance(cluster.scheduler, Client):
        yield cluster.scheduler, cluster.torch_threads
        return
    if cluster.scheduler:
        try:
            client = Client(cluster.scheduler, timeout="30s")
        except Exception as e:
            raise BlockwiseRunError(f"cannot connect to the Dask scheduler at {cluster.scheduler!r}: {e}") from e
        try:
            yield client, cluster.torch_threads
        finally:
            client.close()
        return
    local = LocalCluster(
        n_workers=cluster.workers,
        threads_per_worker=cluster.threads_per_worker,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    torch_threads = cluster.torch_threads
    if torch_threads is None:
        torch_threads = max(1, (os.cpu_count() or 1) // (cluster.workers * cluster.threads_per_worker))
    try:
        client = Client(local)
        try:
            yield client, torch_threads
        finally:
            client.close()
    finally:
        local.close()


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
    context_margin: int | None = None,
    skip_background: bool | None = None,
    background_z: float | None = None,
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

    The arguments go by keyword into :class:`~.settings.BlockwiseOptions` and :class:`~.settings.ClusterOptions`.

    Args:
        input_path: Zarr array or OME-Zarr group (v2/v3), or a TIFF (memory-mapped or read through tifffile's Zarr
            store); a single-channel ``(D, H, W)`` volume (singleton t/c axes are dropped).
        output_path: the output Zarr group (layout: :mod:`.store`), written as ``<output>.partial``, then renamed.
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
        mode, sigma_scale, padding_mode, cval, sw_batch_size: as in ``SlidingWindowInferer``; ``cval`` defaults to
            the volume's background level (its scaled median).
        context_margin: background voxels around an axis shorter than the window, as in
            :class:`~neurolink_monai.inference.NeuroLinkInferer`; default the bundle's, else ``DEFAULT_CONTEXT_MARGIN``.
        skip_background, background_z: skip the windows whose input is below the noise floor of the whole volume
            at ``background_z`` (:class:`~neurolink_monai.inference.NoiseFloor`, the bundle's rule; the floor is
            measured once, in one read of the volume, and kept in the output's record); voxels that only such
            windows cover get the background output. Default the bundle's (skip, z 3), else no skipping. Unlike the
            bundle, a volume whose every window is background is not given its brightest window: it comes out all
            background.
        lower, upper: intensity percentiles (default the bundle's, else ``DEFAULT_PERCENTILES``, 0.5 and 99.95).
        max_samples: percentiles are exact up to this many voxels, else from a strided subsample this large.
        threshold: probability threshold of the mask (binary segmentation); default the bundle's, else 0.5.
        prob_dtype, maps_dtype: ``"float16"`` or ``"uint8"`` (probability x 255, rounded); ``"float16"`` or
            ``"float32"`` for the direction and distance maps.
        save_direction, save_distance: also store these heads (multi-task networks only).
        spacing: ``(z, y, x)`` voxel size overriding the input's metadata.
        zarr_format: 3 (OME-NGFF 0.5) or 2 (OME-NGFF 0.4).
        overwrite: replace an output (complete or partial) that belongs to another input or other settings, or
            that is not ours at all. The old output is only removed once the new one is complete.
        scheduler, workers, threads_per_worker, torch_threads: where the blocks run, see
            :class:`~.settings.ClusterOptions` (default: a new LocalCluster of one single-threaded worker).
        device, amp: ``"cuda"``/``"cpu"``, default CUDA when available; mixed precision on CUDA, default on (as in
            the bundle's inference config).
        progress, log: show a tqdm progress bar; a callable taking one-line status messages.

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
    cluster = ClusterOptions(
        scheduler=scheduler, workers=workers, threads_per_worker=threads_per_worker, torch_threads=torch_threads
    )
    option_names = {option.name for option in fields(BlockwiseOptions)}
    options = BlockwiseOptions(**{name: value for name, value in locals().items() if name in option_names})
    return run_blockwise_with(
        input_path, output_path, options, cluster, overwrite=overwrite, progress=progress, log=log
    )


def run_blockwise_with(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    options: BlockwiseOptions,
    cluster: ClusterOptions | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> BlockwiseResult:
    """:func:`run_blockwise` with its options gathered in dataclasses.

    Args:
        input_path, output_path, overwrite, progress, log: as in :func:`run_blockwise`.
        options: the model, window, preprocessing and output options.
        cluster: where the blocks run; default a new LocalCluster of one single-threaded worker.

    Returns:
        :class:`BlockwiseResult`; raises what :func:`run_blockwise` raises.
    """
    say = log or (lambda msg: None)
    t_start = time.perf_counter()
    cluster = cluster if cluster is not None else ClusterOptions()
    settings = resolve_settings(input_path, options)
    output = Path(output_path).expanduser().absolute()
    check_output_path(output, settings.source)
    check_memory(settings, cluster)
    for line in settings.summary():
        say(line)
    with output_lock(output):
        claim = claim_output(output, settings.identity(), overwrite, say, settings.blocks.num_blocks)
        if claim.complete_record is not None:
            return _already_complete(claim, settings, time.perf_counter() - t_start)
        _warn_free_space(output, settings, say)
        with dask_client(cluster) as (client, threads):
            state = open_run(claim, settings, client, say)
            result = _compute_blocks(claim, settings, state, client, threads, progress, say)
        _finish(claim)
    say(
        f"wrote {output}: {result.blocks_computed} blocks computed ({result.window_evaluations} window evaluations"
        f"{'' if settings.background_z is None else ', background windows skipped'}), {result.blocks_skipped} "
        f"already written, {result.voxels_computed / max(result.seconds, 1e-9):.3g} voxels/s"
    )
    result.record = read_record(output) or {}
    return result


def _already_complete(claim: OutputClaim, settings: BlockwiseSettings, seconds: float) -> BlockwiseResult:
    total = settings.blocks.num_blocks
    rec = claim.complete_record or {}
    return BlockwiseResult(
        output=claim.final,
        status="already complete",
        blocks_total=total,
        blocks_skipped=total,
        blocks_computed=0,
        voxels_computed=0,
        seconds=seconds,
        voxels_per_second=0.0,
        window_evaluations=0,
        num_windows=settings.grid.num_windows,
        intensity_window=tuple(rec.get("intensity_window", (0.0, 0.0))),
        record=rec,
    )


def _warn_free_space(output: Path, settings: BlockwiseSettings, say: Callable[[str], None]) -> None:
    free = shutil.disk_usage(output.parent).free
    needed = settings.output.nbytes()
    if free < needed:
        say(
            f"warning: {free / 2**30:.1f} GiB free on the output disk; the output holds up to "
            f"{needed / 2**30:.1f} GiB before compression"
        )


def _compute_blocks(
    claim: OutputClaim,
    settings: BlockwiseSettings,
    state: RunState,
    client: Any,
    torch_threads: int | None,
    progress: bool,
    say: Callable[[str], None],
) -> BlockwiseResult:
    """Compute the blocks not yet written; the result's ``record`` is filled in once the output is final."""
    blocks = settings.blocks
    total = blocks.num_blocks
    todo = [idx for idx in blocks.indices() if not state.done[idx]]
    skipped = total - len(todo)
    if claim.resume:
        say(f"resuming {claim.partial}: {skipped} of {total} blocks already written, {len(todo)} to go")
    job = BlockJob(
        source=settings.source,
        grid=settings.grid.with_cval(state.background),
        blocks=blocks,
        window=state.window,
        partial=str(claim.partial),
        arrays=tuple(settings.output.arrays),
        seg_channels=settings.spec.seg_channels,
        threshold=settings.threshold,
        prob_dtype=settings.output.prob_dtype,
        maps_dtype=settings.output.maps_dtype,
        sw_batch_size=settings.sw_batch_size,
        device=settings.device,
        torch_threads=torch_threads,
        amp=settings.amp,
        run_id=state.run_id,
        floor=state.floor,
    )
    voxels, evals, seconds = _execute(job, settings.spec, todo, client, progress, claim.final, skipped, total)
    return BlockwiseResult(
        output=claim.final,
        status="complete",
        blocks_total=total,
        blocks_skipped=skipped,
        blocks_computed=len(todo),
        voxels_computed=voxels,
        seconds=seconds,
        voxels_per_second=voxels / seconds if seconds > 0 else 0.0,
        window_evaluations=evals,
        num_windows=settings.grid.num_windows,
        intensity_window=state.window,
    )


def _finish(claim: OutputClaim) -> None:
    """Check that every block is marked written and move the partial output to its final path."""
    partial, final = claim.partial, claim.final
    if not completed_blocks(partial).all():
        raise BlockwiseRunError(f"{partial}: not every block is marked written after the run; rerun to resume.")
    try:
        finalize_output(partial, final)
    except OSError as e:
        raise BlockwiseRunError(
            f"all blocks are written in {partial} but moving it to {final} failed: {e}; "
            "rerun the same command to finish."
        ) from e


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
