# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Image evidence for traced pieces: probability over an empty (or pure-noise) image is dropped, neurites stay."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from neurolink_monai.tracing import TraceSWCd, trace_swc
from neurolink_monai.tracing.contrast import background_and_noise, component_contrast, gate_by_contrast


def _scene(noise: float, signal: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image with one neurite along x (y=12) over Poisson background ``noise`` (0: a background clipped to 0),
    and a probability map that finds the neurite and also a long false piece (y=40) where the image is background.
    """
    rng = np.random.default_rng(seed)
    shape = (12, 56, 96)
    image = rng.poisson(noise, size=shape).astype(np.float32) if noise > 0 else np.zeros(shape, np.float32)
    image[5:7, 11:14, 8:88] += rng.poisson(signal, size=(2, 3, 80))
    prob = np.zeros(shape, dtype=np.float32)
    prob[5:7, 11:14, 8:88] = 0.9
    prob[5:7, 39:42, 8:88] = 0.9  # the network's hallucination: nothing in the image there
    if noise == 0:
        image[6, 40, 20] = 250.0  # one hot voxel under the hallucination does not make it bright
    return image, prob


@pytest.mark.parametrize("noise, signal", [(0.0, 200.0), (4.0, 12.0)])
def test_the_piece_the_image_shows_is_kept_the_other_dropped(noise, signal):
    image, prob = _scene(noise, signal)
    labels, contrast = component_contrast(image, prob >= 0.5)
    neurite, ghost = labels[6, 12, 40], labels[6, 40, 40]
    assert contrast[neurite] >= 2.0 > contrast[ghost]
    gated, dropped = gate_by_contrast(prob, image, 0.5, 2.0)
    assert dropped == 1
    assert np.all(gated[5:7, 39:42, 8:88] == 0) and np.all(gated[5:7, 11:14, 8:88] == prob[5:7, 11:14, 8:88])
    assert gated is not prob and prob[6, 40, 40] == np.float32(0.9)  # the input is not modified


def test_clipped_background_has_a_noise_floor_not_zero():
    image = np.zeros((6, 20, 20), np.float32)
    image[3, 10, 2:18] = 100.0
    background, sigma = background_and_noise(image, image > 0)
    assert sigma > 0 and np.all(np.isfinite(background))


def test_trace_with_image_drops_the_false_tree_and_without_image_keeps_it():
    image, prob = _scene(4.0, 12.0)
    both = trace_swc(prob, max_gap=0.0, min_contrast=2.0)
    assert np.count_nonzero(both[:, 6] == -1) == 2  # no image: the min_contrast check cannot run
    swc = trace_swc(prob, max_gap=0.0, image=image, min_contrast=2.0)
    assert np.count_nonzero(swc[:, 6] == -1) == 1 and np.all(np.abs(swc[:, 3] - 12) <= 2)
    assert np.array_equal(trace_swc(prob, max_gap=0.0, image=image), both)  # min_contrast 0: unchanged


def test_trace_transform_reads_the_image_key():
    image, prob = _scene(0.0, 200.0)
    data = {"prob": MetaTensor(torch.as_tensor(prob[None])), "image": MetaTensor(torch.as_tensor(image[None]))}
    out = TraceSWCd(keys="prob", image_key="image", max_gap=0.0, min_contrast=2.0)(data)
    assert np.count_nonzero(out["swc"][:, 6] == -1) == 1


def test_image_of_another_shape_is_refused_with_its_shapes():
    image, prob = _scene(0.0, 200.0)
    with pytest.raises(ValueError, match=r"image \(12, 56, 95\)"):
        trace_swc(prob, image=image[..., :95], min_contrast=2.0)


def test_contrast_map_gives_each_kept_voxel_its_piece_contrast():
    image, prob = _scene(4.0, 12.0)
    labels, contrast = component_contrast(image, prob >= 0.5)
    gated, dropped, evidence = gate_by_contrast(prob, image, 0.5, 2.0, return_contrast=True)
    neurite = labels[6, 12, 40]
    assert evidence.shape == prob.shape and evidence.dtype == np.float32
    assert np.allclose(evidence[labels == neurite], contrast[neurite])
    assert np.all(evidence[labels != neurite] == 0)  # the dropped piece and the background carry no evidence


def test_main_tree_is_the_piece_the_image_shows_best_not_the_longest():
    """A long faint piece (a web of background texture) and a shorter bright neurite: with the image, the neurite
    comes first (the DIADEM metric scores only the first tree); without it, the longest piece does."""
    rng = np.random.default_rng(1)
    shape = (12, 56, 120)
    image = rng.poisson(4.0, size=shape).astype(np.float32)
    prob = np.zeros(shape, dtype=np.float32)
    prob[5:7, 11:14, 10:70] = 0.9  # the neurite, 60 voxels, bright
    image[5:7, 11:14, 10:70] += 40.0
    prob[5:7, 39:42, 5:115] = 0.9  # 110 voxels, faint: contrast about 3 sigmas, above the gate
    image[5:7, 39:42, 5:115] += 6.0
    kwargs = dict(max_gap=0.0, link_cost=30.0, max_trees=2, keep_length=20.0)
    without = trace_swc(prob, **kwargs)
    assert np.all(np.abs(without[without[:, 6] == -1][0, 3] - 40) <= 2)  # longest first
    swc = trace_swc(prob, image=image, min_contrast=2.0, **kwargs)
    first_tree = swc[: np.flatnonzero(swc[:, 6] == -1)[1]]
    assert np.count_nonzero(swc[:, 6] == -1) == 2 and np.all(np.abs(first_tree[:, 3] - 12) <= 2)
