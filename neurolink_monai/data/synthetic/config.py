# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The difficulty knobs of the synthetic weak-signal neuron generator."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .realism import RealismConfig, realism_from_value

__all__ = ["SyntheticConfig", "DIFFICULTY_PRESETS"]


def _pair(name: str, value: Any, low: float, high: float = math.inf, integer: bool = False) -> tuple:
    """Validate a ``(min, max)`` range with ``low <= min <= max <= high``; return it as a tuple."""
    try:
        a, b = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (min, max) pair, got {value!r}.") from None
    cast = int if integer else float
    if integer and (int(a) != a or int(b) != b):
        raise TypeError(f"{name} must hold integers, got {value!r}.")
    a, b = cast(a), cast(b)
    if not (low <= a <= b <= high) or not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"{name} must satisfy {low} <= min <= max <= {high}, got {value!r}.")
    return a, b


def _triple(name: str, value: Any, positive: bool) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be three numbers in (z, y, x) order, got {value!r}.") from None
    if len(out) != 3 or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{name} must be three finite numbers in (z, y, x) order, got {value!r}.")
    if any(v <= 0 if positive else v < 0 for v in out):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'} on every axis, got {value!r}.")
    return out  # type: ignore[return-value]


def _scalar(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {value!r}.")
    v = float(value)
    if not math.isfinite(v) or v > high or v < low or (low_open and v == low):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must lie in {bracket}{low}, {high}], got {value!r}.")
    return v


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of :func:`~neurolink_monai.data.synthetic.generate_sample`; the defaults give the bundle's dataset.

    Lengths and radii are in voxels of the x (W) axis; with anisotropic ``spacing`` the z and y axes are scaled by
    ``spacing[k] / spacing[2]`` so the neuron keeps its physical shape. Intensities are expected photon counts.

    Morphology:
        spacing: voxel size ``(z, y, x)``, written into the TIFF metadata; only the ratios shape the neuron.
        num_stems: inclusive range of primary neurites leaving the soma.
        soma_radius: range of the soma radius.
        radius: ``(min, max)`` neurite radius; stems start near ``max`` and taper towards ``min``.
        taper_length: path length over which a neurite radius decays by ``1/e`` towards ``min``.
        branch_spacing: mean path length between two branch points on a neurite.
        branch_angle: range of the angle (degrees) between a daughter branch and its parent.
        max_branch_order: deepest branch order grown (stems are order 1).
        tortuosity: standard deviation (radians) of the local heading wobble; 0 gives straight neurites.
        wobble_length: correlation length of the heading wobble.
        total_length: cap on the neurite path length of one neuron, as a multiple of the volume diagonal.

    Rendering (Poisson-Gaussian camera, see :func:`~neurolink_monai.data.synthetic.render_components`):
        psf_sigma: standard deviation ``(z, y, x)`` in voxels of the Gaussian point-spread function.
        signal: peak photons of a radius-1 neurite of nominal brightness (thinner ones are dimmer, as area).
        brightness_variation: standard deviation of the slow log-brightness fluctuation along neurites.
        background: mean photons of the autofluorescence background.
        background_variation: relative amplitude of its slow spatial variation (0 gives a flat background).
        offset: camera baseline added to every voxel (counts).
        read_noise: standard deviation of the Gaussian read noise (counts).
        weak_fraction: fraction of the neurite centreline length inside weak stretches.
        weak_depth: how far a weak stretch fades: its intensity drops to ``1 - weak_depth`` of the nominal.
        weak_length: range of the length of one weak stretch (full width at half depth).
        num_blobs: mean number (Poisson) of bright out-of-focus blobs.
        blob_sigma: range of their standard deviation (voxels, lateral; axially stretched by 2.5).
        blob_intensity: range of their peak photons as a multiple of ``signal``.
        num_crossing_fibres: mean number (Poisson) of fibres of neighbouring neurons crossing the volume.
        crossing_radius: range of their radius.
        label_crossing_fibres: if True the crossing fibres are neurites of the ground truth (extra SWC trees after
            the neuron, in the label mask); if False they are unlabelled clutter.

    Realism and real morphologies (off by default; the default dataset is unchanged by them):
        realism: ``None`` / ``"none"``, a preset name (``"confocal"``), a mapping of knobs or a
            :class:`~neurolink_monai.data.synthetic.RealismConfig`: puncta, speckle, varicosities, cell bodies, haze,
            autofluorescence, uneven illumination, depth attenuation, per-sample PSF, anisotropy and signal level,
            saturation and uint8 quantisation (see :mod:`~neurolink_monai.data.synthetic.realism`).
        swc_dir: folder of ``.swc`` traces (voxel units) rendered instead of the random neuron, one per sample,
            placed, rotated and cropped (:func:`~neurolink_monai.data.synthetic.place_swc`).
        swc_spacing: voxel size ``(z, y, x)`` of those traces; defaults to ``spacing``.
    """

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    num_stems: tuple[int, int] = (2, 5)
    soma_radius: tuple[float, float] = (3.5, 5.0)
    radius: tuple[float, float] = (0.5, 3.0)
    taper_length: float = 40.0
    branch_spacing: float = 20.0
    branch_angle: tuple[float, float] = (30.0, 75.0)
    max_branch_order: int = 5
    tortuosity: float = 0.3
    wobble_length: float = 8.0
    total_length: float = 5.0
    psf_sigma: tuple[float, float, float] = (2.0, 0.9, 0.9)
    signal: float = 60.0
    brightness_variation: float = 0.25
    background: float = 12.0
    background_variation: float = 0.5
    offset: float = 100.0
    read_noise: float = 3.0
    weak_fraction: float = 0.25
    weak_depth: float = 0.9
    weak_length: tuple[float, float] = (10.0, 30.0)
    num_blobs: float = 3.0
    blob_sigma: tuple[float, float] = (2.5, 6.0)
    blob_intensity: tuple[float, float] = (0.3, 1.2)
    num_crossing_fibres: float = 1.0
    crossing_radius: tuple[float, float] = (0.6, 1.4)
    label_crossing_fibres: bool = True
    realism: Any = None
    swc_dir: str | None = None
    swc_spacing: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "realism", realism_from_value(self.realism))
        if self.swc_dir is not None:
            if not isinstance(self.swc_dir, (str, Path)) or not str(self.swc_dir):
                raise TypeError(f"swc_dir must be a folder path or None, got {self.swc_dir!r}.")
            set_(self, "swc_dir", str(self.swc_dir))
        if self.swc_spacing is not None:
            set_(self, "swc_spacing", _triple("swc_spacing", self.swc_spacing, positive=True))
        set_(self, "spacing", _triple("spacing", self.spacing, positive=True))
        set_(self, "psf_sigma", _triple("psf_sigma", self.psf_sigma, positive=False))
        set_(self, "num_stems", _pair("num_stems", self.num_stems, 1, 16, integer=True))
        set_(self, "soma_radius", _pair("soma_radius", self.soma_radius, 0.5))
        set_(self, "radius", _pair("radius", self.radius, 0.25, 20.0))
        set_(self, "branch_angle", _pair("branch_angle", self.branch_angle, 0.0, 120.0))
        set_(self, "weak_length", _pair("weak_length", self.weak_length, 1.0))
        set_(self, "blob_sigma", _pair("blob_sigma", self.blob_sigma, 0.5))
        set_(self, "blob_intensity", _pair("blob_intensity", self.blob_intensity, 0.0))
        set_(self, "crossing_radius", _pair("crossing_radius", self.crossing_radius, 0.25, 20.0))
        for name, low, high, low_open in (
            ("taper_length", 0.0, math.inf, True),
            ("branch_spacing", 0.0, math.inf, True),
            ("tortuosity", 0.0, 1.5, False),
            ("wobble_length", 0.0, math.inf, True),
            ("total_length", 0.0, math.inf, True),
            ("signal", 0.0, math.inf, False),
            ("brightness_variation", 0.0, 2.0, False),
            ("background", 0.0, math.inf, False),
            ("background_variation", 0.0, 1.0, False),
            ("offset", 0.0, 60000.0, False),
            ("read_noise", 0.0, math.inf, False),
            ("weak_fraction", 0.0, 1.0, False),
            ("weak_depth", 0.0, 1.0, False),
            ("num_blobs", 0.0, 1000.0, False),
            ("num_crossing_fibres", 0.0, 100.0, False),
        ):
            set_(self, name, _scalar(name, getattr(self, name), low, high, low_open))
        if isinstance(self.max_branch_order, bool) or not isinstance(self.max_branch_order, int):
            raise TypeError(f"max_branch_order must be an int, got {self.max_branch_order!r}.")
        if not 1 <= self.max_branch_order <= 20:
            raise ValueError(f"max_branch_order must lie in [1, 20], got {self.max_branch_order}.")
        if not isinstance(self.label_crossing_fibres, bool):
            raise TypeError(f"label_crossing_fibres must be a bool, got {self.label_crossing_fibres!r}.")

    @classmethod
    def preset(cls, difficulty: str, **overrides: Any) -> SyntheticConfig:
        """Config of a difficulty preset (``"easy"``, ``"medium"`` = defaults, ``"hard"``) with ``overrides``."""
        if difficulty not in DIFFICULTY_PRESETS:
            raise ValueError(f"unknown difficulty {difficulty!r}; choose one of {sorted(DIFFICULTY_PRESETS)}.")
        return cls(**{**DIFFICULTY_PRESETS[difficulty], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the knobs (tuples as lists); :meth:`from_dict` inverts it.

        ``realism``, ``swc_dir`` and ``swc_spacing`` appear only when set, so the settings (and manifests) of
        datasets made without them are the same as before these knobs existed.
        """
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in _OPTIONAL_KNOBS and v is None:
                continue
            out[f.name] = v.to_dict() if isinstance(v, RealismConfig) else list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SyntheticConfig:
        """Build a config from :meth:`to_dict` output; unknown keys raise ``ValueError`` naming them."""
        if not isinstance(values, Mapping):
            raise TypeError(f"values must be a mapping of knob names, got {type(values).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SyntheticConfig knobs {unknown}; known knobs: {sorted(known)}.")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


_OPTIONAL_KNOBS = ("realism", "swc_dir", "swc_spacing")

# Overrides of the defaults ("medium"); "easy" keeps most neurites well above the noise, "hard" fades more and
# deeper, with a dimmer neuron, a brighter background and more clutter.
DIFFICULTY_PRESETS: dict[str, dict[str, Any]] = {
    "easy": {"weak_fraction": 0.1, "weak_depth": 0.7, "signal": 100.0, "num_blobs": 1.0, "num_crossing_fibres": 0.5},
    "medium": {},
    "hard": {
        "weak_fraction": 0.4,
        "weak_depth": 0.95,
        "signal": 40.0,
        "background": 20.0,
        "num_blobs": 6.0,
        "num_crossing_fibres": 2.0,
    },
}
