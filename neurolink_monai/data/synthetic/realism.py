# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""What real confocal stacks hold beyond a clean neurite, as an opt-in layer of the synthetic renderer.

:class:`RealismConfig` (``SyntheticConfig(realism="confocal")``, CLI ``--realism confocal``) adds, per sample:

- optics: a random PSF (lateral and axial width) and a random axial voxel size (anisotropy); uneven illumination
  (a smooth lateral field) and attenuation with depth (``exp(-k z / D)``), applied to all light;
- on the neurite (labelled as the tube the SWC describes): varicosities (beads) and terminal boutons;
- off the neurite, labelled background: puncta (small bright dots), a fine speckle texture of the neuropil-like
  background, out-of-focus cell bodies (large soft balls blurred axially), autofluorescent blobs (very bright clumps
  that saturate), and haze (light of the neurites scattered into a wide halo);
- camera: a random signal level (down to the noise floor), a random gain that saturates the brightest structures,
  a black level that clips most of the background to zero, and uint8 quantisation (or uint16).

The default (``realism=None``) renders exactly what it rendered before: every draw of this layer comes from its own
random streams, used only when it is on. Defaults of the ``"confocal"`` preset are tuned to the DIADEM OP stacks
(``python benchmarks/synthetic_realism.py`` prints real vs synthetic statistics).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from .geometry import sample_centreline, swc_parent_index, swc_zyx

__all__ = ["REALISM_PRESETS", "RealismConfig", "realism_from_value"]


def _pair(name: str, value: Any, low: float, high: float = math.inf) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"realism knob {name} must be a (min, max) pair, got {value!r}.") from None
    if not (math.isfinite(a) and math.isfinite(b) and low <= a <= b <= high):
        raise ValueError(f"realism knob {name} must satisfy {low} <= min <= max <= {high}, got {value!r}.")
    return a, b


def _scalar(name: str, value: Any, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"realism knob {name} must be a number, got {value!r}.")
    if not (math.isfinite(float(value)) and low <= float(value) <= high):
        raise ValueError(f"realism knob {name} must lie in [{low}, {high}], got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class RealismConfig:
    """Knobs of the realism layer; ``(min, max)`` ranges are drawn per sample (uniformly, log-uniformly for scales).

    Intensities are multiples of the sample's ``signal`` (peak photons of a radius-1 neurite); lengths are voxels of
    the x axis; densities are per voxel (puncta) or per x-voxel of neurite length (varicosities).

    Attributes:
        name: preset name, recorded in manifests.
        signal_scale: log-uniform range of the factor on ``SyntheticConfig.signal`` (low values reach the noise floor).
        radius_scale: range of the factor on ``SyntheticConfig.radius`` (neurite thickness, per sample).
        psf_lateral, psf_axial: ranges of the PSF standard deviation (voxels) in y/x and in z.
        axial_ratio: range of the z voxel size over the x voxel size (anisotropy); the sample's spacing becomes
            ``(ratio * x, y, x)``. ``None`` keeps ``SyntheticConfig.spacing``.
        varicosity_rate: beads per x-voxel of neurite length.
        varicosity_scale: range of the bead radius over the local neurite radius.
        varicosity_brightness: range of the bead density over the neurite's (beads are brighter than the tube).
        bouton_probability: chance that a terminal tip carries a bouton (a bead of 2-3 times its radius).
        puncta_density: puncta per voxel of the volume; ``puncta_sigma`` their size, ``puncta_intensity`` peak.
        speckle: relative standard deviation of the fine multiplicative texture of the background.
        speckle_sigma: its grain (voxels).
        num_cell_bodies: mean number (Poisson) of out-of-focus cell bodies; ``cell_body_radius``,
            ``cell_body_intensity`` (peak) and ``cell_body_blur`` (extra axial blur, voxels) shape them.
        num_autofluorescent: mean number (Poisson) of autofluorescent clumps (3-6 small Gaussians each);
            ``autofluorescent_intensity`` their peak.
        haze: fraction of the neurite light scattered into a halo of standard deviation ``haze_sigma`` voxels.
        illumination: relative depth of the lateral illumination fall-off (0 = flat).
        depth_attenuation: range of ``k`` in the attenuation ``exp(-k z / D)`` with depth.
        full_scale: range of the image level, as a multiple of the sample's nominal signal peak (plus background),
            mapped to the top of the output range; below 1 the bright neurites saturate.
        black_level: range of ``k`` in the black level ``offset + background + k * noise std of the background``
            subtracted before quantisation, which clips most of the background to 0 as in the DIADEM stacks.
        output_dtype: ``"uint8"`` or ``"uint16"``.
    """

    name: str = "custom"
    signal_scale: tuple[float, float] = (0.2, 10.0)
    radius_scale: tuple[float, float] = (1.0, 2.0)
    psf_lateral: tuple[float, float] = (0.6, 1.3)
    psf_axial: tuple[float, float] = (0.8, 2.0)
    axial_ratio: tuple[float, float] | None = (1.5, 3.5)
    varicosity_rate: float = 0.05
    varicosity_scale: tuple[float, float] = (1.3, 2.2)
    varicosity_brightness: tuple[float, float] = (1.0, 2.0)
    bouton_probability: float = 0.5
    puncta_density: float = 1e-4
    puncta_sigma: tuple[float, float] = (0.5, 1.0)
    puncta_intensity: tuple[float, float] = (0.05, 0.4)
    speckle: float = 0.4
    speckle_sigma: float = 1.0
    num_cell_bodies: float = 0.7
    cell_body_radius: tuple[float, float] = (4.0, 9.0)
    cell_body_intensity: tuple[float, float] = (0.1, 0.6)
    cell_body_blur: float = 3.0
    num_autofluorescent: float = 0.7
    autofluorescent_intensity: tuple[float, float] = (1.0, 4.0)
    haze: float = 0.1
    haze_sigma: float = 6.0
    illumination: float = 0.4
    depth_attenuation: tuple[float, float] = (0.0, 1.2)
    full_scale: tuple[float, float] = (1.0, 3.0)
    black_level: tuple[float, float] = (1.5, 3.5)
    output_dtype: str = "uint8"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        pairs = {
            "signal_scale": (1e-3, 100.0),
            "radius_scale": (0.05, 20.0),
            "psf_lateral": (0.0, 20.0),
            "psf_axial": (0.0, 20.0),
            "varicosity_scale": (1.0, 10.0),
            "varicosity_brightness": (0.0, 100.0),
            "puncta_sigma": (0.1, 20.0),
            "puncta_intensity": (0.0, 100.0),
            "cell_body_radius": (0.5, 100.0),
            "cell_body_intensity": (0.0, 100.0),
            "autofluorescent_intensity": (0.0, 100.0),
            "depth_attenuation": (0.0, 20.0),
            "full_scale": (1e-3, 1e3),
            "black_level": (0.0, 100.0),
        }
        for name, (low, high) in pairs.items():
            set_(self, name, _pair(name, getattr(self, name), low, high))
        if self.axial_ratio is not None:
            set_(self, "axial_ratio", _pair("axial_ratio", self.axial_ratio, 0.1, 20.0))
        scalars = {
            "varicosity_rate": (0.0, 1.0),
            "bouton_probability": (0.0, 1.0),
            "puncta_density": (0.0, 0.1),
            "speckle": (0.0, 5.0),
            "speckle_sigma": (0.0, 20.0),
            "num_cell_bodies": (0.0, 100.0),
            "cell_body_blur": (0.0, 50.0),
            "num_autofluorescent": (0.0, 100.0),
            "haze": (0.0, 10.0),
            "haze_sigma": (0.1, 100.0),
            "illumination": (0.0, 0.95),
        }
        for name, (low, high) in scalars.items():
            set_(self, name, _scalar(name, getattr(self, name), low, high))
        if self.output_dtype not in ("uint8", "uint16"):
            raise ValueError(f"realism knob output_dtype must be 'uint8' or 'uint16', got {self.output_dtype!r}.")
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"realism knob name must be a non-empty str, got {self.name!r}.")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RealismConfig:
        """The named preset (``"confocal"``) with ``overrides``."""
        if name not in REALISM_PRESETS:
            raise ValueError(f"unknown realism preset {name!r}; choose one of {sorted(REALISM_PRESETS)} or 'none'.")
        return cls(**{**REALISM_PRESETS[name], "name": name, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RealismConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown realism knobs {unknown}; known knobs: {sorted(known)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# The "confocal" preset: the class defaults, tuned to the DIADEM OP stacks (see the module docstring).
REALISM_PRESETS: dict[str, dict[str, Any]] = {"confocal": {}}


def realism_from_value(value: Any) -> RealismConfig | None:
    """``None``/``"none"`` -> None; a preset name -> that preset; a mapping -> :meth:`RealismConfig.from_dict`
    (a ``"name"`` key naming a preset starts from that preset); a :class:`RealismConfig` as it is."""
    if value is None or value == "none":
        return None
    if isinstance(value, RealismConfig):
        return value
    if isinstance(value, str):
        return RealismConfig.preset(value)
    if isinstance(value, Mapping):
        name = value.get("name")
        base = REALISM_PRESETS.get(name, {}) if isinstance(name, str) else {}
        return RealismConfig.from_dict({**base, **value})
    raise TypeError(
        f"realism must be None, 'none', a preset name, a mapping of knobs or a RealismConfig, got {value!r}."
    )


def _log_uniform(rng: np.random.Generator, pair: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(pair[0]), np.log(pair[1])))) if pair[0] > 0 else float(rng.uniform(*pair))


def sample_optics(rng: np.random.Generator, real: RealismConfig, cfg) -> dict[str, Any]:
    """Per-sample overrides of the ``SyntheticConfig`` knobs ``spacing``, ``psf_sigma``, ``signal`` and ``radius``."""
    lateral = float(rng.uniform(*real.psf_lateral))
    axial = float(rng.uniform(*real.psf_axial))
    out = {"psf_sigma": (axial, lateral, lateral), "signal": cfg.signal * _log_uniform(rng, real.signal_scale)}
    if real.axial_ratio is not None:
        ratio = float(rng.uniform(*real.axial_ratio))
        out["spacing"] = (round(ratio * cfg.spacing[2], 6), cfg.spacing[1], cfg.spacing[2])
    scale = float(rng.uniform(*real.radius_scale))
    out["radius"] = (min(cfg.radius[0] * scale, 20.0), min(cfg.radius[1] * scale, 20.0))
    return out


def _gaussian_blob(out: np.ndarray, centre, sigma, peak: float) -> None:
    """Add an axis-aligned Gaussian of standard deviations ``sigma`` (z, y, x) at ``centre`` into ``out``."""
    shape = np.asarray(out.shape)
    centre, sigma = np.asarray(centre, float), np.maximum(np.asarray(sigma, float), 1e-3)
    lo = np.maximum(np.floor(centre - 3 * sigma).astype(int), 0)
    hi = np.minimum(np.ceil(centre + 3 * sigma).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return
    g = [np.exp(-0.5 * ((np.arange(l, h) - c) / s) ** 2) for l, h, c, s in zip(lo, hi, centre, sigma)]
    out[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] += (peak * g[0][:, None, None] * g[1][None, :, None]) * g[2][
        None, None, :
    ].astype(np.float32)


def _psf(sigma, a, psf) -> np.ndarray:
    """Per-axis std of a lateral-``sigma`` object (x-voxel units) seen through the PSF, in voxels."""
    return np.sqrt((np.asarray(sigma, float) / a) ** 2 + np.asarray(psf, float) ** 2)


def _beads(swc: np.ndarray, brightness: np.ndarray, shape, rng: np.random.Generator, cfg, real, a) -> np.ndarray:
    """Varicosities along the neurites and boutons at their tips (PSF included), photons."""
    out = np.zeros(shape, dtype=np.float32)
    if len(swc) < 2:
        return out
    smp = sample_centreline(swc, cfg.spacing, step=0.5, skip_soma=True)
    total = float(smp["length"].sum())
    count = int(rng.poisson(real.varicosity_rate * total)) if total > 0 else 0
    picks = rng.choice(len(smp["length"]), size=count, p=smp["length"] / total) if count else np.zeros(0, int)
    centres = [smp["zyx"][i] for i in picks]
    radii = [smp["radius"][i] * rng.uniform(*real.varicosity_scale) for i in picks]
    bright = [
        brightness[smp["parent"][i]] * rng.uniform(*real.varicosity_brightness) for i in picks
    ]  # beads follow the local brightness (weak stretches stay weak)
    parent = swc_parent_index(swc)
    has_child = np.zeros(len(swc), bool)
    has_child[parent[parent >= 0]] = True
    for i in np.flatnonzero(~has_child & (parent >= 0) & (swc[:, 1] != 1)):
        if rng.uniform() < real.bouton_probability:
            centres.append(swc_zyx(swc)[i])
            radii.append(max(swc[i, 5], 0.75) * rng.uniform(2.0, 3.0))
            bright.append(brightness[i] * rng.uniform(*real.varicosity_brightness))
    for c, r, b in zip(centres, radii, bright):
        sigma = _psf(np.full(3, 0.5 * r), a, cfg.psf_sigma)
        _gaussian_blob(out, c, sigma, cfg.signal * b * min(max(r, 0.5), 3.0) ** 0.5)
    return out


def _off_neurite(shape, rng: np.random.Generator, cfg, real, a, background: np.ndarray) -> np.ndarray:
    """Labelled-background light: speckled neuropil texture, puncta, out-of-focus cell bodies, autofluorescence."""
    rng_speckle, rng_puncta, rng_cells, rng_auto = rng.spawn(4)
    out = np.zeros(shape, dtype=np.float32)
    if real.speckle > 0:
        grain = gaussian_filter(rng_speckle.standard_normal(shape, dtype=np.float32), real.speckle_sigma / a)
        grain /= max(float(grain.std()), 1e-6)
        out += background * (np.exp(real.speckle * grain - real.speckle**2 / 2) - 1.0)
    n_puncta = int(rng_puncta.poisson(real.puncta_density * float(np.prod(shape))))
    if n_puncta:
        pts = np.zeros(shape, dtype=np.float32)
        idx = tuple(rng_puncta.integers(0, s, n_puncta) for s in shape)
        sigma = _psf(np.full(3, rng_puncta.uniform(*real.puncta_sigma)), a, cfg.psf_sigma)
        peaks = cfg.signal * rng_puncta.uniform(*real.puncta_intensity, n_puncta)
        np.add.at(pts, idx, (peaks * (2 * np.pi) ** 1.5 * np.prod(sigma)).astype(np.float32))
        out += gaussian_filter(pts, sigma, truncate=3.0)
    for _ in range(int(rng_cells.poisson(real.num_cell_bodies))):
        centre = rng_cells.uniform(-0.1, 1.1, 3) * (np.asarray(shape) - 1)
        radius = rng_cells.uniform(*real.cell_body_radius)
        sigma = _psf(np.full(3, 0.6 * radius), a, cfg.psf_sigma)
        sigma[0] = math.hypot(sigma[0], real.cell_body_blur)
        _gaussian_blob(out, centre, sigma, cfg.signal * rng_cells.uniform(*real.cell_body_intensity))
    for _ in range(int(rng_auto.poisson(real.num_autofluorescent))):
        centre = rng_auto.uniform(0.0, 1.0, 3) * (np.asarray(shape) - 1)
        peak = cfg.signal * rng_auto.uniform(*real.autofluorescent_intensity)
        for _ in range(int(rng_auto.integers(3, 7))):
            offset = rng_auto.normal(0.0, 2.0, 3) / a
            sigma = _psf(np.full(3, rng_auto.uniform(0.8, 2.0)), a, cfg.psf_sigma)
            _gaussian_blob(out, centre + offset, sigma, peak * rng_auto.uniform(0.5, 1.0))
    return out


def _light_field(shape, rng: np.random.Generator, real) -> np.ndarray:
    """Uneven lateral illumination (radial fall-off from a random centre) times attenuation with depth."""
    d, h, w = shape
    cy, cx = rng.uniform(0.2, 0.8) * (h - 1), rng.uniform(0.2, 0.8) * (w - 1)
    reach = max(h, w)
    y, x = np.ogrid[:h, :w]
    lateral = 1.0 - real.illumination * np.clip(((y - cy) ** 2 + (x - cx) ** 2) / reach**2, 0.0, 1.0)
    k = rng.uniform(*real.depth_attenuation)
    depth = np.exp(-k * np.arange(d) / max(d - 1, 1))
    return (depth[:, None, None] * lateral[None]).astype(np.float32)


def apply_realism(
    neurite: np.ndarray,
    clutter: np.ndarray,
    background: np.ndarray,
    swc: np.ndarray,
    brightness: np.ndarray,
    rng: np.random.Generator,
    cfg,
    real: RealismConfig,
    a: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The realism layer on the noiseless parts (photons, ``(D, H, W)``): returns new ``(neurite, clutter)``.

    ``neurite`` (labelled light) gains varicosities and boutons; ``clutter`` (labelled background) gains the
    off-neurite artefacts and the haze of the neurites; both are multiplied by the illumination and depth field.
    """
    rng_beads, rng_off, rng_light = rng.spawn(3)
    shape = neurite.shape
    neurite = neurite + _beads(swc, brightness, shape, rng_beads, cfg, real, a)
    clutter = clutter + _off_neurite(shape, rng_off, cfg, real, a, background)
    if real.haze > 0:
        clutter += real.haze * gaussian_filter(neurite, real.haze_sigma / a, truncate=3.0)
    light = _light_field(shape, rng_light, real)
    return neurite * light, clutter * light


def camera_quantise(counts: np.ndarray, rng: np.random.Generator, cfg, real: RealismConfig) -> np.ndarray:
    """Camera counts (photons + offset + read noise) to ``real.output_dtype``: black level, gain, saturation."""
    top = 255 if real.output_dtype == "uint8" else 65535
    level = rng.uniform(*real.full_scale) * (cfg.signal + cfg.background)
    black = cfg.offset + cfg.background + rng.uniform(*real.black_level) * math.sqrt(cfg.background + cfg.read_noise**2)
    out = np.rint((counts - np.float32(black)) * np.float32(top / level))
    return np.clip(out, 0, top).astype(np.uint8 if top == 255 else np.uint16)
