# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""neurolink_monai.utils: the argument checks shared by the subpackages."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from neurolink_monai.utils import (
    as_float_in_range,
    as_positive_float,
    as_positive_int,
    as_spacing,
    count_nonfinite,
    describe_source,
    to_numpy,
)


def test_to_numpy_detaches_tensors_and_keeps_arrays():
    t = torch.ones(2, 3, requires_grad=True) * 2
    out = to_numpy(t)
    assert isinstance(out, np.ndarray) and out.shape == (2, 3) and (out == 2).all()
    arr = np.zeros(3)
    assert to_numpy(arr) is arr
    assert to_numpy(MetaTensor(torch.zeros(1, 2))).shape == (1, 2)


def test_as_spacing():
    np.testing.assert_array_equal(as_spacing((2, 0.5, 0.25)), [2.0, 0.5, 0.25])
    np.testing.assert_array_equal(as_spacing(torch.tensor([1.0, 2.0, 3.0])), [1, 2, 3])
    np.testing.assert_array_equal(as_spacing(None, allow_none=True), [1, 1, 1])
    np.testing.assert_array_equal(as_spacing((1, 2), ndim=2), [1, 2])
    with pytest.raises(ValueError, match=r"stack\.tif: spacing must be 3 positive finite numbers.*\(1, 0, 1\)"):
        as_spacing((1, 0, 1), where="stack.tif")
    with pytest.raises(ValueError, match=r"--spacing must be 3 positive.*\(1, 1\)"):
        as_spacing((1, 1), "--spacing")
    with pytest.raises(ValueError, match="nan"):
        as_spacing((1, float("nan"), 1))
    with pytest.raises(ValueError, match=r"spacing must be 3 numbers.*'abc'"):
        as_spacing(("abc", 1, 1))
    with pytest.raises(ValueError, match="None"):
        as_spacing(None)


def test_as_positive_float():
    assert as_positive_float(np.float32(2.5), "step") == 2.5
    assert as_positive_float(0, "tolerance", allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="step must be a finite number > 0, got 0"):
        as_positive_float(0, "step")
    with pytest.raises(ValueError, match=">= 0, got -1"):
        as_positive_float(-1, "min_radius", allow_zero=True)
    with pytest.raises(ValueError, match="inf"):
        as_positive_float(float("inf"), "x")
    with pytest.raises(TypeError, match="radius_scale must be a number, got 'big'"):
        as_positive_float("big", "radius_scale")


def test_as_float_in_range():
    assert as_float_in_range(np.float32(0.5), "threshold", 0.0, 1.0, low_open=True) == 0.5
    assert as_float_in_range(-1, "min_facing_cos", -1.0, 1.0) == -1.0
    with pytest.raises(ValueError, match=r"threshold must be a finite number in \(0.0, 1.0\], got 0"):
        as_float_in_range(0, "threshold", 0.0, 1.0, low_open=True)
    with pytest.raises(ValueError, match=r"window must be a finite number in \[1.0, inf\], got 0.5"):
        as_float_in_range(0.5, "window", 1.0)
    with pytest.raises(ValueError, match="keep_length.*got inf"):
        as_float_in_range(float("inf"), "keep_length", 0.0)
    with pytest.raises(TypeError, match=r"max_gap must be a number, got True \(bool\)"):
        as_float_in_range(True, "max_gap", 0.0)
    with pytest.raises(TypeError, match="max_gap must be a number, got '3'"):
        as_float_in_range("3", "max_gap", 0.0)


def test_as_positive_int():
    assert as_positive_int(np.int64(3), "workers") == 3 and type(as_positive_int(np.int64(3), "workers")) is int
    assert as_positive_int(0, "max_trees", allow_zero=True) == 0
    with pytest.raises(ValueError, match="workers must be a positive int, got 0"):
        as_positive_int(0, "workers")
    with pytest.raises(ValueError, match="max_trees must be an int >= 0, got -1"):
        as_positive_int(-1, "max_trees", allow_zero=True)
    for bad in (True, 2.0, "2", None):
        with pytest.raises(ValueError, match=f"n must be a positive int, got {bad!r}"):
            as_positive_int(bad, "n")


def test_count_nonfinite_for_arrays_and_tensors():
    x = np.zeros((2, 3, 4), np.float32)
    assert count_nonfinite(x) == (0, None)
    x[1, 2, 0] = np.inf
    x[1, 2, 3] = np.nan
    assert count_nonfinite(x) == (2, (1, 2, 0))
    assert count_nonfinite(torch.from_numpy(x)) == (2, (1, 2, 0))
    assert count_nonfinite(MetaTensor(torch.from_numpy(x))) == (2, (1, 2, 0))
    assert count_nonfinite(np.zeros(3, np.uint8)) == (0, None)
    assert count_nonfinite(torch.zeros(3, dtype=torch.int64)) == (0, None)


def test_describe_source_names_the_file():
    img = MetaTensor(torch.zeros(1, 2, 2, 2), meta={"filename_or_obj": "/data/OP_1.tif"})
    assert describe_source(img, "image") == "/data/OP_1.tif"
    assert describe_source(img, "prob", with_fallback=True) == "prob (/data/OP_1.tif)"
    assert describe_source(torch.zeros(2), "label") == "label"
    assert describe_source(np.zeros(2), "label", with_fallback=True) == "label"


def test_keep_freed_memory_applies_on_glibc_and_is_a_switch():
    import platform

    from neurolink_monai.utils import keep_freed_memory

    assert keep_freed_memory(False) is False
    applied = keep_freed_memory()
    assert isinstance(applied, bool)
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert applied
