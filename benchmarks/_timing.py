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
    """Peak memory of one ``fn()`` call in MB: the CUDA allocator's peak, or on CPU the peak of the torch CPU
    allocations made during the call, replayed from the profiler's record of every allocation and free (its memory
    timeline, which also holds the temporaries an operator allocates and frees inside itself). Where that record is
    unavailable (it is a private torch API) the operators' self memory usage is replayed instead, which misses those
    temporaries (a ``Conv3d(16, 16, 3)`` forward+backward at (1, 16, 32, 64, 64): 8 MB instead of 32); Python's
    tracemalloc when the profiler saw nothing."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        return torch.cuda.max_memory_allocated(device) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
        fn()
    try:
        peak = _allocation_peak(prof)
    except (ImportError, AttributeError, RuntimeError, TypeError, ValueError):
        peak = _self_usage_peak(prof)
    if peak == 0:
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 2**20


def _allocation_peak(prof) -> int:
    """Bytes: the most that the allocations made under ``prof`` held at once, from its memory timeline (each
    allocation and free in time order; tensors that existed before do not count)."""
    from torch.profiler._memory_profiler import Action

    live = peak = 0
    for _, action, _, size in sorted(prof._memory_profile().timeline, key=lambda event: event[0]):
        if action == Action.CREATE:
            live += size
        elif action == Action.DESTROY:
            live -= size
        peak = max(peak, live)
    return peak


def _self_usage_peak(prof) -> int:
    """Bytes: the peak of the operators' self memory usage replayed in time order (an operator's total usage also
    counts the allocations of the operators it calls)."""
    events = sorted(
        (e for e in prof.events() if getattr(e, "self_cpu_memory_usage", 0)), key=lambda e: e.time_range.start
    )
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak


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
