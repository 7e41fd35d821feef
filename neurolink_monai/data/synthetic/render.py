# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Render SWC trees as a fluorescence microscope would image them: PSF blur, background, clutter, camera noise.

Image model, in expected photons per voxel ``lam``::

    lam = neurite + clutter
    neurite = PSF * (fluorophore density of the labelled tubes, brightness varying along them, weak stretches faded)
    clutter = background * (1 + background_variation * slow field) + out-of-focus blobs + PSF * (unlabelled fibres)
    image = clip(round(Poisson(lam) + offset + Normal(0, read_noise^2)), 0, 65535)  as uint16

A tube of radius ``r`` carries the fluorophore of its cross-section (``~ r^2``), so thin neurites are dimmer, as in
real stacks; ``signal`` is the peak photon count of a radius-1 neurite. Tubes are drawn by splatting dense centreline
samples (trilinear) into radius classes, each blurred by a Gaussian of the tube's cross-section second moment
(``r / 2`` per axis), then all by the PSF, which gives sub-voxel accurate Gaussian tube profiles without per-voxel
Python loops. Weak stretches (the weak signals NeuroLink is about, Yan et al., MICCAI 2024) fade the brightness
smoothly (raised-cosine ramps) to ``1 - weak_depth`` of the nominal over ``weak_fraction`` of the centreline length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from ...io import validate_swc
from ...transforms import SWCToMask
from .config import SyntheticConfig
from .geometry import sample_centreline, spacing_ratio, swc_parent_index, swc_zyx
from .morphology import check_shape
from .realism import apply_realism, camera_quantise

__all__ = ["RenderedStack", "render_components", "render_stack", "weak_stretch_window"]

_RADIUS_CLASSES = 6
_TRUNCATE = 3.0


@dataclass
class RenderedStack:
    """A rendered sample and its noiseless parts (``(D, H, W)`` arrays; photons for the float ones).

    Attributes:
        image: the camera image, uint16 (uint8 with a realism config asking for it).
        label: the label mask of ``swc``, uint8 (1 = neurite), from the project's rasteriser
            (:class:`~neurolink_monai.transforms.SWCToMask` with its defaults, i.e. radii of at least 1 voxel), so it
            equals the mask a training pipeline derives from the SWC file.
        neurite: expected photons from the labelled neurites, float32.
        clutter: expected photons from everything else (background, blobs, unlabelled fibres), float32.
        node_brightness: ``(N,)`` relative brightness of each node of ``swc`` (1 = nominal, weak stretches lower).
        node_weak: ``(N,)`` weak-stretch window of each node, 0 (normal) to 1 (fully faded).
    """

    image: np.ndarray
    label: np.ndarray
    neurite: np.ndarray
    clutter: np.ndarray
    node_brightness: np.ndarray
    node_weak: np.ndarray


def _tree_ou(swc: np.ndarray, parent: np.ndarray, seg_len: np.ndarray, rng: np.random.Generator, corr: float):
    """Standard Ornstein-Uhlenbeck values on the nodes of a tree (parents before children): smooth along paths."""
    eps = rng.standard_normal(len(swc))
    rho = np.exp(-seg_len / corr)
    innov = eps * np.sqrt(1.0 - rho**2)
    out = np.empty(len(swc))
    par, rh, inn, e = parent.tolist(), rho.tolist(), innov.tolist(), eps.tolist()
    vals = out.tolist()
    for i in range(len(swc)):
        p = par[i]
        vals[i] = e[i] if p < 0 or p >= i else rh[i] * vals[p] + inn[i]
    return np.asarray(vals)


def weak_stretch_window(
    arclength: np.ndarray, total: float, rng: np.random.Generator, fraction: float, length_range: tuple[float, float]
) -> np.ndarray:
    """Weak-stretch window (0..1) at positions ``arclength`` along a centreline of length ``total``.

    Non-overlapping stretches with lengths drawn from ``length_range`` are placed uniformly at random until they
    cover ``fraction * total`` (full width at half depth); each fades in and out over raised-cosine ramps of a
    quarter of its length (at most 8 voxels) centred on its ends.
    """
    target = fraction * total
    if target <= 0 or total <= 0:
        return np.zeros_like(arclength)
    lengths = []
    while sum(lengths) < target:
        lengths.append(rng.uniform(*length_range))
    lengths[-1] -= sum(lengths) - target
    lengths = np.asarray(lengths)
    gaps = rng.dirichlet(np.ones(len(lengths) + 1)) * (total - target)
    starts = np.cumsum(gaps[:-1]) + np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    ramp = np.minimum(0.25 * lengths, 8.0)
    s = arclength[:, None]
    # Rising edge centred on start, falling edge centred on start + length; value 0.5 at both.
    up = np.clip((s - starts + ramp / 2) / ramp, 0.0, 1.0)
    down = np.clip((starts + lengths + ramp / 2 - s) / ramp, 0.0, 1.0)
    window = 0.5 - 0.5 * np.cos(np.pi * np.minimum(up, down))
    return window.max(axis=1)


def _node_brightness(swc: np.ndarray, rng: np.random.Generator, cfg: SyntheticConfig, a: np.ndarray, weak: bool):
    """Per-node relative brightness (slow log-normal fluctuation, weak stretches) and weak window."""
    parent = swc_parent_index(swc)
    zyx = swc_zyx(swc)
    seg_len = np.where(parent >= 0, np.linalg.norm((zyx - zyx[np.maximum(parent, 0)]) * a, axis=1), 0.0)
    rng_fluct, rng_weak = rng.spawn(2)
    sigma = cfg.brightness_variation
    fluct = np.exp(sigma * _tree_ou(swc, parent, seg_len, rng_fluct, 25.0) - sigma**2 / 2)
    window = np.zeros(len(swc))
    if weak and cfg.weak_fraction > 0 and len(swc):
        neurite = swc[:, 1] != 1
        arclength = np.cumsum(np.where(neurite, seg_len, 0.0))
        window = weak_stretch_window(arclength, arclength[-1], rng_weak, cfg.weak_fraction, cfg.weak_length)
        window[~neurite] = 0.0
    return fluct * (1.0 - cfg.weak_depth * window), window


def _line_norm(cfg: SyntheticConfig, a: np.ndarray) -> float:
    """Photons per x-voxel of centreline per unit r^2 that make a radius-1 neurite along x peak at ``signal``."""
    s_z = np.hypot(cfg.psf_sigma[0], 0.5 / a[0])
    s_y = np.hypot(cfg.psf_sigma[1], 0.5 / a[1])
    return cfg.signal * 2.0 * np.pi * s_z * s_y


def _splat(vol: np.ndarray, zyx: np.ndarray, weight: np.ndarray) -> None:
    """Add ``weight`` at sub-voxel positions ``zyx`` into ``vol`` with trilinear weights (in place)."""
    base = np.floor(zyx).astype(np.int64)
    frac = zyx - base
    shape = np.asarray(vol.shape)
    flat = vol.reshape(-1)
    for corner in range(8):
        off = np.array([(corner >> 2) & 1, (corner >> 1) & 1, corner & 1])
        idx = base + off
        w = weight * np.prod(np.where(off == 1, frac, 1.0 - frac), axis=1)
        ok = np.all((idx >= 0) & (idx < shape), axis=1)
        flat += np.bincount(np.ravel_multi_index(idx[ok].T, vol.shape), w[ok], minlength=flat.size).astype(vol.dtype)


def _render_tubes(swc: np.ndarray, brightness: np.ndarray, shape, cfg: SyntheticConfig, a: np.ndarray) -> np.ndarray:
    """Pre-PSF fluorophore density of the tubes of ``swc`` (somata as soft-edged balls), float32 ``(D, H, W)``."""
    vol = np.zeros(shape, dtype=np.float32)
    if len(swc) == 0:
        return vol
    norm = _line_norm(cfg, a)
    smp = sample_centreline(swc, cfg.spacing, step=0.5, skip_soma=True)
    b = brightness[smp["parent"]] + smp["t"] * (brightness[smp["child"]] - brightness[smp["parent"]])
    weight = norm * b * smp["radius"] ** 2 * smp["length"]
    r = smp["radius"]
    if r.size:
        edges = np.geomspace(max(r.min(), 1e-3), r.max() * 1.0001 + 1e-6, _RADIUS_CLASSES + 1)
        cls = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, _RADIUS_CLASSES - 1)
        for c in np.unique(cls):
            sel = cls == c
            r_c = np.sqrt(np.mean(r[sel] ** 2))
            sigma = 0.5 * r_c / a
            # Filter only the bounding box of the class (plus the kernel reach): thick classes are compact.
            reach = np.ceil(_TRUNCATE * sigma).astype(int) + 2
            lo = np.maximum(np.floor(smp["zyx"][sel].min(axis=0)).astype(int) - reach, 0)
            hi = np.minimum(np.ceil(smp["zyx"][sel].max(axis=0)).astype(int) + reach + 1, shape)
            box = tuple(slice(l, h) for l, h in zip(lo, hi))
            part = np.zeros(tuple(hi - lo), dtype=np.float32)
            _splat(part, smp["zyx"][sel] - lo, weight[sel])
            vol[box] += gaussian_filter(part, sigma=tuple(sigma), truncate=_TRUNCATE, mode="constant")
    # Somata: uniform density of the same fluorophore concentration as the tubes, soft 1-voxel edge.
    density = norm / np.pi * float(np.prod(a))
    zyx = swc_zyx(swc)
    for i in np.flatnonzero(swc[:, 1] == 1):
        r = swc[i, 5]
        lo = np.maximum(np.floor(zyx[i] - (r + 1) / a).astype(int), 0)
        hi = np.minimum(np.ceil(zyx[i] + (r + 1) / a).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        grids = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        dist = np.sqrt(sum(((g - c) * ak) ** 2 for g, c, ak in zip(grids, zyx[i], a)))
        vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += (
            density * brightness[i] * np.clip(r + 0.5 - dist, 0.0, 1.0)
        ).astype(np.float32)
    return vol


def _background(shape, rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """Flat autofluorescence modulated by three random plane waves with wavelengths of 1-3 volume sizes."""
    field = np.zeros(shape, dtype=np.float32)
    grids = np.ogrid[: shape[0], : shape[1], : shape[2]]
    amps = rng.uniform(0.5, 1.0, 3)
    for amp in amps:
        direction = rng.standard_normal(3)
        direction /= np.linalg.norm(direction)
        k = 2.0 * np.pi / (rng.uniform(1.0, 3.0) * max(shape)) * direction
        phase = rng.uniform(0.0, 2.0 * np.pi)
        wave = sum((g * kk).astype(np.float32) for g, kk in zip(grids, k)) + np.float32(phase)
        field += np.float32(amp) * np.cos(wave)
    field /= np.float32(amps.sum())
    return np.float32(cfg.background) * (1.0 + np.float32(cfg.background_variation) * field)


def _blobs(shape, rng: np.random.Generator, cfg: SyntheticConfig, a: np.ndarray) -> np.ndarray:
    """Bright out-of-focus blobs: anisotropic Gaussians, axially elongated, PSF included."""
    out = np.zeros(shape, dtype=np.float32)
    count = int(rng.poisson(cfg.num_blobs))
    for _ in range(count):
        centre = rng.uniform(-0.05, 1.05, 3) * (np.asarray(shape) - 1)
        sig_lat = rng.uniform(*cfg.blob_sigma)
        sigma = np.sqrt((np.array([2.5, 1.0, 1.0]) * sig_lat / a) ** 2 + np.asarray(cfg.psf_sigma) ** 2)
        peak = rng.uniform(*cfg.blob_intensity) * cfg.signal
        lo = np.maximum(np.floor(centre - 3 * sigma).astype(int), 0)
        hi = np.minimum(np.ceil(centre + 3 * sigma).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        g = [np.exp(-0.5 * ((np.arange(l, h) - c) / s) ** 2) for l, h, c, s in zip(lo, hi, centre, sigma)]
        out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += (peak * g[0][:, None, None] * g[1][None, :, None]) * g[2][
            None, None, :
        ].astype(np.float32)
    return out


def render_components(
    swc: np.ndarray,
    shape: Sequence[int],
    rng: np.random.Generator,
    config: SyntheticConfig | None = None,
    clutter_swc: np.ndarray | None = None,
) -> RenderedStack:
    """Render the labelled trees ``swc`` (plus unlabelled ``clutter_swc``) into a noisy uint16 stack.

    Args:
        swc: ``(N, 7)`` SWC array in voxel units of the neurites to label (the neuron, possibly crossing fibres).
        shape: volume shape ``(D, H, W)``.
        rng: random generator; it is split into independent streams (brightness, background, blobs, noise), so
            changing one knob leaves the draws of the others unchanged.
        config: rendering knobs (``psf_sigma``, ``signal``, ``background*``, ``offset``, ``read_noise``, ``weak_*``,
            ``*blob*``, ``spacing``); defaults to ``SyntheticConfig()``.
        clutter_swc: trees rendered like neurites but left out of the label (e.g. unlabelled crossing fibres).

    Returns:
        :class:`RenderedStack` with the image, the label mask and the noiseless parts.
    """
    shape = check_shape(shape)
    swc = validate_swc(swc, "swc")
    clutter_swc = np.zeros((0, 7)) if clutter_swc is None else validate_swc(clutter_swc, "clutter_swc")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}.")
    cfg = SyntheticConfig() if config is None else config
    a = spacing_ratio(cfg.spacing)
    rng_bright, rng_clutter_bright, rng_bg, rng_blobs, rng_noise = rng.spawn(5)

    brightness, window = _node_brightness(swc, rng_bright, cfg, a, weak=True)
    neurite = gaussian_filter(_render_tubes(swc, brightness, shape, cfg, a), cfg.psf_sigma, truncate=_TRUNCATE)
    np.maximum(neurite, 0.0, out=neurite)

    background = _background(shape, rng_bg, cfg)
    clutter = background + _blobs(shape, rng_blobs, cfg, a)
    if len(clutter_swc):
        cb, _ = _node_brightness(clutter_swc, rng_clutter_bright, cfg, a, weak=False)
        fibres = gaussian_filter(_render_tubes(clutter_swc, cb, shape, cfg, a), cfg.psf_sigma, truncate=_TRUNCATE)
        clutter += np.maximum(fibres, 0.0)
    if cfg.realism is not None:  # its own streams, drawn only when it is on: the default output is unchanged
        rng_real, rng_camera = rng.spawn(2)
        neurite, clutter = apply_realism(neurite, clutter, background, swc, brightness, rng_real, cfg, cfg.realism, a)

    lam = neurite + clutter
    counts = rng_noise.poisson(lam).astype(np.float32)
    counts += np.float32(cfg.offset)
    if cfg.read_noise > 0:
        counts += np.float32(cfg.read_noise) * rng_noise.standard_normal(shape, dtype=np.float32)
    if cfg.realism is not None:
        image = camera_quantise(counts, rng_camera, cfg, cfg.realism)
    else:
        image = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    label = SWCToMask(shape, cfg.spacing)(swc, source="synthetic SWC")[0]
    return RenderedStack(image, label, neurite, clutter, brightness, window)


def render_stack(
    swc: np.ndarray,
    shape: Sequence[int],
    rng: np.random.Generator,
    config: SyntheticConfig | None = None,
    clutter_swc: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render ``swc`` into ``(image uint16 (D, H, W), label uint8 (D, H, W))``; see :func:`render_components`."""
    out = render_components(swc, shape, rng, config, clutter_swc)
    return out.image, out.label
