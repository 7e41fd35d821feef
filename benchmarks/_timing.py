# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Timing helpers shared by the benchmark scripts: median wall time and peak memory of a callable."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable

import torch

__all__ = ["keep_freed_memory", "median_seconds", "paired_seconds", "peak_memory_mb", "with_onednn_convs"]


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs (CUDA-synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def paired_seconds(
    base: Callable[[], object], other: Callable[[], object], repeats: int = 5, warmup: int = 1
) -> tuple[float, float, float]:
    """Median wall times of ``base()`` and ``other()`` run alternately, and the median of their per-pair ratios.

    Alternating the two calls exposes both to the same machine load, so the ratio stays meaningful on a shared
    machine even when the absolute times drift.

    Returns:
        ``(base seconds, other seconds, median of other / base over the pairs)``.
    """
    for _ in range(warmup):
        base()
        other()
    pairs = []
    for _ in range(repeats):
        times = []
        for fn in (base, other):
            _synchronize()
            start = time.perf_counter()
            fn()
            _synchronize()
            times.append(time.perf_counter() - start)
        pairs.append(times)
    return (
        statistics.median(p[0] for p in pairs),
        statistics.median(p[1] for p in pairs),
        statistics.median(p[1] / p[0] for p in pairs),
    )


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak memory of one ``fn()`` call in MB: CUDA allocator peak, or on CPU the peak of the torch CPU
    allocations seen by the profiler's memory tracker (falls back to Python's tracemalloc)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        return torch.cuda.max_memory_allocated(device) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Replay allocation events in time order to find the peak of live CPU memory.
    # Self usage only: an operator's total usage also counts the allocations of the operators it calls.
    events = sorted(
        (e for e in prof.events() if getattr(e, "self_cpu_memory_usage", 0)), key=lambda e: e.time_range.start
    )
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    if peak == 0:
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


def with_onednn_convs(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with every plain ``nn.Conv3d`` turned into :class:`neurolink_monai.networks.Conv3d` in place (same
    parameters), so that a MONAI network is timed with the same CPU convolution kernels as NeuroLinkNet."""
    from neurolink_monai.networks import Conv3d

    for module in net.modules():
        if type(module) is torch.nn.Conv3d:
            module.__class__ = Conv3d
    return net


def keep_freed_memory() -> None:
    """:func:`neurolink_monai.utils.keep_freed_memory`, raising ``OSError`` where it cannot apply (the benchmark's
    figures would not mean what they say)."""
    from neurolink_monai.utils import keep_freed_memory as keep

    if not keep():
        raise OSError("mallopt refused the thresholds (glibc malloc required).")
