# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""MONAI transforms that trace an SWC from a probability map, for the inference post-processing chain."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform
from monai.utils import ensure_tuple

from ..io import metatensor_spacing
from ..utils import describe_source
from .trace import TraceConfig, check_spacing, trace_with_config

__all__ = ["TraceSWC", "TraceSWCd"]


def _source(img: Any, fallback: str) -> str:
    """``"fallback (file)"`` for a MetaTensor loaded from a file (for error messages), else ``fallback``."""
    return describe_source(img, fallback, with_fallback=True)


class TraceSWC(Transform):
    """Trace a channel-first probability map ``(1, D, H, W)`` into an SWC array (see
    :func:`~neurolink_monai.tracing.trace_swc`), optionally guided by NeuroLink's direction ``(3, D, H, W)`` and
    distance ``(1, D, H, W)`` outputs (Yan et al., MICCAI 2024).

    Args:
        threshold: foreground threshold in (0, 1].
        root: optional root in SWC ``(x, y, z)`` voxel coordinates.
        spacing: voxel size ``(z, y, x)``; None takes it from a MetaTensor input's affine when there is one.
        physical_units: return physical coordinates (needs a spacing from the argument or the affine).
        kwargs: further flat tracing keywords of :func:`~neurolink_monai.tracing.trace_swc` (``max_gap``,
            ``min_spur_length``, ``link_cost``...; see :meth:`~neurolink_monai.tracing.TraceConfig.from_keywords`).

    Returns (from ``__call__``):
        ``(N, 7)`` float64 SWC array (voxel units unless ``physical_units``), parents before children.
    """

    def __init__(
        self,
        threshold: float = TraceConfig.threshold,
        root: Sequence[float] | None = None,
        spacing: Sequence[float] | None = None,
        physical_units: bool = False,
        **kwargs: Any,
    ) -> None:
        self.config = TraceConfig.from_keywords(threshold=threshold, **kwargs)
        self.root = None if root is None else tuple(float(v) for v in root)
        self.spacing = None if spacing is None else check_spacing(spacing)
        self.physical_units = bool(physical_units)

    def _spacing(self, img: Any) -> tuple[float, float, float] | None:
        if self.spacing is not None:
            return self.spacing
        try:
            return metatensor_spacing(img)
        except ValueError:
            return None

    def __call__(
        self,
        prob: Any,
        direction: Any | None = None,
        distance: Any | None = None,
        root: Sequence[float] | None = None,
        image: Any | None = None,
    ) -> np.ndarray:
        """Trace ``prob`` (``(1, D, H, W)`` or ``(D, H, W)``); ``root`` overrides the constructor's root; ``image``
        (``(C, D, H, W)`` or ``(D, H, W)``, the stack ``prob`` came from) enables the ``min_contrast`` check."""
        spacing = self._spacing(prob)
        if self.physical_units and spacing is None:
            raise ValueError(
                f"{_source(prob, 'prob')}: physical_units=True but no spacing: pass spacing=(sz, sy, sx) or a "
                "MetaTensor with an affine."
            )
        return trace_with_config(
            prob,
            direction,
            distance,
            root=self.root if root is None else root,
            spacing=spacing,
            physical_units=self.physical_units,
            config=self.config,
            names=(_source(prob, "prob"), _source(direction, "direction"), _source(distance, "distance")),
            image=image,
        )


class TraceSWCd(MapTransform):
    """Dictionary version of :class:`TraceSWC`: traces ``data[key]`` and stores the SWC array under ``output_key``.

    Args:
        keys: key(s) of channel-first ``(1, D, H, W)`` probability maps (e.g. ``"pred"`` after a sigmoid).
        direction_key: optional key of the ``(3, D, H, W)`` direction map (components z, y, x).
        distance_key: optional key of the ``(1, D, H, W)`` distance map.
        output_key: key(s) for the SWC arrays, one per key in ``keys``.
        root_key: optional key holding a per-sample root ``(x, y, z)``; overrides ``root``.
        image_key: optional key of the image the probability was predicted from (same grid), for the
            ``min_contrast`` check of :class:`~neurolink_monai.tracing.TraceConfig`.
        allow_missing_keys: skip missing ``keys`` (and treat missing direction / distance / root keys as absent)
            instead of raising ``KeyError``.
        threshold, root, spacing, physical_units, kwargs: as in :class:`TraceSWC`.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        direction_key: Hashable | None = None,
        distance_key: Hashable | None = None,
        output_key: Hashable | Sequence[Hashable] = "swc",
        root_key: Hashable | None = None,
        image_key: Hashable | None = None,
        threshold: float = TraceConfig.threshold,
        root: Sequence[float] | None = None,
        spacing: Sequence[float] | None = None,
        physical_units: bool = False,
        allow_missing_keys: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.tracer = TraceSWC(threshold=threshold, root=root, spacing=spacing, physical_units=physical_units, **kwargs)
        self.direction_key = direction_key
        self.distance_key = distance_key
        self.root_key = root_key
        self.image_key = image_key
        out = ensure_tuple(output_key)
        if len(out) != len(self.keys):
            raise ValueError(
                f"output_key must give one key per input key: {len(self.keys)} keys {list(self.keys)} but "
                f"output_key={output_key!r}."
            )
        self.output_keys = out

    def _optional(self, d: Mapping, key: Hashable | None) -> Any:
        if key is None:
            return None
        if key not in d:
            if self.allow_missing_keys:
                return None
            raise KeyError(f"Key `{key}` of transform `{type(self).__name__}` was missing in the data.")
        return d[key]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        direction = self._optional(d, self.direction_key)
        distance = self._optional(d, self.distance_key)
        root = self._optional(d, self.root_key)
        image = self._optional(d, self.image_key)
        for key, out_key in self.key_iterator(d, self.output_keys):
            d[out_key] = self.tracer(d[key], direction, distance, root=root, image=image)
        return d
