# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Intensity and noise augmentations that teach the weak-signal regime, and a seeded degradation of real stacks.

Training on bright stacks alone leaves a network blind to the weak regime NeuroLink is about (Yan et al., MICCAI
2024): neurites fading into Poisson-Gaussian noise. Three random transforms, applied on the fly to ``(C, D, H, W)``
float images normalised to about ``[0, 1]`` (after :class:`~neurolink_monai.transforms.MicroscopyNormalize`), bring
that regime into every batch; each is a MONAI ``RandomizableTransform`` with a dictionary version that touches only
its ``keys`` (never the label):

- :class:`RandGammaContrast` (``d``): a random gamma and a random contrast around the mean.
- :class:`RandAttenuationField` (``d``): multiplication by a smooth random field in ``[min_factor, 1]`` (a cubic
  B-spline of Gaussian lattice values), which makes weak stretches of neurite several voxels to tens of voxels long.
- :class:`RandPoissonGaussianNoise` (``d``): Poisson-Gaussian camera noise (Foi et al., IEEE TIP 2008) scaled so the
  signal level, estimated from an upper percentile of the image, reaches a random target SNR; a bright real stack is
  pushed into the weak regime.

The array functions they share (:func:`gamma_contrast`, :func:`attenuation_field`, :func:`signal_background_levels`,
:func:`poisson_gaussian_noise`) take a ``numpy.random.Generator``; the transforms draw one from their MONAI random
state, so ``set_random_state(seed)`` makes them deterministic. :func:`degrade_to_weak` chains the field and the noise
into a seeded model of the weak regime for whole real stacks (``(D, H, W)``), for benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type

from ..utils import as_positive_int, to_numpy

__all__ = [
    "RandAttenuationField",
    "RandAttenuationFieldd",
    "RandGammaContrast",
    "RandGammaContrastd",
    "RandPoissonGaussianNoise",
    "RandPoissonGaussianNoised",
    "attenuation_field",
    "degrade_to_weak",
    "gamma_contrast",
    "poisson_gaussian_noise",
    "signal_background_levels",
]


def _range(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False) -> tuple[float, float]:
    """A ``(min, max)`` range (a single number means ``(v, v)``) with ``low <= min <= max <= high``."""
    pair = (value, value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        a, b = (float(v) for v in pair)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or a (min, max) pair, got {value!r}.") from None
    ok = math.isfinite(a) and math.isfinite(b) and low <= a <= b <= high and not (low_open and a == low)
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must lie in {bracket}{low}, {high}] with min <= max, got {value!r}.")
    return a, b


def _float_image(img: Any, name: str = "img") -> np.ndarray:
    """A float numpy view/copy of an array or tensor (at least 1D), rejecting non-finite values."""
    arr = to_numpy(img)
    if arr.dtype.kind not in "fiu" or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty real array, got dtype {arr.dtype} and shape {arr.shape}.")
    out = arr if arr.dtype.kind == "f" else arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} holds non-finite values (NaN/Inf).")
    return out


def gamma_contrast(img: np.ndarray, gamma: float = 1.0, contrast: float = 1.0) -> np.ndarray:
    """``m + contrast * (top * (x / top) ** gamma - m)``: gamma on the non-negative part, then contrast around the mean.

    Args:
        img: float array of any shape (e.g. ``(C, D, H, W)``) normalised to about ``[0, 1]``; negatives stay as they
            are under the gamma (only ``x > 0`` is raised to the power).
        gamma: exponent > 0; < 1 lifts dim structures, > 1 darkens them. ``top`` is the array maximum (at least 1e-6).
        contrast: factor > 0 applied around the mean ``m`` of the gamma-corrected array.

    Returns:
        array of the same shape and dtype.
    """
    if not (math.isfinite(gamma) and gamma > 0):
        raise ValueError(f"gamma must be > 0, got {gamma!r}.")
    if not (math.isfinite(contrast) and contrast > 0):
        raise ValueError(f"contrast must be > 0, got {contrast!r}.")
    x = np.asarray(img)
    top = max(float(x.max()), 1e-6)
    pos = np.maximum(x, 0)
    out = np.where(x > 0, (pos / top) ** gamma * top, x) if gamma != 1.0 else x.copy()
    if contrast != 1.0:
        mean = out.mean(dtype=np.float64)
        out = mean + contrast * (out - mean)
    return out.astype(x.dtype, copy=False)


def _bspline_weights(size: int, length: float, offset: float) -> np.ndarray:
    """``(size, n)`` cubic B-spline weights of ``size`` voxels on a lattice of knot spacing ``length`` voxels.

    Every row is non-negative and sums to 1 (partition of unity), so the interpolated field stays inside the range of
    the lattice values; the field is twice continuously differentiable.
    """
    n = int(math.floor((size - 1) / length + offset)) + 4
    t = 1.0 + offset + np.arange(size) / length  # lattice coordinate of each voxel, inside [1, n - 2)
    d = np.abs(t[:, None] - np.arange(n)[None, :])
    return np.where(d < 1, (4.0 - 6.0 * d**2 + 3.0 * d**3) / 6.0, np.where(d < 2, (2.0 - d) ** 3 / 6.0, 0.0))


def attenuation_field(
    shape: Sequence[int],
    rng: np.random.Generator,
    min_factor: float = 0.1,
    length_scale: float | Sequence[float] = 16.0,
    weak_fraction: float = 0.3,
    softness: float = 2.0,
) -> np.ndarray:
    """Smooth random multiplicative field in ``[min_factor, 1]``, float32, of spatial ``shape`` ``(D, H, W)``.

    A standard Gaussian field ``g`` (i.i.d. normal values on a lattice of knot spacing ``length_scale``, random phase,
    cubic B-spline interpolation, rescaled to unit variance everywhere) is mapped through a smoothstep ``s`` to
    ``factor = min_factor ** s((g - g0) / softness + 1/2)`` with ``g0`` the normal quantile of ``1 - weak_fraction``.
    So about ``weak_fraction`` of the volume is dimmed by more than ``sqrt(min_factor)``, the deepest places reach
    ``min_factor``, and the rest stays near 1. The field is C1 smooth: ``ln(factor)`` changes by at most about
    ``10 * |ln(min_factor)| / (softness * length_scale)`` per voxel (largest of 180 draws on 32 x 64 x 64:
    ``8.2 * ...``), i.e. with the defaults a fade from 1 to ``min_factor`` spans at least ``length_scale / 5`` voxels.

    Args:
        shape: spatial shape ``(D, H, W)`` (any number of axes works).
        rng: random generator.
        min_factor: the smallest factor, in ``(0, 1]``.
        length_scale: knot spacing in voxels, one value or one per axis (e.g. ``(4, 16, 16)`` for anisotropic z).
        weak_fraction: fraction of the volume dimmed past the geometric midpoint, in ``[0, 1]``.
        softness: width of the transition, in standard deviations of ``g``, > 0.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"shape must hold positive sizes, got {shape!r}.")
    if not (0 < min_factor <= 1):
        raise ValueError(f"min_factor must lie in (0, 1], got {min_factor!r}.")
    if not (0 <= weak_fraction <= 1):
        raise ValueError(f"weak_fraction must lie in [0, 1], got {weak_fraction!r}.")
    if not (math.isfinite(softness) and softness > 0):
        raise ValueError(f"softness must be > 0, got {softness!r}.")
    lengths = np.broadcast_to(np.asarray(length_scale, dtype=np.float64), (len(shape),))
    if not np.all(np.isfinite(lengths)) or np.any(lengths <= 0):
        raise ValueError(f"length_scale must be > 0 (one value or one per axis), got {length_scale!r}.")
    weights = [_bspline_weights(s, ln, rng.uniform()).astype(np.float32) for s, ln in zip(shape, lengths)]
    field = rng.standard_normal(tuple(w.shape[1] for w in weights), dtype=np.float32)
    # Contract one lattice axis at a time. einsum, not a BLAS matmul: on a busy machine a multithreaded BLAS call on
    # these thin matrices costs tens of ms, einsum's own loop well under one.
    for axis, w in enumerate(weights):
        field = np.moveaxis(np.einsum("ij,j...->i...", w, np.moveaxis(field, axis, 0)), 0, axis)
    # Divide by the field's standard deviation at each voxel (separable), so g is N(0, 1) everywhere.
    for axis, w in enumerate(weights):
        norm_shape = [1] * len(shape)
        norm_shape[axis] = shape[axis]
        field /= np.sqrt((w**2).sum(axis=1)).reshape(norm_shape)
    g = np.ascontiguousarray(field)
    if weak_fraction <= 0 or min_factor == 1:
        return np.ones(shape, dtype=np.float32)
    g0 = NormalDist().inv_cdf(min(max(1.0 - weak_fraction, 1e-9), 1 - 1e-9))
    t = np.clip((g - np.float32(g0)) / np.float32(softness) + np.float32(0.5), 0.0, 1.0)
    smooth = t * t * (3.0 - 2.0 * t)
    return np.exp(np.float32(math.log(min_factor)) * smooth).astype(np.float32, copy=False)


def signal_background_levels(
    img: np.ndarray, signal_percentile: float = 99.9, background_percentile: float = 50.0
) -> tuple[float, float]:
    """``(signal, background)``: the ``signal_percentile`` and ``background_percentile`` of ``img`` (all values).

    Neurites fill a small fraction of a light-microscopy volume (0.1-1 % of a training patch, 0.01-0.2 % of a whole
    DIADEM stack), so an upper percentile sits on them and the median on the background.
    """
    if not (0 <= background_percentile < signal_percentile <= 100):
        raise ValueError(
            "need 0 <= background_percentile < signal_percentile <= 100, got "
            f"background_percentile={background_percentile!r}, signal_percentile={signal_percentile!r}."
        )
    flat = np.asarray(img).reshape(-1)
    n = flat.size - 1
    k_bg, k_sig = (int(round(p / 100.0 * n)) for p in (background_percentile, signal_percentile))
    part = np.partition(flat, sorted({k_bg, k_sig}))
    return float(part[k_sig]), float(part[k_bg])


def poisson_gaussian_noise(
    img: np.ndarray,
    rng: np.random.Generator,
    snr: float,
    read_fraction: float = 0.3,
    signal: float | None = None,
    background: float | None = None,
    signal_percentile: float = 99.9,
    background_percentile: float = 50.0,
    min_amplitude: float = 0.05,
) -> np.ndarray:
    """Add Poisson-Gaussian noise so that a structure at the signal level has the given SNR.

    Noise model (Foi et al., IEEE TIP 2008): ``out = a * Poisson(max(x, 0) / a) + min(x, 0) + Normal(0, b)``, whose
    variance at level ``x`` is ``a x + b``. With amplitude ``A = max(signal - background, min_amplitude)`` the
    variance at the signal level is set to ``(A / snr) ** 2``, a share ``read_fraction`` of it read noise ``b``:
    ``SNR = A / sqrt(a * signal + b) = snr``. The noise already in ``img`` comes on top, so the SNR of a noisy input
    ends up slightly lower than ``snr``.

    Args:
        img: float array, any shape, normalised to about ``[0, 1]``.
        rng: random generator.
        snr: target SNR at the signal level, > 0.
        read_fraction: share of the noise variance at the signal level that is Gaussian read noise, in ``[0, 1]``.
        signal, background: levels in image units; estimated by :func:`signal_background_levels` when None.
        signal_percentile, background_percentile: percentiles for the estimate.
        min_amplitude: floor of ``A`` so an empty (background-only) window still gets noise of that scale.

    Returns:
        noisy array, same shape and dtype.
    """
    if not (math.isfinite(snr) and snr > 0):
        raise ValueError(f"snr must be > 0, got {snr!r}.")
    if not (0 <= read_fraction <= 1):
        raise ValueError(f"read_fraction must lie in [0, 1], got {read_fraction!r}.")
    if not (math.isfinite(min_amplitude) and min_amplitude > 0):
        raise ValueError(f"min_amplitude must be > 0, got {min_amplitude!r}.")
    x = np.asarray(img)
    if signal is None or background is None:
        est_sig, est_bg = signal_background_levels(x, signal_percentile, background_percentile)
        signal = est_sig if signal is None else signal
        background = est_bg if background is None else background
    amplitude = max(float(signal) - float(background), min_amplitude)
    variance = (amplitude / snr) ** 2
    read_var = read_fraction * variance
    gain = (1.0 - read_fraction) * variance / max(float(signal), amplitude)
    out = x.astype(np.float32, copy=True)
    if gain > 0:
        pos = np.maximum(out, 0.0)
        out += gain * rng.poisson(pos / gain).astype(np.float32) - pos
    if read_var > 0:
        out += np.float32(math.sqrt(read_var)) * rng.standard_normal(x.shape, dtype=np.float32)
    return out.astype(x.dtype, copy=False)


class _RandIntensity(RandomizableTransform):
    """Base: ``randomize`` draws whether to apply and then (``_draw``) the parameters; ``__call__`` runs a numpy
    function on a float copy and returns the input's type (numpy array, tensor or MetaTensor) and dtype."""

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._draw()

    def _draw(self) -> None:
        raise NotImplementedError

    def __call__(self, img: Any, randomize: bool = True) -> Any:
        if randomize:
            self.randomize(img)
        if not self._do_transform:
            return img
        arr = _float_image(img)
        out = self._apply(arr)
        return convert_to_dst_type(out, dst=img, dtype=getattr(img, "dtype", arr.dtype))[0]

    def _apply(self, arr: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class RandGammaContrast(_RandIntensity):
    """With probability ``prob``, :func:`gamma_contrast` with a log-uniform ``gamma`` and a uniform ``contrast``.

    Args:
        prob: probability of applying.
        gamma: ``(min, max)`` range of the gamma exponent (drawn log-uniformly), > 0.
        contrast: ``(min, max)`` range of the contrast factor around the mean, > 0.

    Input: ``(C, D, H, W)`` float array/tensor normalised to about ``[0, 1]``; output: same type, shape, dtype.
    """

    def __init__(
        self, prob: float = 0.5, gamma: Sequence[float] = (0.6, 1.6), contrast: Sequence[float] = (0.75, 1.25)
    ) -> None:
        super().__init__(prob)
        self.gamma = _range("gamma", gamma, 0.0, low_open=True)
        self.contrast = _range("contrast", contrast, 0.0, low_open=True)
        self._gamma, self._contrast = 1.0, 1.0

    def _draw(self) -> None:
        self._gamma = float(np.exp(self.R.uniform(*np.log(self.gamma))))
        self._contrast = float(self.R.uniform(*self.contrast))

    def _apply(self, arr: np.ndarray) -> np.ndarray:
        return gamma_contrast(arr, self._gamma, self._contrast)


class RandAttenuationField(_RandIntensity):
    """With probability ``prob``, multiply by a smooth random :func:`attenuation_field` (one field for all channels).

    It makes weak stretches: parts of a neurite dimmed smoothly down to ``min_factor`` of their brightness.

    Args:
        prob: probability of applying.
        min_factor: ``(min, max)`` range of the deepest factor, in ``(0, 1]``; e.g. ``(0.05, 0.5)``.
        length_scale: ``(min, max)`` range (voxels, in-plane) of the lattice spacing of the field.
        weak_fraction: ``(min, max)`` range of the fraction of the volume dimmed past ``sqrt(min_factor)``.
        axial_scale: the lattice spacing along D is ``axial_scale * length_scale`` (z voxels are often larger).
        softness: width of the transition, see :func:`attenuation_field`.

    Input: ``(C, D, H, W)``; output: same type, shape and dtype.
    """

    def __init__(
        self,
        prob: float = 0.5,
        min_factor: Sequence[float] = (0.05, 0.5),
        length_scale: Sequence[float] = (8.0, 32.0),
        weak_fraction: Sequence[float] = (0.1, 0.5),
        axial_scale: float = 1.0,
        softness: float = 2.0,
    ) -> None:
        super().__init__(prob)
        self.min_factor = _range("min_factor", min_factor, 0.0, 1.0, low_open=True)
        self.length_scale = _range("length_scale", length_scale, 0.0, low_open=True)
        self.weak_fraction = _range("weak_fraction", weak_fraction, 0.0, 1.0)
        if not (math.isfinite(axial_scale) and axial_scale > 0):
            raise ValueError(f"axial_scale must be > 0, got {axial_scale!r}.")
        if not (math.isfinite(softness) and softness > 0):
            raise ValueError(f"softness must be > 0, got {softness!r}.")
        self.axial_scale, self.softness = float(axial_scale), float(softness)
        self._params: dict[str, Any] | None = None

    def _draw(self) -> None:
        length = float(self.R.uniform(*self.length_scale))
        self._params = {
            "min_factor": float(np.exp(self.R.uniform(*np.log(self.min_factor)))),
            "length_scale": (length * self.axial_scale, length, length),
            "weak_fraction": float(self.R.uniform(*self.weak_fraction)),
            "softness": self.softness,
            "seed": int(self.R.randint(2**31)),
        }

    def _apply(self, arr: np.ndarray) -> np.ndarray:
        if arr.ndim != 4:
            raise ValueError(f"expected a channel-first 3D image (C, D, H, W), got shape {arr.shape}.")
        if self._params is None:
            self._draw()
        p = dict(self._params)
        rng = np.random.default_rng(p.pop("seed"))
        field = attenuation_field(arr.shape[1:], rng, **p)
        return (arr * field[None]).astype(arr.dtype, copy=False)


class RandPoissonGaussianNoise(_RandIntensity):
    """With probability ``prob``, :func:`poisson_gaussian_noise` at a log-uniform random target SNR, per channel.

    Args:
        prob: probability of applying.
        snr: ``(min, max)`` range of the target SNR at the signal level (drawn log-uniformly), > 0; e.g. ``(1, 8)``.
        read_fraction: ``(min, max)`` range of the read-noise share of the noise variance at the signal level.
        signal_percentile, background_percentile: percentiles estimating the signal and background levels.
        min_amplitude: floor of the signal amplitude (image units), so empty windows get noise too.

    Input: ``(C, D, H, W)`` normalised to about ``[0, 1]``; output: same type, shape and dtype.
    """

    def __init__(
        self,
        prob: float = 0.5,
        snr: Sequence[float] = (1.0, 8.0),
        read_fraction: Sequence[float] = (0.1, 0.5),
        signal_percentile: float = 99.9,
        background_percentile: float = 50.0,
        min_amplitude: float = 0.05,
    ) -> None:
        super().__init__(prob)
        self.snr = _range("snr", snr, 0.0, low_open=True)
        self.read_fraction = _range("read_fraction", read_fraction, 0.0, 1.0)
        if not (0 <= background_percentile < signal_percentile <= 100):
            raise ValueError(
                "need 0 <= background_percentile < signal_percentile <= 100, got "
                f"background_percentile={background_percentile!r}, signal_percentile={signal_percentile!r}."
            )
        if not (math.isfinite(min_amplitude) and min_amplitude > 0):
            raise ValueError(f"min_amplitude must be > 0, got {min_amplitude!r}.")
        self.signal_percentile, self.background_percentile = float(signal_percentile), float(background_percentile)
        self.min_amplitude = float(min_amplitude)
        self._snr, self._read_fraction, self._seed = 1.0, 0.0, 0

    def _draw(self) -> None:
        self._snr = float(np.exp(self.R.uniform(*np.log(self.snr))))
        self._read_fraction = float(self.R.uniform(*self.read_fraction))
        self._seed = int(self.R.randint(2**31))

    def _apply(self, arr: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(self._seed)
        channels = arr if arr.ndim > 1 else arr[None]
        out = np.stack(
            [
                poisson_gaussian_noise(
                    c,
                    rng,
                    self._snr,
                    self._read_fraction,
                    signal_percentile=self.signal_percentile,
                    background_percentile=self.background_percentile,
                    min_amplitude=self.min_amplitude,
                )
                for c in channels
            ]
        )
        return out.reshape(arr.shape)


class _RandIntensityd(RandomizableTransform, MapTransform):
    """Base of the dictionary versions: thin wrappers of one array transform.

    One draw per call (whether to apply, then the parameters, including the noise seed), made by the array transform
    from its random state, is applied to every key: two image keys of the same shape get the same augmentation, and
    the same seed gives what the array transform gives. Other keys (the label) are never touched.
    """

    def __init__(self, keys: KeysCollection, transform: _RandIntensity, allow_missing_keys: bool) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, transform.prob)
        self.transform = transform

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> _RandIntensityd:
        super().set_random_state(seed, state)
        self.transform.set_random_state(seed, state)
        return self

    def randomize(self, data: Any = None) -> None:
        """Draw with the array transform's random state (coin, then parameters), as the array transform does."""
        self.transform.randomize(None)
        self._do_transform = self.transform._do_transform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key], randomize=False)
        return d


class RandGammaContrastd(_RandIntensityd):
    """Dictionary version of :class:`RandGammaContrast` (same arguments after ``keys``)."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 0.5,
        gamma: Sequence[float] = (0.6, 1.6),
        contrast: Sequence[float] = (0.75, 1.25),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, RandGammaContrast(prob, gamma, contrast), allow_missing_keys)


class RandAttenuationFieldd(_RandIntensityd):
    """Dictionary version of :class:`RandAttenuationField` (same arguments after ``keys``)."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 0.5,
        min_factor: Sequence[float] = (0.05, 0.5),
        length_scale: Sequence[float] = (8.0, 32.0),
        weak_fraction: Sequence[float] = (0.1, 0.5),
        axial_scale: float = 1.0,
        softness: float = 2.0,
        allow_missing_keys: bool = False,
    ) -> None:
        transform = RandAttenuationField(prob, min_factor, length_scale, weak_fraction, axial_scale, softness)
        super().__init__(keys, transform, allow_missing_keys)


class RandPoissonGaussianNoised(_RandIntensityd):
    """Dictionary version of :class:`RandPoissonGaussianNoise` (same arguments after ``keys``)."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        prob: float = 0.5,
        snr: Sequence[float] = (1.0, 8.0),
        read_fraction: Sequence[float] = (0.1, 0.5),
        signal_percentile: float = 99.9,
        background_percentile: float = 50.0,
        min_amplitude: float = 0.05,
        allow_missing_keys: bool = False,
    ) -> None:
        transform = RandPoissonGaussianNoise(
            prob, snr, read_fraction, signal_percentile, background_percentile, min_amplitude
        )
        super().__init__(keys, transform, allow_missing_keys)


def degrade_to_weak(
    image: np.ndarray,
    seed: int,
    min_factor: float = 0.1,
    length_scale: float | Sequence[float] = (6.0, 24.0, 24.0),
    weak_fraction: float = 0.3,
    snr: float = 2.5,
    read_fraction: float = 0.3,
    signal_percentile: float = 99.99,
    background_percentile: float = 50.0,
    return_model: bool = False,
) -> np.ndarray | dict[str, Any]:
    """A seeded weak-regime version of a whole real stack: smooth attenuation, then Poisson and read noise.

    ``noiseless = background + attenuation_field * (image - background)`` (:func:`attenuation_field`: dimmed
    stretches down to ``min_factor``, about ``weak_fraction`` of the volume past ``sqrt(min_factor)``), then
    :func:`poisson_gaussian_noise` with the noise variance at the (unattenuated) signal level set to
    ``((signal - background) / snr) ** 2``, ``read_fraction`` of it Gaussian read noise. ``signal`` and
    ``background`` are the ``signal_percentile`` and ``background_percentile`` of ``image``. Everything is drawn from
    ``numpy.random.default_rng(seed)``: the same image and arguments give the same array.

    Unattenuated neurites at the signal level get SNR ``snr`` (2.5 by default), dimmed stretches less. With the
    defaults, on the three DIADEM OP stacks (voxel 0.33 um in-plane, 1 um in z) and seeds 0 and 1, the median SNR
    at the gold nodes is 1.35-2.14 and 18-42 % of the nodes are below SNR 1 (``python
    benchmarks/synthetic_realism.py --weak`` prints them; SNR at a node = (noiseless maximum within 1 z and 2 xy
    voxels - background) / noise std at that level).

    Args:
        image: ``(D, H, W)`` stack (any real dtype; uint8 and uint16 are typical), in its own intensity units.
        seed: non-negative int.
        min_factor: deepest attenuation, in ``(0, 1]``.
        length_scale: lattice spacing of the field, voxels, one value or ``(z, y, x)``; the default suits stacks of
            0.33 um in-plane and 1 um axial voxels (dimmed stretches of about 5-20 um).
        weak_fraction: fraction of the volume dimmed past ``sqrt(min_factor)``.
        snr: SNR of an unattenuated structure at the signal level.
        read_fraction: read-noise share of the noise variance at the signal level.
        signal_percentile, background_percentile: percentiles of ``image`` giving the signal and background levels;
            neurites fill 0.01-0.2 % of a DIADEM stack, hence 99.99.
        return_model: return a dict instead: ``"image"``, ``"noiseless"`` (float32), ``"attenuation"`` (float32),
            ``"signal"``, ``"background"``, ``"gain"`` and ``"read_std"`` (noise variance at level ``x``:
            ``gain * max(x, 0) + read_std ** 2``).

    Returns:
        float32 array of ``image``'s shape in its intensity units (not clipped or rounded), or the dict above.
    """
    as_positive_int(seed, "seed", allow_zero=True)
    arr = _float_image(image, "image").astype(np.float32, copy=False)
    if arr.ndim != 3:
        raise ValueError(f"image must be a (D, H, W) stack, got shape {arr.shape}.")
    if not (0 < snr and math.isfinite(snr)):
        raise ValueError(f"snr must be > 0, got {snr!r}.")
    signal, background = signal_background_levels(arr, signal_percentile, background_percentile)
    rng_field, rng_noise = np.random.default_rng(int(seed)).spawn(2)
    field = attenuation_field(arr.shape, rng_field, min_factor, length_scale, weak_fraction)
    noiseless = np.float32(background) + field * (arr - np.float32(background))
    amplitude = max(signal - background, 1e-6 * max(abs(signal), 1.0))
    noisy = poisson_gaussian_noise(
        noiseless, rng_noise, snr, read_fraction, signal=signal, background=background, min_amplitude=amplitude
    )
    if not return_model:
        return noisy
    variance = (amplitude / snr) ** 2
    return {
        "image": noisy,
        "noiseless": noiseless,
        "attenuation": field,
        "signal": signal,
        "background": background,
        "gain": (1.0 - read_fraction) * variance / max(signal, amplitude),
        "read_std": math.sqrt(read_fraction * variance),
    }
