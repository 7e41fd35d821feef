# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The tracing command line: ``python -m neurolink_monai.tracing PROB.tif --output OUT.swc ...``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from neurolink_monai.io import read_swc, write_tiff_stack
from neurolink_monai.tracing.__main__ import main

SHAPE = (12, 20, 48)


def bar_prob(gap: int = 3) -> np.ndarray:
    """A square bar along x (z 5..7, y 9..11) from x = 3 to 44 with ``gap`` empty columns from x = 22."""
    prob = np.zeros(SHAPE, dtype=np.float32)
    prob[5:8, 9:12, 3:22] = 0.9
    prob[5:8, 9:12, 22 + gap : 45] = 0.9
    return prob


@pytest.fixture
def prob_tif(tmp_path):
    path = tmp_path / "prob.tif"
    write_tiff_stack(path, bar_prob(), spacing=(2.0, 0.5, 0.5))
    return path


def run(capsys, *args: str) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cli_writes_a_voxel_swc(prob_tif, tmp_path, capsys):
    out = tmp_path / "out.swc"
    code, text = run(capsys, prob_tif, "--output", out, "--max-gap", 8)
    assert code == 0 and "1 tree" in text
    swc = read_swc(out)
    assert (swc[:, 6] == -1).sum() == 1
    assert swc[:, 2].min() <= 4 and swc[:, 2].max() >= 43  # voxel x
    assert np.allclose(swc[:, 3], 10) and np.allclose(swc[:, 4], 6)
    header = out.read_text().splitlines()[:5]
    assert any("prob.tif" in h for h in header) and any("max_gap=8.0" in h for h in header)


def test_cli_preview_draws_the_trace_on_the_projection(prob_tif, tmp_path, capsys):
    from PIL import Image

    from neurolink_monai.data import TREE_COLOURS

    out, png = tmp_path / "out.swc", tmp_path / "out.png"
    for extra in ((), ("--physical",)):  # drawn in voxels either way
        code, text = run(capsys, prob_tif, "-o", out, "--max-gap", 8, "--preview", png, *extra)
        assert code == 0 and f"wrote {png}" in text
        picture = np.asarray(Image.open(png))
        assert picture.shape == (SHAPE[1], SHAPE[2], 3)
        main_tree = (picture == np.rint(TREE_COLOURS[0, :3] * 255)).all(-1)
        assert main_tree[10, 5:43].all() and not main_tree[:7].any()  # along the bar at y = 10, nowhere else
    for bad, words in ((tmp_path / "p.jpg", ".png"), (tmp_path / "no" / "p.png", "does not exist")):
        code, text = run(capsys, prob_tif, "-o", tmp_path / "x.swc", "--preview", bad)
        assert code == 2 and "--preview" in text and words in text
    assert not (tmp_path / "x.swc").exists()


def test_cli_root_physical_and_spacing_override(prob_tif, tmp_path, capsys):
    out = tmp_path / "phys.swc"
    code, _ = run(capsys, prob_tif, "-o", out, "--root", 44, 10, 6, "--physical", "--max-gap", 8)
    assert code == 0
    swc = read_swc(out)
    assert np.allclose(swc[0, 2:5], (44 * 0.5, 10 * 0.5, 6 * 2.0))  # spacing from the TIFF's ImageJ metadata
    code, _ = run(capsys, prob_tif, "-o", out, "--physical", "--spacing", 3, 2, 1, "--max-gap", 8)  # z y x
    swc = read_swc(out)
    assert code == 0 and np.allclose(swc[:, 3], 20.0) and np.allclose(swc[:, 4], 18.0)


def test_cli_uses_direction_and_distance_maps(tmp_path, capsys):
    prob = tmp_path / "p.tif"
    write_tiff_stack(prob, bar_prob(gap=4))
    across = np.zeros((3, *SHAPE), dtype=np.float32)
    across[1] = 1.0  # claims the neurite runs along y: the two ends do not face each other
    write_tiff_stack(tmp_path / "dir.tif", across)
    write_tiff_stack(tmp_path / "dist.tif", np.full(SHAPE, 1.5, dtype=np.float32))
    out = tmp_path / "o.swc"
    code, text = run(capsys, prob, "-o", out, "--direction", tmp_path / "dir.tif", "--distance", tmp_path / "dist.tif")
    assert code == 0 and "2 tree" in text
    assert np.allclose(read_swc(out)[:, 5], 1.5)


def test_cli_errors_name_the_file(prob_tif, tmp_path, capsys):
    out = tmp_path / "o.swc"
    write_tiff_stack(tmp_path / "small.tif", np.zeros((3, 12, 20, 40), dtype=np.float32))
    code, text = run(capsys, prob_tif, "-o", out, "--direction", tmp_path / "small.tif")
    assert code == 2 and "small.tif" in text and "(3, 12, 20, 48)" in text
    nan = bar_prob()
    nan[0, 0, 0] = np.nan
    import tifffile

    tifffile.imwrite(tmp_path / "nan.tif", nan)
    code, text = run(capsys, tmp_path / "nan.tif", "-o", out)
    assert code == 2 and "nan.tif" in text and "non-finite" in text
    code, text = run(capsys, prob_tif, "-o", out, "--root", 100, 1, 1)
    assert code == 2 and "--root" in text and "prob.tif" in text and "outside" in text
    code, text = run(capsys, prob_tif, "-o", prob_tif)
    assert code == 2 and "refusing to overwrite" in text
    code, text = run(capsys, prob_tif, "-o", tmp_path / "missing" / "o.swc")
    assert code == 2 and "does not exist" in text
    code, text = run(capsys, tmp_path / "absent.tif", "-o", out)
    assert code == 2 and "absent.tif" in text
    logits = bar_prob() * 10 - 5
    write_tiff_stack(tmp_path / "logits.tif", logits)
    code, text = run(capsys, tmp_path / "logits.tif", "-o", out)
    assert code == 2 and "logits.tif" in text and "sigmoid" in text
    assert not out.exists()


def test_cli_empty_volume_writes_an_empty_swc_with_a_warning(tmp_path, capsys):
    write_tiff_stack(tmp_path / "zero.tif", np.zeros(SHAPE, dtype=np.uint8))
    out = tmp_path / "o.swc"
    code, text = run(capsys, tmp_path / "zero.tif", "-o", out)
    assert code == 0 and "warning" in text and read_swc(out).shape == (0, 7)


def test_python_dash_m_entry_point(prob_tif, tmp_path):
    out = tmp_path / "m.swc"
    proc = subprocess.run(
        [sys.executable, "-m", "neurolink_monai.tracing", str(prob_tif), "--output", str(out), "--threshold", "0.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert read_swc(out).shape[1] == 7


def test_cli_smooth_iterations(tmp_path, capsys):
    prob = np.zeros(SHAPE, dtype=np.float32)
    for x in range(3, 45):  # an oblique line of slope 1/4: a staircase on the voxel grid
        prob[6, 4 + x // 4, x] = 0.9
    path = tmp_path / "oblique.tif"
    write_tiff_stack(path, prob)
    out0, out10 = tmp_path / "staircase.swc", tmp_path / "smooth.swc"
    assert run(capsys, path, "-o", out0, "--smooth-iterations", 0)[0] == 0
    code, text = run(capsys, path, "-o", out10)
    assert code == 0
    staircase, smooth = read_swc(out0), read_swc(out10)
    assert np.all(np.mod(staircase[:, 2:5], 1.0) == 0.0) and not np.all(np.mod(smooth[:, 2:5], 1.0) == 0.0)
    header = out10.read_text().splitlines()[:5]
    assert any("smooth_iterations=10" in h and "long_link_factor=1.0" in h for h in header)
    assert run(capsys, path, "-o", out10, "--long-link-factor", 2)[0] == 0
    assert any("long_link_factor=2.0" in h for h in out10.read_text().splitlines()[:5])
    code, text = run(capsys, path, "-o", out0, "--smooth-iterations", -1)
    assert code == 2 and "smooth_iterations" in text.strip().splitlines()[-1]


def test_cli_soma_outside_roots_at_the_entry(tmp_path, capsys):
    prob = np.zeros(SHAPE, dtype=np.float32)
    zz, yy, xx = np.indices(SHAPE)
    prob[(zz - 6) ** 2 + (yy - 10) ** 2 + (xx - 30) ** 2 <= 25] = 0.9  # a blob the default takes for a soma
    prob[6, 10, 0:30] = 0.9  # the thin neurite entering at x = 0
    path, out = tmp_path / "blob.tif", tmp_path / "blob.swc"
    write_tiff_stack(path, prob)
    assert run(capsys, path, "-o", out)[0] == 0
    assert read_swc(out)[0, 1] == 1 and abs(read_swc(out)[0, 2] - 30) <= 1.5
    code, _ = run(capsys, path, "-o", out, "--soma-outside")
    swc = read_swc(out)
    assert code == 0 and swc[0, 2] <= 1.0 and (swc[:, 1] == 3).all()
    assert any("soma_in_view=False" in h for h in out.read_text().splitlines()[:5])
