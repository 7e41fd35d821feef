# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Spur pruning: remove the short terminal branches that thinning grows from bumps on a neurite's surface.

A tracing policy built on the shared section decomposition
(:func:`~neurolink_monai.skeleton.unbranched_sections`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..skeleton import SkeletonGraph, unbranched_sections

__all__ = ["prune_spurs"]


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
