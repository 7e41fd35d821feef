# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The classical reference tracer: no model, only the image.

Smooth the stack (anisotropic Gaussian), threshold it at the higher of Otsu's threshold and a noise-based one
(median + ``noise_k`` robust standard deviations, so that a stack made almost entirely of background is not cut
inside its noise), drop small connected components, and trace the result with the project's own tracer. It is the
no-model option for users and the reference row of every results table: a learned tracer has to beat it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from ..utils import as_float_in_range, as_positive_int, as_spacing
from .trace import TraceConfig, trace_with_config

__all__ = ["ClassicalConfig", "classical_threshold", "classical_probability", "trace_classical", "CLASSICAL_TRACE"]

# the tracer's keywords for the classical reference: pieces of at least 20 voxels, main-tree linking, at most 3 trees
CLASSICAL_TRACE: dict[str, Any] = {"min_component_length": 20.0, "link_cost": 30.0, "max_trees": 3}

# half a robust standard deviation: the relative spread below which a stack is treated as constant
_MIN_RELATIVE_RANGE = 1e-3


@dataclass(frozen=True)
class ClassicalConfig:
    """Parameters of the classical reference.

    Attributes:
        sigma: Gaussian smoothing in in-plane voxels (the z sigma is scaled by the anisotropy).
        noise_k: the noise-based threshold is the median plus this many robust standard deviations (1.4826 MAD).
        min_component_voxels: connected foreground components smaller than this are removed.
    """

    sigma: float = 1.0
    noise_k: float = 6.0
    min_component_voxels: int = 200

    def __post_init__(self) -> None:
        for name in ("sigma", "noise_k"):
            as_float_in_range(getattr(self, name), name, 0.0)
        as_positive_int(self.min_component_voxels, "min_component_voxels", allow_zero=True)


def _smooth(image: np.ndarray, spacing: Sequence[float] | None, sigma: float) -> np.ndarray:
    x = np.asarray(image, dtype=np.float32)
    if sigma == 0:
        return x
    sz, sy, sx = (1.0, 1.0, 1.0) if spacing is None else as_spacing(spacing, "spacing")
    return ndi.gaussian_filter(x, (sigma * sx / sz, sigma * sx / sy, sigma))


def classical_threshold(smoothed: np.ndarray, noise_k: float = ClassicalConfig.noise_k) -> float:
    """``max(Otsu, median + noise_k * 1.4826 * MAD)`` of a smoothed stack.

    Raises:
        ValueError: the stack is (nearly) constant, so no threshold separates anything.
    """
    lo, hi = float(smoothed.min()), float(smoothed.max())
    if not hi - lo > _MIN_RELATIVE_RANGE * max(abs(hi), 1.0):
        raise ValueError(f"the stack is constant (values {lo:.4g}..{hi:.4g}); there is nothing to trace.")
    median = float(np.median(smoothed))
    mad = 1.4826 * float(np.median(np.abs(smoothed - median)))
    return max(float(threshold_otsu(smoothed)), median + noise_k * mad)


def classical_probability(
    image: Any, spacing: Sequence[float] | None = None, config: ClassicalConfig | None = None
) -> np.ndarray:
    """A probability-like map from the image alone: 0.5 at the classical threshold.

    The smoothed stack divided by twice the threshold and clipped to [0, 1], so ``>= 0.5`` is the thresholded
    foreground and the faint signal below it keeps a graded value the tracer's gap bridging can follow. Voxels of
    foreground components smaller than ``min_component_voxels`` are lowered just below 0.5.

    Args:
        image: (D, H, W) stack, any real dtype.
        spacing: voxel size (z, y, x) for the anisotropic smoothing; None: isotropic.
        config: :class:`ClassicalConfig` (defaults when None).

    Returns:
        (D, H, W) float32 in [0, 1].
    """
    cfg = ClassicalConfig() if config is None else config
    image = np.asarray(image)
    if image.ndim != 3 or min(image.shape) < 1:
        raise ValueError(f"expected a 3D stack (D, H, W), got shape {image.shape}.")
    smoothed = _smooth(image, spacing, cfg.sigma)
    threshold = classical_threshold(smoothed, cfg.noise_k)
    prob = np.clip(smoothed / np.float32(2.0 * threshold), 0.0, 1.0) if threshold > 0 else (smoothed > 0) * 1.0
    prob = prob.astype(np.float32)
    fg = prob >= 0.5
    labels, n = ndi.label(fg, structure=np.ones((3, 3, 3), dtype=bool))
    if n:
        small = np.bincount(labels.ravel()) < cfg.min_component_voxels
        small[0] = False
        prob[small[labels]] = np.minimum(prob[small[labels]], np.float32(0.49))
    return prob


def trace_classical(
    image: Any,
    spacing: Sequence[float] | None = None,
    root: Sequence[float] | None = None,
    config: ClassicalConfig | None = None,
    trace_config: TraceConfig | None = None,
    soma_in_view: bool = True,
) -> np.ndarray:
    """Trace a stack without a model: :func:`classical_probability`, then the project's tracer.

    Args:
        image: (D, H, W) stack.
        spacing: voxel size (z, y, x).
        root: optional root point, SWC ``(x, y, z)`` voxels.
        config: the smoothing and threshold parameters.
        trace_config: the tracer's parameters; default: :data:`CLASSICAL_TRACE` (threshold 0.5, pieces of at least
            20 voxels, main-tree linking with ``link_cost`` 30, at most 3 trees) and ``soma_in_view``.
        soma_in_view: with the default ``trace_config``, False for stacks whose somata lie outside the view (see
            :class:`~neurolink_monai.tracing.TraceConfig`).

    Returns:
        (N, 7) SWC array in voxel units, the main tree first.
    """
    if trace_config is None:
        trace_config = TraceConfig.from_keywords(**CLASSICAL_TRACE, soma_in_view=soma_in_view)
    prob = classical_probability(image, spacing, config)
    return trace_with_config(
        prob, root=root, spacing=spacing, config=trace_config, names=("image", "", ""), image=image
    )
