# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Direction-guided tracing: probability map (+ direction and distance maps) -> SWC reconstruction.

The steps follow the post-processing NeuroLink (Yan et al., "Bridging Weak Signals in Neuronal Imaging with
Morphology Learning", MICCAI 2024) motivates: threshold and skeletonise (Lee et al., CVGIP 1994), build the
26-neighbour skeleton graph, prune surface spurs, bridge gaps between endpoints that face each other (using the
predicted neurite direction when available), root one tree per connected neuron at its soma (largest distance)
or a user point, and emit SWC nodes with radii from the distance map.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..io import swc_to_physical
from ..skeleton import SkeletonGraph, spanning_forest, thin_curves, voxel_graph
from ..utils import as_float_in_range, as_positive_int, as_spacing, count_nonfinite, to_numpy
from .bridging import BridgeParams, bridge_gaps
from .contrast import background_and_noise, gate_by_contrast, level_noise, node_levels
from .endpoints import extend_tips as _extend_tips
from .linking import LinkParams, link_pieces
from .pruning import prune_faint_spurs, prune_spurs
from .smoothing import smooth_sections
from .trees import brightest_entry_tree, forest_to_swc, skeleton_radius

__all__ = [
    "TRACE_KEYWORDS",
    "TraceConfig",
    "trace_swc",
    "trace_with_config",
    "as_probability",
    "as_direction",
    "as_distance",
    "check_root",
    "check_spacing",
]

logger = logging.getLogger(__name__)

# endpoints whose image levels differ by less than this many noise sigmas are equally bright candidate roots
_ROOT_LEVEL_SIGMAS = 2.0


# The flat tracing keywords, as trace_swc, TraceSWC(d), the command line and the bundle (inference.json ``trace_*``)
# take them, and where each one lives in a TraceConfig. The one coupling: ``min_component_length`` also sets
# ``bridge.anchor_length`` and ``link.min_piece_length`` (at least 1), see TraceConfig.from_keywords.
TRACE_KEYWORDS: dict[str, str] = {
    "threshold": "threshold",
    "max_gap": "bridge.max_gap",
    "min_spur_length": "min_spur_length",
    "min_component_length": "min_component_length",
    "min_facing_cos": "bridge.min_facing_cos",
    "bridge_to_side": "bridge.to_side",
    "direction_window": "bridge.window",
    "soma_ratio": "soma_ratio",
    "soma_in_view": "soma_in_view",
    "min_radius": "min_radius",
    "extend_tips": "extend_tips",
    "single_tree": "single_tree",
    "link_cost": "link.max_link_cost",
    "keep_length": "link.keep_length",
    "max_trees": "link.max_trees",
    "long_link_factor": "link.long_link_factor",
    "dark_gap_ratio": "link.dark_gap_ratio",
    "crossing_distance": "link.crossing_distance",
    "crossing_angle": "link.crossing_angle",
    "min_contrast": "min_contrast",
    "faint_spur_ratio": "faint_spur_ratio",
    "smooth_iterations": "smooth_iterations",
    "node_type": "node_type",
}


def _no_linking() -> LinkParams:
    """The tracer's default linking: off (``max_link_cost`` 0, no tree limit), specks below the default
    ``min_component_length`` (6) never join."""
    return LinkParams(max_link_cost=0.0, min_piece_length=6.0, max_trees=0)


@dataclass(frozen=True)
class TraceConfig:
    """Parameters of :func:`trace_swc`; lengths are in voxels (in-plane x voxels when a spacing is given).

    The bridging and linking parameters are those of their steps, nested; :meth:`from_keywords` builds a config
    from the flat keywords of :func:`trace_swc` (mapping in :data:`TRACE_KEYWORDS`).

    Attributes:
        threshold: foreground is ``prob >= threshold``, in (0, 1].
        min_spur_length: terminal branches whose length beyond their parent's radius is shorter are pruned.
        min_component_length: connected pieces with less total skeleton length are dropped.
        soma_ratio: a component whose largest radius is this many times its median radius is rooted at its soma.
        soma_in_view: False for stacks whose somata lie outside the field of view (axon stacks such as DIADEM's
            olfactory projection fibres): no blob is taken for a soma, and every tree is rooted at an endpoint,
            where it enters the stack when it does (with an image, the brightest such entry), else at its end nearest
            to a tree that does (a piece broken off its entry by a gap continues it there). With an image and
            linking, the tree listed first is the one entering brightest among the heavy ones
            (:func:`~neurolink_monai.tracing.trees.brightest_entry_tree`), not the heaviest.
        min_radius: SWC radii below this (voxels) are raised to it.
        extend_tips: walk each endpoint on to the neurite's tip, which thinning stops short of (with the
            direction window ``bridge.window``).
        single_tree: keep only the first tree (the user-rooted one, else the largest).
        min_contrast: with an image, pieces of the mask whose median intensity is less than this many background
            noise sigmas above the local background are dropped before tracing (see
            :func:`~neurolink_monai.tracing.contrast.gate_by_contrast`); 0 disables.
        faint_spur_ratio: with an image, spurs of the final trace whose image level (above the local background)
            is below this fraction of the neurite they leave are removed (see
            :func:`~neurolink_monai.tracing.pruning.prune_faint_spurs`); 0 disables.
        node_type: SWC type of the traced nodes (3: dendrite); a detected soma root gets type 1.
        smooth_iterations: passes of section smoothing of the traced coordinates (tips, branch points and roots
            stay; see :func:`~neurolink_monai.tracing.smoothing.smooth_sections`); 0 keeps the voxel staircase.
        bridge: gap bridging between endpoints that face each other (:class:`~neurolink_monai.tracing.BridgeParams`;
            ``max_gap`` 0 disables it).
        link: growth of the main tree through weak stretches and the choice of further trees
            (:class:`~neurolink_monai.tracing.LinkParams`); the step runs when ``link.max_link_cost`` or
            ``link.max_trees`` is above 0. Default: off.
    """

    threshold: float = 0.5
    min_spur_length: float = 3.0
    min_component_length: float = 6.0
    soma_ratio: float = 3.0
    soma_in_view: bool = True
    min_radius: float = 0.5
    extend_tips: bool = True
    single_tree: bool = False
    min_contrast: float = 0.0
    faint_spur_ratio: float = 0.0
    node_type: int = 3
    smooth_iterations: int = 10
    bridge: BridgeParams = field(default_factory=BridgeParams)
    link: LinkParams = field(default_factory=_no_linking)

    def __post_init__(self) -> None:
        as_float_in_range(self.threshold, "threshold", 0.0, 1.0, low_open=True)
        as_float_in_range(self.min_spur_length, "min_spur_length", 0.0)
        as_float_in_range(self.min_component_length, "min_component_length", 0.0)
        as_float_in_range(self.soma_ratio, "soma_ratio", 1.0)
        as_float_in_range(self.min_radius, "min_radius", 0.0)
        as_float_in_range(self.min_contrast, "min_contrast", 0.0)
        as_float_in_range(self.faint_spur_ratio, "faint_spur_ratio", 0.0, 1.0)
        for flag in ("extend_tips", "single_tree", "soma_in_view"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}.")
        as_positive_int(self.node_type, "node_type", allow_zero=True)
        as_positive_int(self.smooth_iterations, "smooth_iterations", allow_zero=True)
        for name, cls in (("bridge", BridgeParams), ("link", LinkParams)):
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"{name} must be a {cls.__name__}, got {type(getattr(self, name)).__name__}.")

    @classmethod
    def from_keywords(cls, **keywords: Any) -> TraceConfig:
        """The config of the flat keywords of :func:`trace_swc` (``max_gap=...``, ``link_cost=...``; the rest
        default), each stored where :data:`TRACE_KEYWORDS` says; ``min_component_length`` also sets the bridges'
        ``anchor_length`` and the linking's ``min_piece_length`` (at least 1).

        Raises:
            TypeError: an unknown keyword, or a value of the wrong type.
            ValueError: a value out of range; the message names the keyword (and its nested field) and the value.
        """
        unknown = sorted(set(keywords) - set(TRACE_KEYWORDS))
        if unknown:
            raise TypeError(f"unknown tracing parameters {unknown}; known: {sorted(TRACE_KEYWORDS)}.")
        values = {**_DEFAULT_KEYWORDS, **keywords}
        parts: dict[str, dict[str, Any]] = {"": {}, "bridge": {}, "link": {}}
        for key, path in TRACE_KEYWORDS.items():
            part, _, name = path.rpartition(".")
            parts[part][name] = values[key]
        config = cls(**parts[""])  # checks the top-level values, min_component_length before it is copied below
        parts["bridge"]["anchor_length"] = config.min_component_length
        parts["link"]["min_piece_length"] = max(config.min_component_length, 1.0)
        return replace(
            config,
            bridge=_nested(BridgeParams, "bridge", parts["bridge"]),
            link=_nested(LinkParams, "link", parts["link"]),
        )

    def keywords(self) -> dict[str, Any]:
        """The flat keywords of this config (the inverse of :meth:`from_keywords`), in :data:`TRACE_KEYWORDS` order."""
        out = {}
        for key, path in TRACE_KEYWORDS.items():
            value: Any = self
            for name in path.split("."):
                value = getattr(value, name)
            out[key] = value
        return out


def _nested(cls: type, part: str, values: dict[str, Any]) -> Any:
    """``cls(**values)``; an error about a field that has another flat keyword names both (``direction_window
    (bridge.window) must be ...``)."""
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        message = str(e)
        for key, path in TRACE_KEYWORDS.items():
            name = path.removeprefix(f"{part}.")
            if path.startswith(f"{part}.") and key != name and message.startswith(f"{name} "):
                raise type(e)(f"{key} ({path}){message[len(name):]}") from e
        raise


_DEFAULT_KEYWORDS = TraceConfig().keywords()


def _to_numpy(x: Any, name: str) -> np.ndarray:
    try:
        x = to_numpy(x)
    except Exception as e:
        raise TypeError(f"{name}: expected an array or tensor, got {type(x).__name__}.") from e
    if x.dtype == object or x.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected boolean, integer or float values, got dtype {x.dtype}.")
    return x


def _check_finite(x: np.ndarray, name: str) -> None:
    count, first = count_nonfinite(x)
    if count:
        raise ValueError(f"{name}: {count} non-finite values (NaN/Inf), the first at index {first}.")


def as_probability(prob: Any, name: str = "prob") -> np.ndarray:
    """Validate a probability map or mask and return it as float32 ``(D, H, W)`` in [0, 1].

    Accepts ``(D, H, W)`` or channel-first ``(1, D, H, W)`` numpy arrays or torch tensors. Booleans are a mask;
    integers holding only 0 and one other value are a mask (e.g. 0/255); other integers are probabilities scaled
    to the dtype's maximum (uint8 0..255, uint16 0..65535); floats must lie in [0, 1].

    Raises:
        TypeError: not numeric.
        ValueError: wrong number of dimensions, empty, NaN/Inf, or floats outside [0, 1] (e.g. logits).
    """
    x = _to_numpy(prob, name)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3:
        raise ValueError(
            f"{name}: expected a 3D probability map (D, H, W) or (1, D, H, W), got shape {tuple(x.shape)}."
            + (
                " A multi-channel network output must be split first (neurolink_monai.networks.split_outputs)."
                if x.ndim == 4
                else ""
            )
        )
    if x.size == 0:
        raise ValueError(f"{name}: empty volume of shape {tuple(x.shape)}.")
    if x.dtype == bool:
        return x.astype(np.float32)
    if x.dtype.kind in "iu":
        if x.min() < 0:
            raise ValueError(f"{name}: negative values (min {x.min()}) in an integer probability map or mask.")
        top = x.max()
        if top == 0 or not np.any((x != 0) & (x != top)):
            return (x != 0).astype(np.float32)
        return (x.astype(np.float32) / np.float32(np.iinfo(x.dtype).max)).astype(np.float32)
    _check_finite(x, name)
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-6 or hi > 1.0 + 1e-6:
        raise ValueError(
            f"{name}: values span [{lo:.4g}, {hi:.4g}], but a probability map must lie in [0, 1] "
            "(apply a sigmoid to logits first)."
        )
    return np.clip(x, 0.0, 1.0).astype(np.float32, copy=False)


def as_direction(direction: Any, shape: Sequence[int], name: str = "direction") -> np.ndarray:
    """Validate a direction map: ``(3, D, H, W)`` with components ``(z, y, x)`` matching ``shape``; float32."""
    x = _to_numpy(direction, name)
    shape = tuple(int(s) for s in shape)
    if x.shape != (3, *shape):
        raise ValueError(
            f"{name}: expected a direction map of shape (3, D, H, W) = {(3, *shape)} (components z, y, x) "
            f"matching the probability map, got {tuple(x.shape)}."
        )
    _check_finite(x, name)
    return np.asarray(x, dtype=np.float32)


def as_distance(distance: Any, shape: Sequence[int], name: str = "distance") -> np.ndarray:
    """Validate a distance map: ``(D, H, W)`` or ``(1, D, H, W)`` matching ``shape``, finite, >= 0; float32."""
    x = _to_numpy(distance, name)
    shape = tuple(int(s) for s in shape)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.shape != shape:
        raise ValueError(
            f"{name}: expected a distance map of shape (D, H, W) = {shape} or (1, D, H, W) matching the "
            f"probability map, got {tuple(np.shape(distance))}."
        )
    _check_finite(x, name)
    if x.dtype.kind in "if" and x.min() < -1e-6:
        raise ValueError(f"{name}: negative distances (min {float(x.min()):.4g}); a distance map must be >= 0.")
    return np.maximum(np.asarray(x, dtype=np.float32), 0.0)


def check_root(root: Any, shape: Sequence[int], name: str = "root") -> np.ndarray:
    """Validate a root given as SWC ``(x, y, z)`` voxel coordinates; returns it as float64 ``(z, y, x)``."""
    try:
        xyz = np.asarray(root, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be 3 numbers (x, y, z) in voxels, got {root!r}.") from e
    if xyz.shape != (3,) or not np.isfinite(xyz).all():
        raise ValueError(f"{name} must be 3 finite numbers (x, y, z) in voxels, got {root!r}.")
    zyx = xyz[::-1].copy()
    idx = np.round(zyx)
    dims = np.asarray(shape)
    if (idx < 0).any() or (idx > dims - 1).any():
        d, h, w = (int(s) for s in shape)
        raise ValueError(
            f"{name} (x, y, z) = {tuple(float(v) for v in xyz)} lies outside the volume of shape (D, H, W) = "
            f"{(d, h, w)}: x must round into [0, {w - 1}], y into [0, {h - 1}], z into [0, {d - 1}]."
        )
    return zyx


def check_spacing(spacing: Any, name: str = "spacing") -> tuple[float, float, float]:
    """Validate a voxel spacing ``(z, y, x)``: three positive finite numbers (:func:`neurolink_monai.utils.as_spacing`).

    Raises:
        ValueError: anything else, the message naming ``name`` and showing the value.
    """
    sz, sy, sx = as_spacing(spacing, name)
    return float(sz), float(sy), float(sx)


def trace_swc(
    prob: Any,
    direction: Any | None = None,
    distance: Any | None = None,
    threshold: float = _DEFAULT_KEYWORDS["threshold"],
    root: Sequence[float] | None = None,
    spacing: Sequence[float] | None = None,
    physical_units: bool = False,
    max_gap: float = _DEFAULT_KEYWORDS["max_gap"],
    min_spur_length: float = _DEFAULT_KEYWORDS["min_spur_length"],
    min_component_length: float = _DEFAULT_KEYWORDS["min_component_length"],
    min_facing_cos: float = _DEFAULT_KEYWORDS["min_facing_cos"],
    bridge_to_side: bool = _DEFAULT_KEYWORDS["bridge_to_side"],
    direction_window: float = _DEFAULT_KEYWORDS["direction_window"],
    soma_ratio: float = _DEFAULT_KEYWORDS["soma_ratio"],
    soma_in_view: bool = _DEFAULT_KEYWORDS["soma_in_view"],
    min_radius: float = _DEFAULT_KEYWORDS["min_radius"],
    extend_tips: bool = _DEFAULT_KEYWORDS["extend_tips"],
    single_tree: bool = _DEFAULT_KEYWORDS["single_tree"],
    node_type: int = _DEFAULT_KEYWORDS["node_type"],
    link_cost: float = _DEFAULT_KEYWORDS["link_cost"],
    keep_length: float = _DEFAULT_KEYWORDS["keep_length"],
    max_trees: int = _DEFAULT_KEYWORDS["max_trees"],
    long_link_factor: float = _DEFAULT_KEYWORDS["long_link_factor"],
    dark_gap_ratio: float = _DEFAULT_KEYWORDS["dark_gap_ratio"],
    crossing_distance: float = _DEFAULT_KEYWORDS["crossing_distance"],
    crossing_angle: float = _DEFAULT_KEYWORDS["crossing_angle"],
    image: Any | None = None,
    min_contrast: float = _DEFAULT_KEYWORDS["min_contrast"],
    faint_spur_ratio: float = _DEFAULT_KEYWORDS["faint_spur_ratio"],
    smooth_iterations: int = _DEFAULT_KEYWORDS["smooth_iterations"],
) -> np.ndarray:
    """Trace a neuron reconstruction from a probability map, bridging weak gaps with the direction map.

    Steps: (1) threshold ``prob >= threshold``, skeletonise (Lee's 3D thinning) and build the 26-neighbour
    graph, whose minimum spanning forest removes the redundant diagonals of junction clusters; (2) prune spurs
    (see :func:`~neurolink_monai.tracing.pruning.prune_spurs`) and walk the endpoints on to the neurite tips,
    which thinning stops short of (``extend_tips``); (3) bridge gaps: endpoints of different pieces
    whose outward directions face each other are joined along the cheapest path through ``prob`` when that path
    crosses at most ``max_gap`` voxels below the threshold (see
    :func:`~neurolink_monai.tracing.bridging.bridge_gaps`); endpoint directions come from ``direction`` or, without
    it, from the skeleton; (0) with an ``image`` and ``min_contrast``, pieces of the mask that the image does not
    show are dropped first (:func:`~neurolink_monai.tracing.contrast.gate_by_contrast`); (3b) with ``link_cost`` or ``max_trees``, grow the main tree through weak stretches and
    drop the specks (:func:`~neurolink_monai.tracing.linking.link_pieces`); (4) one tree per connected piece, rooted at ``root`` (its nearest skeleton voxel), else
    at the soma (largest distance value) or, for a piece without a soma (or with ``soma_in_view`` False), an
    endpoint (preferably one on the volume border, where the neurite enters; the thickest such, with an ``image``
    the brightest); pieces shorter than
    ``min_component_length`` are dropped; (5) one SWC node per skeleton voxel with radius = ``distance`` there
    (without a distance map: the Euclidean distance to the nearest background voxel of the mask), the nodes inside
    unbranched sections smoothed off the voxel staircase (``smooth_iterations``). Lengths, gaps
    and angles are measured in voxel steps, or, when ``spacing`` is given, in in-plane (x) voxels with the
    anisotropy honoured (a z step counts ``sz / sx``), the unit of SWC radii and of the distance map. The
    result is deterministic.

    Args:
        prob: ``(D, H, W)`` or ``(1, D, H, W)`` probability in [0, 1], or a mask (see :func:`as_probability`).
        direction: optional ``(3, D, H, W)`` neurite tangent, components ``(z, y, x)``, unnormalised, sign-free.
        distance: optional ``(D, H, W)`` or ``(1, D, H, W)`` distance map (EDT of the neurite mask, voxels).
        threshold: foreground threshold in (0, 1].
        root: optional root point in SWC ``(x, y, z)`` voxel coordinates (0-based, inside the volume).
        spacing: voxel size ``(z, y, x)``; sets the anisotropy of the geometry and is needed for ``physical_units``.
        physical_units: return coordinates times the spacing (and radius times the x spacing) instead of voxels.
        max_gap, min_spur_length, min_component_length, min_facing_cos, bridge_to_side, direction_window, soma_ratio,
        soma_in_view, min_radius, extend_tips, single_tree, node_type, link_cost, keep_length, max_trees,
        long_link_factor, dark_gap_ratio, crossing_distance, crossing_angle, min_contrast, faint_spur_ratio,
        smooth_iterations: see
            :class:`TraceConfig` (where each one lives: :data:`TRACE_KEYWORDS`).
        image: optional ``(D, H, W)`` or ``(C, D, H, W)`` image the probability was predicted from, for
            ``min_contrast``, ``faint_spur_ratio``, ``dark_gap_ratio``, the choice of root endpoints and, with
            ``soma_in_view`` False, of the main tree.

    Returns:
        ``(N, 7)`` float64 SWC array (id, type, x, y, z, radius, parent), ids 1..N, parents before children,
        each tree contiguous and depth-first; x runs along W, y along H, z along D. Empty ``(0, 7)`` when
        nothing reaches the threshold.

    Raises:
        TypeError / ValueError: bad shapes, NaN/Inf, out-of-range values, a root outside the volume, bad
            parameters, or ``physical_units`` without ``spacing``.
    """
    cfg = TraceConfig.from_keywords(
        threshold=threshold,
        max_gap=max_gap,
        min_spur_length=min_spur_length,
        min_component_length=min_component_length,
        min_facing_cos=min_facing_cos,
        bridge_to_side=bridge_to_side,
        direction_window=direction_window,
        soma_ratio=soma_ratio,
        soma_in_view=soma_in_view,
        min_radius=min_radius,
        extend_tips=extend_tips,
        single_tree=single_tree,
        node_type=node_type,
        link_cost=link_cost,
        keep_length=keep_length,
        max_trees=max_trees,
        long_link_factor=long_link_factor,
        dark_gap_ratio=dark_gap_ratio,
        crossing_distance=crossing_distance,
        crossing_angle=crossing_angle,
        min_contrast=min_contrast,
        faint_spur_ratio=faint_spur_ratio,
        smooth_iterations=smooth_iterations,
    )
    return trace_with_config(prob, direction, distance, root, spacing, physical_units, cfg, image=image)


def trace_with_config(
    prob: Any,
    direction: Any | None = None,
    distance: Any | None = None,
    root: Sequence[float] | None = None,
    spacing: Sequence[float] | None = None,
    physical_units: bool = False,
    config: TraceConfig | None = None,
    names: Sequence[str] = ("prob", "direction", "distance"),
    image: Any | None = None,
) -> np.ndarray:
    """:func:`trace_swc` with its parameters in a :class:`TraceConfig`; ``names`` label the three inputs (e.g.
    their file names) in error messages; ``image`` is the stack the probability came from (for ``min_contrast``,
    ``faint_spur_ratio`` and the choice of root endpoints)."""
    cfg = TraceConfig() if config is None else config
    if not isinstance(cfg, TraceConfig):
        raise TypeError(f"config must be a TraceConfig, got {type(cfg).__name__}.")
    p_name, d_name, r_name = names
    p = as_probability(prob, p_name)
    dirs = None if direction is None else as_direction(direction, p.shape, d_name)
    dist = None if distance is None else as_distance(distance, p.shape, r_name)
    root_zyx = None if root is None else check_root(root, p.shape)
    sp = None if spacing is None else check_spacing(spacing)
    if physical_units and sp is None:
        raise ValueError("physical_units=True needs the voxel spacing (z, y, x); pass spacing=(sz, sy, sx).")
    scale = None if sp is None else np.asarray(sp, dtype=np.float64) / sp[2]
    img = None if image is None else _image_array(image, p.shape, p_name)
    evidence = levels = None
    if img is not None:
        background = background_and_noise(img, p >= cfg.threshold, scale)
        if cfg.min_contrast > 0:
            p, evidence = _gate(p, img, cfg, scale, background)
        levels = (img, background[0], level_noise(img, background[0], p >= cfg.threshold))
    swc = _trace(p, dirs, dist, root_zyx, cfg, scale, evidence, levels)
    if physical_units and len(swc):
        swc = swc_to_physical(swc, sp)
    return swc


def _trace(
    prob: np.ndarray,
    direction: np.ndarray | None,
    distance: np.ndarray | None,
    root_zyx: np.ndarray | None,
    cfg: TraceConfig,
    scale: np.ndarray | None = None,
    evidence: np.ndarray | None = None,
    levels: tuple[np.ndarray, np.ndarray, float] | None = None,
) -> np.ndarray:
    """The tracing pipeline on validated inputs; voxel units out, lengths measured with ``scale``; ``evidence``
    (D, H, W), the image contrast of the mask's pieces, ranks the trees (:func:`link_pieces`); ``levels``, the image,
    its local background (:func:`background_and_noise`) and the noise of node levels (:func:`level_noise`), drives
    the removal of faint spurs and ranks the endpoints that may become roots."""
    mask = prob >= cfg.threshold
    coords = thin_curves(mask, return_coords=True)
    if len(coords) == 0:
        logger.warning("no voxel reaches the threshold %s; the trace is empty", cfg.threshold)
        return np.zeros((0, 7), dtype=np.float64)
    radius = skeleton_radius(coords, mask, distance, scale)
    forest = spanning_forest(voxel_graph(coords, scale))
    keep = prune_spurs(forest, cfg.min_spur_length, radius)
    forest, radius = forest.subgraph(keep), radius[keep]
    if cfg.extend_tips:
        # before bridging, so that the gaps measured are those between the neurite tips
        forest, radius = _extend_tips(forest, radius, mask, cfg.bridge.window, direction)
    bridged = bridge_gaps(forest, radius, prob, cfg.threshold, cfg.bridge, direction)
    graph, radius = bridged.graph, bridged.radius
    logger.debug(
        "skeleton %d voxels, %d after pruning, %d bridges", len(coords), forest.num_nodes, len(bridged.bridges)
    )
    main_node = None
    if cfg.link.max_link_cost > 0 or cfg.link.max_trees > 0:
        root_node = None if root_zyx is None else _nearest_node(graph, root_zyx)
        node_evidence = None if evidence is None else evidence[tuple(graph.points.T)]
        linked = link_pieces(graph, radius, prob, cfg.threshold, cfg.link, root_node, node_evidence, levels)
        graph, radius, main_node = linked.graph, linked.radius, linked.main_node
    node_level = None
    if levels is not None:
        image, background, noise = levels
        node_level = node_levels(image, background, graph.points)
        # last, on the final graph: a spur removed earlier could no longer be bridged or linked to its continuation
        keep = _faint_spurs_kept(graph, main_node, node_level, noise, cfg.faint_spur_ratio)
        if not keep.all():
            graph, radius, node_level = graph.subgraph(keep), radius[keep], node_level[keep]
            main_node = None if main_node is None or main_node < 0 else int(np.cumsum(keep)[main_node] - 1)
        if not cfg.soma_in_view and root_zyx is None and main_node is not None and main_node >= 0:
            # an axon stack: the traced neuron is the one labelled brightest where it enters, not the largest
            entering = brightest_entry_tree(graph, node_level, mask.shape)
            main_node = entering if entering >= 0 else main_node
    swc = forest_to_swc(
        graph,
        radius,
        root=root_zyx,
        soma_ratio=cfg.soma_ratio if cfg.soma_in_view else math.inf,
        min_component_length=cfg.min_component_length,
        single_tree=cfg.single_tree,
        node_type=cfg.node_type,
        shape=mask.shape,
        first_node=main_node,
        level=node_level,
        level_tolerance=_ROOT_LEVEL_SIGMAS * levels[2] if levels is not None else 0.0,
        toward_entries=not cfg.soma_in_view,
    )
    if len(swc):
        swc = smooth_sections(swc, cfg.smooth_iterations)
        swc[:, 5] = np.maximum(swc[:, 5], cfg.min_radius)
    return swc


def _faint_spurs_kept(
    graph: SkeletonGraph, main_node: int | None, level: np.ndarray, noise: float, ratio: float
) -> np.ndarray:
    """(N,) bool: the nodes of ``graph`` that survive the removal of faint spurs (:func:`prune_faint_spurs`), the
    main tree's first node always."""
    protect = None if main_node is None or main_node < 0 else main_node
    keep = prune_faint_spurs(graph, level, noise, ratio, protect)
    logger.debug("%d nodes of faint spurs removed", int((~keep).sum()))
    return keep


def _image_array(image: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``image`` as a finite float32 ``(D, H, W)`` array (channels averaged) on the probability map's grid."""
    img = _to_numpy(image, "image").astype(np.float32, copy=False)
    if img.shape[-3:] != shape or img.ndim not in (3, 4):
        raise ValueError(f"{name}: the image {tuple(img.shape)} does not match the probability map {shape}.")
    _check_finite(img, "image")
    return img.mean(axis=0) if img.ndim == 4 else img


def _gate(
    prob: np.ndarray,
    img: np.ndarray,
    cfg: TraceConfig,
    scale: np.ndarray | None,
    background: tuple[np.ndarray, float],
) -> tuple[np.ndarray, np.ndarray]:
    """``prob`` without the pieces the image does not show, and the contrast map of the kept pieces."""
    gated, dropped, contrast = gate_by_contrast(
        prob, img, cfg.threshold, cfg.min_contrast, scale, return_contrast=True, background=background
    )
    logger.debug("%d pieces below contrast %s dropped", dropped, cfg.min_contrast)
    return gated, contrast


def _nearest_node(graph: SkeletonGraph, zyx: np.ndarray) -> int:
    scale = np.ones(3) if graph.spacing is None else graph.spacing
    return int(np.argmin(np.linalg.norm(graph.positions() - np.asarray(zyx) * scale, axis=1)))
