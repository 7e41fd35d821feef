# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Local signal-to-noise ratio along the centrelines of a rendered synthetic sample.

Definition (used in the README figures): at a centreline point ``p``,

    SNR(p) = (lam(p) - B(p)) / sqrt(lam(p) + read_noise^2)

where ``lam(p)`` is the noiseless expected photon count at ``p`` (trilinear interpolation of the noiseless image),
``B(p)`` the local background mean, i.e. the noiseless image without the labelled neurites at ``p`` (autofluorescence,
blobs, unlabelled fibres), and the denominator the standard deviation of the Poisson-Gaussian camera noise at that
level (the camera offset adds no noise). Points are sampled every half voxel along every parent-child segment and
weighted by the centreline length they stand for, so fractions are fractions of centreline length. Segments leaving
the soma lie inside it and are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import map_coordinates

from ...io import validate_swc
from .config import SyntheticConfig
from .geometry import sample_centreline
from .render import RenderedStack

__all__ = ["centreline_snr", "snr_summary"]


def centreline_snr(
    rendered: RenderedStack, swc: np.ndarray, config: SyntheticConfig | None = None, step: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Local SNR at points along the centrelines of ``swc`` (see the module docstring for the definition).

    Args:
        rendered: the output of :func:`~neurolink_monai.data.synthetic.render_components` for ``swc``.
        swc: the labelled ``(N, 7)`` SWC array that was rendered.
        config: the config used to render (``read_noise`` and ``spacing`` are read); defaults to ``SyntheticConfig()``.
        step: sampling step along the centreline, voxels.

    Returns:
        ``(snr, length)``: two ``(M,)`` float arrays, the SNR at each sample point and the centreline length
        (x-voxel units) it stands for.
    """
    if not isinstance(rendered, RenderedStack):
        raise TypeError(f"rendered must be a RenderedStack, got {type(rendered).__name__}.")
    swc = validate_swc(swc, "swc")
    cfg = SyntheticConfig() if config is None else config
    smp = sample_centreline(swc, cfg.spacing, step=step, skip_soma=True)
    coords = smp["zyx"].T
    signal = map_coordinates(rendered.neurite, coords, order=1, mode="nearest")
    background = map_coordinates(rendered.clutter, coords, order=1, mode="nearest")
    noise = np.sqrt(signal + background + cfg.read_noise**2)
    snr = np.divide(signal, noise, out=np.zeros_like(signal), where=noise > 0)
    return snr, smp["length"]


def snr_summary(
    snr: np.ndarray, length: np.ndarray, thresholds: Sequence[float] = (1.0, 2.0, 3.0, 5.0)
) -> dict[str, float]:
    """Length-weighted quantiles (5, 10, 25, 50, 75, 90 %) of ``snr`` and fractions of length below ``thresholds``."""
    snr, length = np.asarray(snr, dtype=np.float64), np.asarray(length, dtype=np.float64)
    if snr.shape != length.shape or snr.ndim != 1:
        raise ValueError(f"snr and length must be 1D of equal length, got {snr.shape} and {length.shape}.")
    total = length.sum()
    if total <= 0:
        raise ValueError("no centreline length to summarise (empty tree?).")
    order = np.argsort(snr)
    cum = np.cumsum(length[order]) / total
    out = {"length": float(total)}
    for q in (5, 10, 25, 50, 75, 90):
        out[f"q{q}"] = float(snr[order][min(np.searchsorted(cum, q / 100.0), len(cum) - 1)])
    for t in thresholds:
        out[f"frac_below_{t:g}"] = float(length[snr < t].sum() / total)
    return out
