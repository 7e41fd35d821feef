# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Spur pruning: remove the terminal branches that are not neurite.

Two rules, both tracing policies built on the shared section decomposition
(:func:`~neurolink_monai.skeleton.unbranched_sections`): :func:`prune_spurs` removes the short spurs that thinning
grows from bumps on a neurite's surface; :func:`prune_faint_spurs` removes spurs that the image shows much dimmer
than the neurite they leave (the skeleton of a mask that spreads into a confocal stack's out-of-focus flare)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..skeleton import Sections, SkeletonGraph, unbranched_sections

__all__ = ["prune_faint_spurs", "prune_spurs"]

# nodes of the parent neurite, from the branch node outwards, whose image level a spur is compared with
_PARENT_NODES = 10
# a spur is faint only when it is dimmer than the ratio by this many standard errors of its own level
_SIGNIFICANCE = 2.0
# skeleton nodes along a path are correlated through the 3x3x3 smoothing of the image: one in three is independent
_NODES_PER_SAMPLE = 3.0


@dataclass
class _Branch:
    """A path between two key nodes made of one section, or of several merged where a branch node lost its
    other branches.

    Attributes:
        ends: the two end nodes.
        length: sum of the lengths of its sections.
        sections: indices of its sections.
        inner_keys: former branch nodes now inside the path.
    """

    ends: tuple[int, int]
    length: float
    sections: list[int]
    inner_keys: list[int] = field(default_factory=list)

    def far_end(self, node: int) -> int:
        """The end that is not ``node``."""
        return self.ends[1] if self.ends[0] == node else self.ends[0]


class _SpurPruner:
    """The state of :func:`prune_spurs`: the branches by id, the branches at each key node and the node degrees."""

    def __init__(self, forest: SkeletonGraph, min_spur_length: float, radius: np.ndarray) -> None:
        self.sections = unbranched_sections(forest)
        self.min_spur_length = min_spur_length
        self.radius = radius
        ends = np.unique(self.sections.ends)  # key nodes on some section (isolated voxels play no part)
        self.degree = dict(zip(ends.tolist(), self.sections.degree[ends].tolist()))
        self.branches: dict[int, _Branch] = {}
        self.incident: dict[int, list[int]] = {k: [] for k in self.degree}
        for s, ((a, b), length) in enumerate(zip(self.sections.ends.tolist(), self.sections.length.tolist())):
            self.branches[s] = _Branch((a, b), length, [s])
            self.incident[a].append(s)
            self.incident[b].append(s)
        self.next_id = len(self.branches)
        self.removed_sections: list[int] = []
        self.removed_nodes: list[int] = []

    def spur_ends(self, branch: _Branch) -> tuple[int, int] | None:
        """``(leaf, branch node)`` of a branch from an endpoint to a branch node, else None."""
        a, b = branch.ends
        if self.degree[a] == 1 and self.degree[b] >= 3:
            return a, b
        if self.degree[b] == 1 and self.degree[a] >= 3:
            return b, a
        return None

    def is_short_spur(self, branch: _Branch) -> bool:
        ends = self.spur_ends(branch)
        return ends is not None and branch.length - self.radius[ends[1]] < self.min_spur_length

    def one_pass(self) -> bool:
        """Remove the short spurs of the current branches, shortest first; whether any was removed."""
        candidates = sorted((b.length, bid) for bid, b in self.branches.items() if self.is_short_spur(b))
        changed = False
        for _, bid in candidates:
            branch = self.branches.get(bid)
            if branch is None or not self.is_short_spur(branch):
                continue
            self.remove(bid)
            changed = True
        return changed

    def remove(self, bid: int) -> None:
        """Remove a spur; merge the two branches left at its branch node when that node drops to degree 2."""
        branch = self.branches.pop(bid)
        leaf, node = self.spur_ends(branch)  # type: ignore[misc]
        self.removed_sections.extend(branch.sections)
        self.removed_nodes.extend(branch.inner_keys)
        self.removed_nodes.append(leaf)
        self.incident[node].remove(bid)
        self.degree[node] -= 1
        self.degree[leaf] = 0
        if self.degree[node] != 2:
            return
        first, second = (self.branches[i] for i in self.incident[node])
        far1, far2 = first.far_end(node), second.far_end(node)
        merged = _Branch(
            (far1, far2),
            first.length + second.length,
            first.sections + second.sections,
            first.inner_keys + second.inner_keys + [node],
        )
        for old in self.incident[node]:
            del self.branches[old]
            for far in (far1, far2):
                if old in self.incident[far]:
                    self.incident[far].remove(old)
        self.incident[node] = []
        self.branches[self.next_id] = merged
        self.incident[far1].append(self.next_id)
        self.incident[far2].append(self.next_id)
        self.next_id += 1


def prune_spurs(forest: SkeletonGraph, min_spur_length: float, radius: np.ndarray | None = None) -> np.ndarray:
    """Which nodes survive spur pruning.

    A spur is a branch from an endpoint (degree 1) to a branch node (degree >= 3), made of the forest's unbranched
    sections (:func:`~neurolink_monai.skeleton.unbranched_sections`). It is removed when its length, less the
    radius at its branch node (the part hidden inside the parent neurite), is below ``min_spur_length``.
    Spurs are removed shortest first (equal lengths in section order), and a branch node always keeps at least two
    of its branches, so the longest of several short forks at a neurite's tip survives as its continuation. When a
    branch node drops to degree 2, its two remaining branches merge and may become a (longer) spur in the next
    pass; passes repeat until nothing changes. Isolated chains (endpoint to endpoint) are never removed here.

    Args:
        forest: an acyclic :class:`~neurolink_monai.skeleton.SkeletonGraph`; lengths use its ``spacing``.
        min_spur_length: visible spur length below which a spur is removed, in the units of ``forest.spacing``.
        radius: optional (N,) radius per node, in the same units; zero when omitted.

    Returns:
        (N,) bool mask of the nodes to keep.
    """
    keep = np.ones(forest.num_nodes, dtype=bool)
    if min_spur_length <= 0 or len(forest.edges) == 0:
        return keep
    rad = np.zeros(forest.num_nodes) if radius is None else np.asarray(radius, dtype=np.float64)
    pruner = _SpurPruner(forest, min_spur_length, rad)
    while pruner.one_pass():
        pass
    if pruner.removed_sections:
        removed = np.asarray(pruner.removed_sections, dtype=np.int64)
        keep[np.isin(pruner.sections.node_section, removed)] = False
    if pruner.removed_nodes:
        keep[np.asarray(pruner.removed_nodes, dtype=np.int64)] = False
    return keep


def _spurs(sections: Sections) -> list[tuple[int, np.ndarray]]:
    """``(section, path from the endpoint to the branch node)`` of every section that runs from an endpoint
    (degree 1) to a branch node (degree >= 3)."""
    degree = sections.degree
    spurs = []
    for s, (a, b) in enumerate(sections.ends.tolist()):
        if degree[a] == 1 and degree[b] >= 3:
            spurs.append((s, sections.paths[s]))
        elif degree[b] == 1 and degree[a] >= 3:
            spurs.append((s, sections.paths[s][::-1]))
    return spurs


def _parent_level(sections: Sections, level: np.ndarray, node: int, spur: int, spur_ids: set[int]) -> float:
    """Median ``level`` over the first :data:`_PARENT_NODES` nodes of the sections at branch node ``node`` other
    than section ``spur`` (the sections that are not spurs themselves when there are any)."""
    others = [s for s in np.flatnonzero((sections.ends == node).any(axis=1)).tolist() if s != spur]
    trunk = [s for s in others if s not in spur_ids] or others
    near = []
    for s in trunk:
        path = sections.paths[s]
        near.append((path if path[0] == node else path[::-1])[:_PARENT_NODES])
    return float(np.median(level[np.concatenate(near)]))


def prune_faint_spurs(
    graph: SkeletonGraph, level: np.ndarray, noise: float, ratio: float, protect: int | None = None
) -> np.ndarray:
    """Which nodes survive the removal of faint spurs.

    A spur (an unbranched section from an endpoint to a branch node) is removed when the image level along its
    outer half (the median over its nodes from the tip to half-way) is below ``ratio`` times the level of the
    neurite it leaves (the median over the nearest :data:`_PARENT_NODES` nodes of the other sections at its branch
    node), by at least two standard errors of the spur's own median (``noise`` over the square root of its
    independent samples). A real side branch carries a good part of its parent's signal; a spur traced into the
    out-of-focus flare beside a bright neurite does not. In a noisy stack the standard error keeps the rule from
    acting on spurs whose level the image cannot tell. One pass, on the spurs of the given graph.

    Args:
        graph: a :class:`~neurolink_monai.skeleton.SkeletonGraph` (a forest).
        level: ``(N,)`` image level per node, background removed (e.g.
            :func:`~neurolink_monai.tracing.contrast.image_excess` at the nodes).
        noise: standard deviation of ``level`` in the background, >= 0.
        ratio: fraction of the parent's level below which a spur is faint; 0 disables the rule.
        protect: a node that must survive (e.g. the main tree's node the SWC starts from), or None.

    Returns:
        (N,) bool mask of the nodes to keep.
    """
    level = np.asarray(level, dtype=np.float64)
    if level.shape != (graph.num_nodes,):
        raise ValueError(f"level must hold one value per node, shape ({graph.num_nodes},), got {level.shape}.")
    keep = np.ones(graph.num_nodes, dtype=bool)
    if ratio <= 0 or len(graph.edges) == 0:
        return keep
    sections = unbranched_sections(graph)
    spurs = _spurs(sections)
    spur_ids = {s for s, _ in spurs}
    for s, path in spurs:
        outer = path[: max(1, (len(path) - 1) // 2)]
        if protect is not None and protect in path[:-1]:
            continue
        parent = _parent_level(sections, level, int(path[-1]), s, spur_ids)
        standard_error = 1.2533 * noise / np.sqrt(max(1.0, len(outer) / _NODES_PER_SAMPLE))
        if parent > 0 and np.median(level[outer]) + _SIGNIFICANCE * standard_error < ratio * parent:
            keep[path[:-1]] = False
    return keep
