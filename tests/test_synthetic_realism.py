# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The realism layer of the synthetic generator (confocal artefacts, uint8) and real SWC morphologies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurolink_monai.data.synthetic import (
    RealismConfig,
    SyntheticConfig,
    crop_swc,
    generate_dataset,
    generate_sample,
    place_swc,
)
from neurolink_monai.data.synthetic.__main__ import main
from neurolink_monai.io import read_tiff_stack, write_swc
from neurolink_monai.transforms import SWCToMask

SHAPE = (24, 48, 48)


def _sample(cfg: SyntheticConfig, i: int = 0, seed: int = 0, **kw):
    return generate_sample(SHAPE, np.random.SeedSequence(seed, spawn_key=(i,)), cfg, **kw)


def test_default_config_has_no_realism_and_its_settings_are_unchanged():
    cfg = SyntheticConfig()
    assert cfg.realism is None and cfg.swc_dir is None
    d = cfg.to_dict()
    assert "realism" not in d and "swc_dir" not in d and "swc_spacing" not in d
    assert SyntheticConfig(realism="none") == cfg
    a = _sample(cfg)
    b = _sample(SyntheticConfig(realism=None))
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["image"].dtype == np.uint16


def test_confocal_preset_is_deterministic_uint8_and_labels_only_the_neurite():
    cfg = SyntheticConfig(realism="confocal")
    assert isinstance(cfg.realism, RealismConfig) and cfg.realism.name == "confocal"
    a, b = _sample(cfg, return_components=True), _sample(cfg)
    np.testing.assert_array_equal(a["image"], b["image"])
    assert a["image"].dtype == np.uint8 and a["label"].dtype == np.uint8
    # the label is the rasterised SWC on the sample's own (anisotropic) grid, whatever the artefacts
    spacing = a["spacing"]
    assert spacing[1:] == cfg.spacing[1:] and 1.5 <= spacing[0] / spacing[2] <= 3.5
    np.testing.assert_array_equal(a["label"], SWCToMask(SHAPE, spacing)(a["swc"])[0])
    comp, sample_cfg = a["components"], a["config"]
    assert sample_cfg.spacing == spacing and sample_cfg.psf_sigma != cfg.psf_sigma
    off = a["label"] == 0
    assert comp.clutter[off].max() > comp.clutter[off].mean() * 3  # puncta, cell bodies, ... off the neurite
    assert (a["image"][off] == 0).mean() > 0.5  # black level: most background clipped to 0, as in DIADEM stacks


def test_realism_varies_between_samples_and_reaches_saturation_and_the_noise_floor():
    cfg = SyntheticConfig(realism="confocal")
    signals, saturated = [], []
    for i in range(6):
        s = _sample(cfg, i, return_components=True)
        signals.append(s["config"].signal)
        saturated.append((s["image"] == 255).any())
    assert max(signals) / min(signals) > 3 and any(saturated)


def test_realism_knobs_round_trip_and_validate():
    cfg = SyntheticConfig(realism={"name": "confocal", "puncta_density": 0.0, "output_dtype": "uint16"})
    assert cfg.realism.puncta_density == 0.0 and cfg.realism.signal_scale == RealismConfig().signal_scale
    again = SyntheticConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert _sample(cfg)["image"].dtype == np.uint16
    with pytest.raises(ValueError, match="'lens'"):
        SyntheticConfig(realism="lens")
    with pytest.raises(ValueError, match=r"\(2.0, 1.0\)"):
        RealismConfig(psf_lateral=(2.0, 1.0))
    with pytest.raises(ValueError, match="'uint12'"):
        RealismConfig(output_dtype="uint12")
    with pytest.raises(ValueError, match="wobble"):
        RealismConfig.from_dict({"wobble": 1})


def _line(n: int, start, step, radius: float = 1.0, first_id: int = 1) -> np.ndarray:
    rows = []
    for k in range(n):
        x, y, z = (s + k * d for s, d in zip(start, step))
        rows.append([first_id + k, 2, x, y, z, radius, -1 if k == 0 else first_id + k - 1])
    return np.asarray(rows, dtype=float)


def test_crop_swc_drops_outside_nodes_and_reroots_children():
    swc = _line(40, (-10.0, 5.0, 5.0), (1.0, 0.0, 0.0))  # enters the volume at x = 0
    out = crop_swc(swc, (16, 16, 16))
    assert len(out) == 16 and out[:, 2].min() == 0.0 and out[:, 2].max() == 15.0
    assert (out[:, 6] == -1).sum() == 1 and out[0, 6] == -1
    gap = np.concatenate(
        [_line(5, (1.0, 2.0, 2.0), (1.0, 0, 0))[:, :], _line(2, (1.0, 30.0, 2.0), (1.0, 0, 0), 1.0, 6)]
    )
    gap[5, 6] = 5
    assert len(crop_swc(gap, (16, 16, 16))) == 5  # the 1-node fragment after the exit is dropped


def test_place_swc_puts_a_real_trace_inside_the_volume(tmp_path):
    tree = _line(200, (0.0, 100.0, 10.0), (1.0, 0.2, 0.1), radius=2.0)
    rng = np.random.default_rng(0)
    placed = place_swc([tree], SHAPE, rng, spacing=(2.0, 1.0, 1.0), swc_spacing=(1.0, 0.5, 0.5))
    zyx = placed[:, [4, 3, 2]]
    assert len(placed) >= 10 and np.all(zyx >= 0) and np.all(zyx <= np.asarray(SHAPE) - 1)
    np.testing.assert_allclose(placed[:, 5], 1.0)  # radius 2 source voxels of 0.5 -> 1 voxel of 1.0
    seg = np.linalg.norm(np.diff(zyx * [2.0, 1.0, 1.0], axis=0), axis=1)
    np.testing.assert_allclose(np.median(seg), np.sqrt(0.5**2 + 0.1**2 + 0.1**2), rtol=1e-3)  # physical length kept


def test_swc_dir_samples_render_the_traces(tmp_path):
    swc_dir = tmp_path / "traces"
    swc_dir.mkdir()
    write_swc(swc_dir / "a.swc", _line(120, (5.0, 20.0, 10.0), (1.0, 0.1, 0.05)))
    write_swc(swc_dir / "b.swc", _line(120, (20.0, 5.0, 10.0), (0.1, 1.0, 0.05)))
    cfg = SyntheticConfig(swc_dir=str(swc_dir), num_crossing_fibres=0.0, realism="confocal")
    s = _sample(cfg, 1)
    assert len(s["swc"]) >= 10
    np.testing.assert_array_equal(s["label"], SWCToMask(SHAPE, s["spacing"])(s["swc"])[0])
    np.testing.assert_array_equal(s["image"], _sample(cfg, 1)["image"])
    with pytest.raises(ValueError, match="holds no .swc"):
        _sample(SyntheticConfig(swc_dir=str(tmp_path / "traces" / "..")), 0)


def test_cli_realism_and_swc_dir(tmp_path, capsys):
    swc_dir = tmp_path / "traces"
    swc_dir.mkdir()
    write_swc(swc_dir / "a.swc", _line(80, (2.0, 20.0, 10.0), (1.0, 0.1, 0.05)))
    out = tmp_path / "ds"
    args = ["--output-dir", str(out), "--num-samples", "2", "--shape", "16", "32", "32", "--no-progress"]
    assert main(args + ["--realism", "confocal", "--swc-dir", str(swc_dir), "--swc-spacing", "1", "0.5", "0.5"]) == 0
    image, spacing = read_tiff_stack(out / "imagesTr" / "synth_000.tif")
    assert image.dtype == np.uint8 and spacing[0] / spacing[2] >= 1.5
    manifest = json.loads((out / "synthetic_manifest.json").read_text())
    assert manifest["settings"]["config"]["realism"]["name"] == "confocal"
    with pytest.raises(SystemExit) as e:
        main(["--output-dir", str(tmp_path / "x"), "--swc-dir", str(tmp_path / "missing")])
    assert e.value.code == 2 and "--swc-dir" in capsys.readouterr().err


def test_dataset_with_realism_writes_per_sample_spacing(tmp_path):
    path = generate_dataset(
        tmp_path / "ds",
        num_samples=2,
        shape=(16, 32, 32),
        seed=1,
        config=SyntheticConfig(realism="confocal"),
        progress=False,
    )
    spacings = {read_tiff_stack(Path(path).parent / "imagesTr" / f"synth_00{i}.tif")[1] for i in range(2)}
    assert len(spacings) == 2
