# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Random neuron-like trees (soma, tapering tortuous branching neurites) and crossing fibres, as SWC arrays.

Neurites grow as persistent random walks: the heading of a branch wobbles around its initial direction following
two Ornstein-Uhlenbeck processes (a fast wobble and a slow bend), so paths are tortuous yet keep a course, as in
Sholl-type descriptions of real arbors. Branch points follow a Poisson process along each neurite; daughters leave
at ``branch_angle`` from the parent tangent, with a radius shrunk towards the minimum as Rall's 3/2 rule does for
thin daughters. Radii decay exponentially with path distance from the soma.

Everything is drawn from the ``numpy.random.Generator`` passed in: the same generator state gives the same tree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
from scipy.signal import lfilter

from ...utils import as_positive_int
from .config import SyntheticConfig

__all__ = ["generate_neuron", "generate_crossing_fibres", "concatenate_swc", "check_shape"]

NODE_STEP = 1.0  # node spacing along a neurite, x-voxel units
SOMA, AXON, DENDRITE = 1, 2, 3
_MAX_TRIES = 5


def check_shape(shape: Sequence[int], name: str = "shape", minimum: int = 8) -> tuple[int, int, int]:
    """Validate a ``(D, H, W)`` volume shape of integers ``>= minimum``."""
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be three integers (D, H, W), got {shape!r}.") from None
    if len(out) != 3 or any(int(s) != s for s in shape) or any(s < minimum for s in out):
        raise ValueError(f"{name} must be three integers (D, H, W), each >= {minimum}, got {shape!r}.")
    return out  # type: ignore[return-value]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _frame(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors orthogonal to the unit vector ``d`` and to each other."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = _unit(np.cross(d, helper))
    return u, np.cross(d, u)


def _ou(rng: np.random.Generator, n: int, corr_length: float, sigma: float) -> np.ndarray:
    """Two independent Ornstein-Uhlenbeck paths ``(2, n)`` started at 0, stationary std ``sigma``."""
    rho = np.exp(-NODE_STEP / corr_length)
    return lfilter([sigma * np.sqrt(1.0 - rho**2)], [1.0, -rho], rng.standard_normal((2, n)), axis=1)


def _random_direction(rng: np.random.Generator, extent: np.ndarray) -> np.ndarray:
    """Random unit vector, biased towards the long axes of the volume so neurites have room to grow."""
    return _unit(rng.standard_normal(3) * (extent / extent.max()) ** 2)


def _grow_path(
    rng: np.random.Generator,
    start: np.ndarray,
    direction: np.ndarray,
    length: float,
    tortuosity: float,
    wobble_length: float,
    hi: np.ndarray,
) -> np.ndarray:
    """Positions ``(n, 3)`` after ``start`` of a wobbling path, cut at the first step that leaves ``[0, hi]``."""
    n = max(int(np.ceil(length / NODE_STEP)), 1)
    u, v = _frame(direction)
    wobble = _ou(rng, n, wobble_length, tortuosity) + _ou(rng, n, 6.0 * wobble_length, tortuosity)
    heading = _unit(direction[None] + wobble[0][:, None] * u[None] + wobble[1][:, None] * v[None])
    pos = start[None] + NODE_STEP * np.cumsum(heading, axis=0)
    outside = np.flatnonzero(np.any((pos < 0.0) | (pos > hi), axis=1))
    return pos[: outside[0]] if outside.size else pos


def _rotate_away(rng: np.random.Generator, d: np.ndarray, angle_deg: float) -> np.ndarray:
    u, v = _frame(d)
    phi = rng.uniform(0.0, 2.0 * np.pi)
    th = np.deg2rad(angle_deg)
    return _unit(np.cos(th) * d + np.sin(th) * (np.cos(phi) * u + np.sin(phi) * v))


def _to_swc(pos_ref: np.ndarray, radius: np.ndarray, types: np.ndarray, parent: np.ndarray, a: np.ndarray):
    """Assemble an SWC array from reference-space (x-voxel units, z y x order) nodes; parents are row indices."""
    vox = pos_ref / a
    n = len(pos_ref)
    swc = np.empty((n, 7), dtype=np.float64)
    swc[:, 0] = np.arange(1, n + 1)
    swc[:, 1] = types
    swc[:, 2], swc[:, 3], swc[:, 4] = vox[:, 2], vox[:, 1], vox[:, 0]
    swc[:, 5] = radius
    swc[:, 6] = np.where(parent >= 0, parent + 1, -1)
    return swc


def generate_neuron(
    shape: Sequence[int], rng: np.random.Generator, config: SyntheticConfig | None = None
) -> np.ndarray:
    """Grow one random neuron inside a ``(D, H, W)`` volume.

    Args:
        shape: volume shape ``(D, H, W)``.
        rng: random generator; all randomness comes from it.
        config: morphology knobs (``spacing``, ``num_stems``, ``soma_radius``, ``radius``, ``taper_length``,
            ``branch_spacing``, ``branch_angle``, ``max_branch_order``, ``tortuosity``, ``wobble_length``,
            ``total_length``); defaults to ``SyntheticConfig()``.

    Returns:
        SWC array ``(N, 7)`` float64 in voxel units (0-based, ``x -> W``, ``y -> H``, ``z -> D``), ids ``1..N`` with
        parents before children. Row 0 is the soma (type 1, the root); one stem is an axon (type 2), the others
        dendrites (type 3). Every node lies inside ``[0, shape - 1]``; radii are in x-voxel units.
    """
    shape = check_shape(shape)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}.")
    cfg = SyntheticConfig() if config is None else config
    a = np.asarray(cfg.spacing) / cfg.spacing[2]
    hi = (np.asarray(shape) - 1) * a
    budget = cfg.total_length * float(np.linalg.norm(hi))
    # Stems that leave the volume early give stunted trees: retry a few times, keep the first (or largest) that
    # reaches half the length budget.
    best = None
    for _ in range(_MAX_TRIES):
        swc = _grow_tree(rng, cfg, a, hi, budget)
        if best is None or len(swc) > len(best):
            best = swc
        if len(swc) * NODE_STEP >= 0.5 * budget:
            break
    return best


def _grow_tree(
    rng: np.random.Generator, cfg: SyntheticConfig, a: np.ndarray, hi: np.ndarray, budget: float
) -> np.ndarray:
    r_min, r_max = cfg.radius

    soma = rng.uniform(0.3, 0.7, 3) * hi
    soma_r = rng.uniform(*cfg.soma_radius)
    pos, rad, types, parents = [soma[None]], [np.array([soma_r])], [np.array([SOMA])], [np.array([-1])]
    count, used = 1, 0.0

    n_stems = int(rng.integers(cfg.num_stems[0], cfg.num_stems[1] + 1))
    axon = int(rng.integers(n_stems))
    # Queue entries: start point, direction, start radius, branch order, parent row, SWC type, max length, and
    # whether the start point is a new node (stems) or an existing branch point (daughters).
    queue: deque = deque()
    for k in range(n_stems):
        d = _random_direction(rng, hi)
        start = np.clip(soma + d * soma_r, 0.0, hi)
        r0 = rng.uniform(0.75, 1.0) * r_max
        queue.append((start, d, r0, 1, 0, AXON if k == axon else DENDRITE, np.inf, True))

    while queue and used < budget:
        start, d, r0, order, par, typ, length, first_is_start = queue.popleft()
        length = min(length, budget - used)
        path = _grow_path(rng, start, d, length, cfg.tortuosity, cfg.wobble_length, hi)
        if first_is_start:
            path = np.concatenate([start[None], path])
        if len(path) < 2:
            continue
        s = NODE_STEP * np.arange(1, len(path) + 1)
        radius = r_min + (r0 - r_min) * np.exp(-s / cfg.taper_length)
        idx = count + np.arange(len(path))
        pos.append(path)
        rad.append(radius)
        types.append(np.full(len(path), typ))
        parents.append(np.concatenate([[par], idx[:-1]]))
        count += len(path)
        used += NODE_STEP * len(path)
        if order >= cfg.max_branch_order:
            continue
        # Branch points: a Poisson process along the path, away from both ends.
        gaps = rng.exponential(cfg.branch_spacing, size=int(len(path) / cfg.branch_spacing * 3) + 2)
        where = np.cumsum(gaps)
        where = where[(where > 5.0) & (where < s[-1] - 5.0)]
        for w in where:
            i = int(w / NODE_STEP)
            tangent = _unit(path[min(i + 1, len(path) - 1)] - path[max(i - 1, 0)])
            d_child = _rotate_away(rng, tangent, rng.uniform(*cfg.branch_angle))
            r_child = r_min + (radius[i] - r_min) * rng.uniform(0.5, 0.8)
            l_child = rng.gamma(2.0, cfg.branch_spacing)
            queue.append((path[i], d_child, r_child, order + 1, int(idx[i]), typ, l_child, False))

    return _to_swc(
        np.concatenate(pos), np.concatenate(rad), np.concatenate(types), np.concatenate(parents).astype(np.int64), a
    )


def _slab_exit(c: np.ndarray, d: np.ndarray, hi: np.ndarray) -> float:
    """Distance from ``c`` (inside the box ``[0, hi]``) along ``d`` to the box boundary."""
    with np.errstate(divide="ignore"):
        t = np.where(d > 0, (hi - c) / d, np.where(d < 0, -c / d, np.inf))
    return float(t.min())


def generate_crossing_fibres(
    shape: Sequence[int], rng: np.random.Generator, config: SyntheticConfig | None = None, count: int | None = None
) -> np.ndarray:
    """Fibres of neighbouring neurons that cross the volume from face to face, as one multi-tree SWC array.

    Each fibre is an almost straight (half the neuron's tortuosity), unbranched axon (type 2) of near-constant radius
    drawn from ``config.crossing_radius``, passing through a random point of the central part of the volume.

    Args:
        shape: volume shape ``(D, H, W)``.
        rng: random generator.
        config: the knobs; defaults to ``SyntheticConfig()``.
        count: number of fibres; by default Poisson with mean ``config.num_crossing_fibres``.

    Returns:
        SWC array ``(N, 7)`` (possibly empty), each fibre a separate tree rooted at its first node.
    """
    shape = check_shape(shape)
    cfg = SyntheticConfig() if config is None else config
    if count is None:
        count = int(rng.poisson(cfg.num_crossing_fibres))
    count = as_positive_int(count, "count", allow_zero=True)
    a = np.asarray(cfg.spacing) / cfg.spacing[2]
    hi = (np.asarray(shape) - 1) * a
    trees = []
    for _ in range(count):
        centre = rng.uniform(0.2, 0.8, 3) * hi
        d = _random_direction(rng, hi)
        start = centre - max(_slab_exit(centre, -d, hi) - 1.0, 0.0) * d
        path = _grow_path(
            rng, start, d, 2.0 * float(np.linalg.norm(hi)), 0.5 * cfg.tortuosity, 4 * cfg.wobble_length, hi
        )
        path = np.concatenate([start[None], path])
        if len(path) < 5:
            continue
        r = rng.uniform(*cfg.crossing_radius) * np.exp(0.1 * _ou(rng, len(path), 30.0, 1.0)[0])
        n = len(path)
        parent = np.arange(-1, n - 1)
        trees.append(_to_swc(path, np.clip(r, cfg.crossing_radius[0], None), np.full(n, AXON), parent, a))
    return concatenate_swc(trees)


def concatenate_swc(trees: Sequence[np.ndarray]) -> np.ndarray:
    """Stack SWC arrays into one, renumbering ids ``1..N`` in order (each input keeps its own roots)."""
    parts, offset = [], 0
    for tree in trees:
        if len(tree) == 0:
            continue
        tree = tree.copy()
        order = np.argsort(tree[:, 0], kind="stable")
        row_of_id = np.searchsorted(tree[order, 0], tree[:, 6])
        new_parent = np.where(tree[:, 6] == -1, -1, order[np.clip(row_of_id, 0, len(tree) - 1)] + 1 + offset)
        tree[:, 0] = np.arange(1, len(tree) + 1) + offset
        tree[:, 6] = new_parent
        parts.append(tree)
        offset += len(tree)
    return np.concatenate(parts) if parts else np.zeros((0, 7))
