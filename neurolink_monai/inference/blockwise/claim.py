# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Claiming the output of a blockwise run: reuse a complete output, resume a partial one, or start a new one.

An existing output (or ``<output>.partial``) is only reused when its record has the same identity (format, input,
model, settings: :meth:`BlockwiseSettings.identity`); anything else is refused unless ``overwrite``. A new run
measures the intensity window of the whole volume (on the Dask cluster when there is one) and, when background windows
are skipped, its noise floor, and creates the partial output; a resumed run takes the window, floor, run id and
finished blocks from the partial output's record.
"""

from __future__ import annotations

import dataclasses
import errno
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...transforms.intensity import check_percentiles, scale_intensity, subsample_strides, volume_percentiles
from ..sliding import NoiseFloor, streamed_background_floor
from .settings import BlockwiseSettings
from .sources import BlockwiseInputError, VolumeSource
from .store import BlockwiseOutputError, completed_blocks, create_output, partial_path, read_record

__all__ = ["OutputClaim", "RunState", "claim_output", "check_output_path", "open_run"]


class BlockwiseRunError(RuntimeError):
    """A block failed while the volume was processed (unreadable input block, full disk, dead worker...)."""


@dataclass(frozen=True)
class OutputClaim:
    """The outcome of :func:`claim_output`.

    Attributes:
        final: the output path.
        partial: where the run writes (``<output>.partial``).
        resume: the partial output belongs to this input and these settings: continue it.
        complete_record: the record of a complete output with this identity (nothing to do), else ``None``.
    """

    final: Path
    partial: Path
    resume: bool = False
    complete_record: dict | None = None


@dataclass(frozen=True)
class RunState:
    """A started or resumed partial output: its intensity window, run id, blocks already written, the scaled
    background level (the input's median) that pads a stack smaller than the window, and the noise floor of the
    scaled volume that decides which windows are background (None: none skipped)."""

    window: tuple[float, float]
    run_id: str
    done: np.ndarray
    background: float = 0.0
    floor: NoiseFloor | None = None


def check_output_path(output: Path, source: VolumeSource) -> None:
    """Refuse an output that is, contains or lies inside the input, or whose folder does not exist."""
    inp = Path(source.path)
    out = output.resolve()
    if out == inp or inp in out.parents or out in inp.parents:
        raise BlockwiseOutputError(f"{output}: the output must not be the input {inp} or contain it or lie inside it.")
    if not output.parent.is_dir():
        raise BlockwiseOutputError(f"{output}: the output folder {output.parent} does not exist.")


def _identity(record: dict) -> dict:
    return {k: record.get(k) for k in ("format_version", "input", "model", "settings")}


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: recorded {a!r}, now {b!r}"]


def _why_not_ours(record: dict | None, identity: dict, not_ours: str, other: str) -> str:
    if record is None:
        return not_ours
    return other + "; ".join(_differences(_identity(record), identity)[:4])


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def claim_output(
    output: Path, identity: dict, overwrite: bool, say: Callable[[str], None], total_blocks: int
) -> OutputClaim:
    """Decide what to do with what ``output`` and ``<output>.partial`` hold now (call it under the output lock).

    Raises:
        BlockwiseOutputError: either holds something else (another input or other settings, or not our output)
            and ``overwrite`` is False.
    """
    partial = partial_path(output)
    if output.exists() or output.is_symlink():
        rec = read_record(output)
        if rec is not None and _identity(rec) == identity and rec.get("status") == "complete":
            say(f"{output} is complete for this input and these settings: all {total_blocks} blocks already written.")
            return OutputClaim(final=output, partial=partial, complete_record=rec)
        if not overwrite:
            why = _why_not_ours(
                rec,
                identity,
                "it is not a NeuroLink blockwise output",
                "it was made from another input or with other settings: ",
            )
            raise BlockwiseOutputError(
                f"{output} already exists and {why}. Refusing to touch it; pass --overwrite "
                "(overwrite=True) to replace it, or choose another output path."
            )
    if partial.exists() or partial.is_symlink():
        prec = read_record(partial)
        if prec is not None and _identity(prec) == identity and (partial / "_progress").exists():
            return OutputClaim(final=output, partial=partial, resume=True)
        if not overwrite:
            why = _why_not_ours(
                prec,
                identity,
                "is not a NeuroLink blockwise output",
                "belongs to another input or other settings: ",
            )
            raise BlockwiseOutputError(
                f"{partial} (an unfinished run's output) {why}. Pass --overwrite to discard it and start again."
            )
        say(f"removing the unfinished output {partial} (other input or settings)")
        _remove(partial)
    return OutputClaim(final=output, partial=partial)


def _sample_slab(source: VolumeSource, z0: int, z1: int, strides: tuple[int, int, int]) -> np.ndarray:
    return source[(slice(z0, z1, strides[0]), slice(None, None, strides[1]), slice(None, None, strides[2]))]


def _parallel_percentiles(client: Any, source: VolumeSource, percentiles: Sequence[float], max_samples: int) -> tuple:
    """:func:`volume_percentiles` with the subsample read by the cluster, slab by slab."""
    strides = subsample_strides(source.shape, max_samples)
    rows = source.chunks[0] if source.chunks else 16
    slab = max(strides[0], -(-max(rows, 16) // strides[0]) * strides[0])
    futures = [
        client.submit(_sample_slab, source, z, min(z + slab, source.shape[0]), strides, pure=False)
        for z in range(0, source.shape[0], slab)
    ]
    return volume_percentiles(np.concatenate(client.gather(futures), axis=0), percentiles, max_samples=2**62)


def _check_window_contrast(source: VolumeSource, window: Sequence[float], percentiles: tuple[float, float]) -> None:
    """The bundle's contrast rule (:func:`neurolink_monai.transforms.check_contrast`) on the whole-volume window:
    a constant or near-constant volume is refused before any output is created."""
    from neurolink_monai.errors import StackContentError
    from neurolink_monai.transforms.checks import check_contrast

    try:
        check_contrast(window[0], window[1], source.dtype, source.path, percentiles, option="--lower/--upper")
    except StackContentError as e:
        raise BlockwiseInputError(str(e)) from None


def _measure_window(
    settings: BlockwiseSettings, client: Any, say: Callable[[str], None]
) -> tuple[tuple[float, float], float]:
    """The intensity window (the percentiles) and the scaled background level (the median) of the whole input."""
    source, (lo_p, hi_p), max_samples = settings.source, settings.percentiles, settings.max_samples
    t0 = time.perf_counter()
    wanted = (*check_percentiles(lo_p, hi_p), 50.0)
    if client is not None and source.size > max_samples:
        low, high, median = _parallel_percentiles(client, source, wanted, max_samples)
    else:
        low, high, median = volume_percentiles(source, wanted, max_samples)
    window = (low, high)
    _check_window_contrast(source, window, (lo_p, hi_p))
    say(
        f"intensity window {window[0]:.6g} .. {window[1]:.6g} (percentiles {lo_p}, {hi_p}; "
        f"{'exact' if source.size <= max_samples else 'subsampled'}; {time.perf_counter() - t0:.1f} s)"
    )
    return (float(low), float(high)), float(scale_intensity(np.float32(median), window))


def _measure_floor(
    settings: BlockwiseSettings, window: tuple[float, float], say: Callable[[str], None]
) -> NoiseFloor | None:
    """The noise floor of the whole scaled input when background windows are skipped (one read of the volume)."""
    if settings.background_z is None:
        return None
    t0 = time.perf_counter()
    floor = streamed_background_floor(settings.source, window, settings.background_z)
    say(
        f"noise floor {floor.level:.4g} (median {floor.median:.4g}, sigma {floor.sigma:.3g}, z {floor.z:g}): windows "
        f"below it are skipped ({time.perf_counter() - t0:.1f} s)"
    )
    return floor


def open_run(claim: OutputClaim, settings: BlockwiseSettings, client: Any, say: Callable[[str], None]) -> RunState:
    """Resume the claimed partial output, or measure the intensity window and create it.

    Raises:
        BlockwiseInputError: the input cannot be read, or has no contrast between the percentiles.
        BlockwiseRunError: the output cannot be created (e.g. disk full).
    """
    partial = claim.partial
    if claim.resume:
        rec = read_record(partial) or {}
        window = tuple(float(v) for v in rec["intensity_window"])
        background = float(rec.get("background_level", 0.0))
        floor = NoiseFloor(**rec["noise_floor"]) if rec.get("noise_floor") else None
        return RunState(window, str(rec.get("run_id", "")), completed_blocks(partial), background, floor)
    window, background = _measure_window(settings, client, say)
    floor = _measure_floor(settings, window, say)
    record = {
        **settings.identity(),
        "status": "incomplete",
        "intensity_window": list(window),
        "background_level": background,
        "noise_floor": None if floor is None else dataclasses.asdict(floor),
        "run_id": uuid.uuid4().hex,
        "model_source": settings.spec.description,
        "created_by": "neurolink_monai.inference.blockwise",
    }
    try:
        create_output(partial, settings.output, record, settings.blocks.grid_shape)
    except OSError as e:
        raise BlockwiseRunError(
            f"cannot create the output {partial}: {e}"
            + (" (disk full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "")
        ) from e
    return RunState(window, record["run_id"], np.zeros(settings.blocks.grid_shape, bool), background, floor)
