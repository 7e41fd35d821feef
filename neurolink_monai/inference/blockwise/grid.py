# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The global sliding-window grid of MONAI's ``SlidingWindowInferer`` and the block (chunk) grid over a volume.

Why a global grid: NeuroLinkNet normalises with InstanceNorm, so its output at any voxel depends on the whole window
it was computed in (the receptive field of a window output is the entire window). A block cut out of the volume with
a halo and run through its own sliding window would place its windows differently from an in-memory run and give
different numbers near every block border. Instead the window positions are fixed once on the whole volume, exactly
as ``monai.inferers.sliding_window_inference`` places them; each output block then evaluates the windows that
overlap it (reading their input from the volume), weights them with the same importance map, and divides by the same
weight sum. The result equals MONAI's in-memory output up to float rounding whatever the block size, and no block
sees a seam. A window that overlaps ``k`` blocks is evaluated ``k`` times; :meth:`SlidingWindowGrid.evaluations`
counts the total.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.data.utils import compute_importance_map
from monai.utils import BlendMode, PytorchPadMode

__all__ = ["SlidingWindowGrid", "BlockGrid", "overlap_from_halo"]


def _as3(value, name: str, kind=int) -> tuple:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        value = (value,) * 3
    try:
        out = tuple(value)
    except TypeError as e:
        raise TypeError(f"{name} must be a number or 3 numbers (z, y, x), got {value!r}.") from e
    if len(out) != 3 or any(
        isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) for v in out
    ):
        raise ValueError(f"{name} must be a number or 3 numbers (z, y, x), got {value!r}.")
    if kind is int:
        if any(float(v) != int(v) for v in out):
            raise ValueError(f"{name} must hold integers, got {value!r}.")
        return tuple(int(v) for v in out)
    return tuple(float(v) for v in out)


def overlap_from_halo(roi_size: Sequence[int], halo: Sequence[int] | int) -> tuple[float, float, float]:
    """MONAI overlap fractions for which neighbouring windows overlap by exactly ``halo`` voxels.

    ``SlidingWindowInferer`` steps windows by ``int(roi * (1 - overlap))``; the returned fraction makes that step
    ``roi - halo`` on every axis (guarding against float rounding), so ``SlidingWindowInferer(roi_size, overlap=...)``
    reproduces the grid.
    """
    roi = _as3(roi_size, "roi_size")
    h = _as3(halo, "halo")
    out = []
    for r, v in zip(roi, h):
        if not 0 <= v < r:
            raise ValueError(f"halo must satisfy 0 <= halo < roi_size on every axis, got halo={h} for roi_size={roi}.")
        o = v / r
        while int(r * (1 - o)) != r - v:  # the float product fell just below the integer: shrink o by one ulp
            o = float(np.nextafter(o, -1.0 if int(r * (1 - o)) < r - v else 2.0))
        out.append(o)
    return tuple(out)  # type: ignore[return-value]


@dataclass(frozen=True)
class SlidingWindowGrid:
    """Window positions of ``sliding_window_inference`` on a whole ``(D, H, W)`` volume, queried per block.

    Args mirror ``monai.inferers.SlidingWindowInferer``: ``roi_size`` (non-positive entries take the image size),
    ``overlap`` per axis in ``[0, 1)``, blending ``mode`` (``"constant"`` or ``"gaussian"``), ``sigma_scale``,
    ``padding_mode`` and ``cval`` for the padding applied when the volume is smaller than the window; ``cval=None``
    stands for the volume's background level, known once it is measured (:meth:`with_cval`).

    Window starts are given in padded coordinates (the volume is padded symmetrically to at least ``roi_size`` first,
    by ``pad_before`` voxels in front), as MONAI does.
    """

    image_shape: tuple[int, int, int]
    roi_size: tuple[int, int, int]
    overlap: tuple[float, float, float]
    mode: str = "constant"
    sigma_scale: tuple[float, float, float] = (0.125, 0.125, 0.125)
    padding_mode: str = "constant"
    cval: float | None = 0.0

    @classmethod
    def create(
        cls,
        image_shape: Sequence[int],
        roi_size: Sequence[int] | int,
        overlap: Sequence[float] | float = 0.25,
        mode: str = "constant",
        sigma_scale: Sequence[float] | float = 0.125,
        padding_mode: str = "constant",
        cval: float | None = 0.0,
    ) -> SlidingWindowGrid:
        """Validate the settings and build the grid (``roi_size`` entries <= 0 mean the whole axis)."""
        shape = _as3(image_shape, "image_shape")
        if min(shape) < 1:
            raise ValueError(f"image_shape must be positive, got {shape}.")
        roi = _as3(roi_size, "roi_size")
        roi = tuple(s if r <= 0 else r for r, s in zip(roi, shape))
        ov = _as3(overlap, "overlap", float)
        if any(not 0.0 <= o < 1.0 for o in ov):
            raise ValueError(f"overlap must be in [0, 1) on every axis, got {ov}.")
        mode = str(getattr(mode, "value", mode)).lower()
        if mode not in (BlendMode.CONSTANT.value, BlendMode.GAUSSIAN.value):
            raise ValueError(f"mode must be 'constant' or 'gaussian', got {mode!r}.")
        sig = _as3(sigma_scale, "sigma_scale", float)
        if any(not (math.isfinite(s) and s > 0) for s in sig):
            raise ValueError(f"sigma_scale must be positive, got {sig}.")
        padding_mode = str(getattr(padding_mode, "value", padding_mode)).lower()
        if padding_mode not in [m.value for m in PytorchPadMode]:
            raise ValueError(f"padding_mode must be one of {[m.value for m in PytorchPadMode]}, got {padding_mode!r}.")
        return cls(shape, roi, ov, mode, sig, padding_mode, None if cval is None else float(cval))  # type: ignore

    def with_cval(self, background: float) -> SlidingWindowGrid:
        """This grid with a ``cval=None`` resolved to ``background`` (the scaled background level of the volume)."""
        return self if self.cval is not None else dataclasses.replace(self, cval=float(background))

    @property
    def padded_shape(self) -> tuple[int, int, int]:
        return tuple(max(s, r) for s, r in zip(self.image_shape, self.roi_size))  # type: ignore[return-value]

    @property
    def pad_before(self) -> tuple[int, int, int]:
        return tuple(max(r - s, 0) // 2 for s, r in zip(self.image_shape, self.roi_size))  # type: ignore[return-value]

    @property
    def scan_interval(self) -> tuple[int, int, int]:
        """``int(roi * (1 - overlap))`` (at least 1), or ``roi`` where the window spans the whole padded axis."""
        out = []
        for n, r, o in zip(self.padded_shape, self.roi_size, self.overlap):
            out.append(r if r == n else max(int(r * (1 - o)), 1))
        return tuple(out)  # type: ignore[return-value]

    def axis_starts(self, axis: int) -> np.ndarray:
        """All window starts along ``axis`` (padded coordinates), increasing; same as ``dense_patch_slices``."""
        n, r, step = self.padded_shape[axis], self.roi_size[axis], self.scan_interval[axis]
        count = max(-(-(n - r) // step), 0) + 1  # first idx with idx * step + r >= n, plus one
        starts = np.arange(count, dtype=np.int64) * step
        return np.minimum(starts, n - r)

    @property
    def num_windows(self) -> int:
        return math.prod(len(self.axis_starts(a)) for a in range(3))

    @property
    def halo(self) -> tuple[int, int, int]:
        """Overlap between neighbouring windows in voxels: the least margin a block reads beyond its borders."""
        return tuple(max(r - s, 0) for r, s in zip(self.roi_size, self.scan_interval))  # type: ignore[return-value]

    def block_window_starts(self, start: Sequence[int], stop: Sequence[int]) -> list[np.ndarray]:
        """Per-axis starts (padded coordinates) of the windows overlapping the block ``[start, stop)``.

        ``start``/``stop`` are in volume coordinates. The windows of the block are the Cartesian product of the
        three arrays, in MONAI's order when iterated with :meth:`iter_windows`.
        """
        out = []
        for a in range(3):
            s = self.axis_starts(a)
            lo, hi = start[a] + self.pad_before[a], stop[a] + self.pad_before[a]
            out.append(s[(s < hi) & (s + self.roi_size[a] > lo)])
        return out

    @staticmethod
    def iter_windows(starts: list[np.ndarray]) -> Iterator[tuple[int, int, int]]:
        """Window starts in ``dense_patch_slices`` order (z slowest, x fastest)."""
        return (tuple(int(v) for v in w) for w in itertools.product(*starts))  # type: ignore[misc]

    def evaluations(self, blocks: BlockGrid) -> int:
        """Window evaluations needed to produce every block of ``blocks`` (windows shared by blocks count again)."""
        total = 1
        for a in range(3):
            s = self.axis_starts(a)
            edges = np.asarray(blocks.axis_edges(a)) + self.pad_before[a]
            per_block = [int(((s < hi) & (s + self.roi_size[a] > lo)).sum()) for lo, hi in zip(edges[:-1], edges[1:])]
            total *= sum(per_block)
        return total

    def importance_map(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The ``roi_size`` weight map MONAI uses for blending (float32)."""
        return compute_importance_map(
            self.roi_size, mode=self.mode, sigma_scale=self.sigma_scale, device=device, dtype=torch.float32
        )

    def describe(self) -> dict:
        return {
            "roi_size": list(self.roi_size),
            "overlap": list(self.overlap),
            "scan_interval": list(self.scan_interval),
            "mode": self.mode,
            "sigma_scale": list(self.sigma_scale),
            "padding_mode": self.padding_mode,
            "cval": self.cval,
        }


@dataclass(frozen=True)
class BlockGrid:
    """A regular grid of blocks (the unit of work and of output writing) over a ``(D, H, W)`` volume."""

    shape: tuple[int, int, int]
    chunks: tuple[int, int, int]

    @classmethod
    def create(cls, shape: Sequence[int], chunks: Sequence[int] | int) -> BlockGrid:
        """Validate ``chunks`` (positive ints, one or three) and clip them to the volume."""
        shp = _as3(shape, "shape")
        try:
            ch = _as3(chunks, "chunks")
        except (TypeError, ValueError) as e:
            raise ValueError(f"bad chunk sizes: {e}") from e
        if any(c < 1 for c in ch):
            raise ValueError(f"bad chunk sizes: chunks must be positive, got {ch}.")
        return cls(shp, tuple(min(c, s) for c, s in zip(ch, shp)))  # type: ignore[arg-type]

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return tuple(-(-s // c) for s, c in zip(self.shape, self.chunks))  # type: ignore[return-value]

    @property
    def num_blocks(self) -> int:
        return math.prod(self.grid_shape)

    def axis_edges(self, axis: int) -> list[int]:
        n, c = self.shape[axis], self.chunks[axis]
        return list(range(0, n, c)) + [n]

    def box(self, index: Sequence[int]) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``(start, stop)`` of block ``index`` in volume coordinates."""
        start = tuple(i * c for i, c in zip(index, self.chunks))
        stop = tuple(min(s + c, n) for s, c, n in zip(start, self.chunks, self.shape))
        return start, stop  # type: ignore[return-value]

    def indices(self) -> Iterator[tuple[int, int, int]]:
        return itertools.product(*(range(g) for g in self.grid_shape))  # type: ignore[return-value]
