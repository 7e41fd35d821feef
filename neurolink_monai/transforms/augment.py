# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Flips and 90-degree rotations that keep precomputed direction maps right.

The simplest correct pipeline computes the targets after spatial augmentation (``DirectionMapd`` and
``DistanceMapd`` on the augmented label). When targets are precomputed, use these transforms instead of
MONAI's ``RandFlipd`` / ``RandRotate90d``: they apply the same random flip/rotation to every key and
additionally negate/permute the vector components of ``direction_keys``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.transforms import Flip, MapTransform, RandomizableTransform, Rotate90

from ..utils import as_positive_int
from .direction import apply_component_map, flip_components, rotate90_components

__all__ = ["RandFlipWithDirectiond", "RandRotate90WithDirectiond"]


class RandFlipWithDirectiond(RandomizableTransform, MapTransform):
    """With probability ``prob`` flip ``keys`` and ``direction_keys`` (MONAI ``Flip``), negating the flipped
    components of the direction maps and re-canonicalising them.

    Args:
        keys: scalar volumes ``(C, D, H, W)`` (image, label, distance, ...).
        direction_keys: ``(3, D, H, W)`` direction maps.
        prob: probability of flipping.
        spatial_axis: spatial axis or axes (0 = D, 1 = H, 2 = W).
    """

    def __init__(
        self,
        keys: KeysCollection,
        direction_keys: KeysCollection = ("direction",),
        prob: float = 0.5,
        spatial_axis: int | Sequence[int] = 0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.direction_keys = [direction_keys] if isinstance(direction_keys, str) else list(direction_keys)
        self.spatial_axis = spatial_axis
        self.flipper = Flip(spatial_axis=spatial_axis)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.flipper(d[key])
        for key in self.direction_keys:
            if key in d:
                d[key] = apply_component_map(self.flipper(d[key]), flip_components(self.spatial_axis))
            elif not self.allow_missing_keys:
                raise KeyError(f"direction key {key!r} not found in the data.")
        return d


class RandRotate90WithDirectiond(RandomizableTransform, MapTransform):
    """With probability ``prob`` rotate by ``k * 90`` degrees (``k`` uniform in 1..``max_k``) in ``spatial_axes``.

    ``keys`` go through MONAI ``Rotate90``; ``direction_keys`` too, then their components are permuted/negated
    (:func:`~neurolink_monai.transforms.rotate90_components`) and re-canonicalised.
    """

    def __init__(
        self,
        keys: KeysCollection,
        direction_keys: KeysCollection = ("direction",),
        prob: float = 0.5,
        max_k: int = 3,
        spatial_axes: tuple[int, int] = (1, 2),
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.direction_keys = [direction_keys] if isinstance(direction_keys, str) else list(direction_keys)
        self.max_k = as_positive_int(max_k, "max_k")
        self.spatial_axes = tuple(spatial_axes)
        self._k = 1

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._k = int(self.R.randint(self.max_k)) + 1

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        rot = Rotate90(self._k, self.spatial_axes)
        for key in self.key_iterator(d):
            d[key] = rot(d[key])
        for key in self.direction_keys:
            if key in d:
                d[key] = apply_component_map(rot(d[key]), rotate90_components(self._k, self.spatial_axes))
            elif not self.allow_missing_keys:
                raise KeyError(f"direction key {key!r} not found in the data.")
        return d
