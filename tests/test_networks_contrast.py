# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurolink_monai.networks import NeuroLinkNet
from neurolink_monai.networks.contrast import LocalContrast3d, box_sum


def test_box_sum_is_a_zero_padded_moving_sum():
    x = torch.arange(7.0).reshape(1, 7)
    expected = torch.tensor([[1.0, 3.0, 6.0, 9.0, 12.0, 15.0, 11.0]])
    torch.testing.assert_close(box_sum(x, 1, 1), expected)


def test_local_contrast_matches_box_statistics_inside_the_input():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 9, 20, 17) * 3
    radius, floor = (2, 3, 4), 0.05
    kernel, pad = tuple(2 * r + 1 for r in radius), radius
    mean = F.avg_pool3d(x, kernel, stride=1, padding=pad, count_include_pad=False)
    variance = F.avg_pool3d(x * x, kernel, stride=1, padding=pad, count_include_pad=False) - mean**2
    out = LocalContrast3d(radius, floor)(x)
    assert out.shape == (2, 2, 9, 20, 17)
    torch.testing.assert_close(out[:, :1], x)
    torch.testing.assert_close(out[:, 1:], (x - mean) / torch.sqrt(variance + floor**2), atol=1e-4, rtol=1e-4)


def test_local_contrast_does_not_depend_on_the_window_beyond_its_radius():
    torch.manual_seed(1)
    volume = torch.rand(1, 1, 24, 40, 40)
    layer = LocalContrast3d((2, 4, 4))
    whole = layer(volume)
    window = layer(volume[:, :, 4:20, 8:32, 10:34])
    torch.testing.assert_close(window[:, :, 2:-2, 4:-4, 4:-4], whole[:, :, 6:18, 12:28, 14:30], atol=1e-5, rtol=1e-5)


def test_flat_input_has_no_contrast():
    out = LocalContrast3d()(torch.full((1, 1, 8, 16, 16), 0.3))
    assert float(out[:, 1].abs().max()) < 1e-3


@pytest.mark.parametrize("radius,floor", [((1, 2), 0.02), ((0, 2, 2), 0.02), ((1.5, 2, 2), 0.02), ((1, 2, 2), 0.0)])
def test_bad_arguments_are_refused(radius, floor):
    with pytest.raises(ValueError, match="radius|floor"):
        LocalContrast3d(radius, floor)


@pytest.mark.parametrize("radius", ["null", 6])
def test_a_radius_that_is_not_a_sequence_is_refused_by_its_value(radius):
    """A bundle override such as ``--network_def#local_contrast null`` arrives as a string: the message shows it."""
    with pytest.raises(TypeError, match=f"got {radius!r}"):
        LocalContrast3d(radius)


def test_network_with_local_contrast_scripts_and_runs():
    torch.manual_seed(0)
    net = NeuroLinkNet(features=(4, 8), kernel_size=3, norm=("batch", {"affine": True}), local_contrast=(2, 4, 4))
    net.eval()
    x = torch.rand(1, 1, 8, 16, 16)
    assert net.encoders[0].standard[0].in_channels == 2
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(net)(x), net(x), atol=1e-5, rtol=1e-5)
