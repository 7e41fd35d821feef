# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The MONAI bundle in bundle/: metadata, config properties, and the real workflows run through monai.bundle with
tiny overrides (train one short epoch, resume, evaluate, infer, export), plus the inference input checks."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
from monai.bundle import ConfigParser, ConfigWorkflow, ckpt_export, verify_net_in_out
from monai.data import load_net_with_metadata

from neurolink_monai.bundle_utils import (
    BUNDLE_ROOT_ENV,
    EvaluationReport,
    InferenceInputError,
    NeuroLinkOutputsd,
    OutputWriteError,
    SaveNeuroLinkOutputsd,
    as_bool,
    default_bundle_root,
    inference_preprocessing,
    init_foreground_prior,
    input_stem,
    latest_checkpoint,
    list_inference_inputs,
    load_datalist,
    resolve_dataset_dir,
)
from neurolink_monai.data.synthetic import generate_dataset
from neurolink_monai.io import read_swc, read_tiff_stack, write_tiff_stack
from neurolink_monai.networks import NeuroLinkNet, num_output_channels

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundle"
CONFIGS = BUNDLE / "configs"
META = str(CONFIGS / "metadata.json")

# Tiny settings shared by every workflow run: a 2-level network, small patches, one short epoch.
TINY = {
    "network_def#features": [4, 8],
    "patch_size": [16, 32, 32],
    "num_samples": 1,
    "val_roi_size": [24, 48, 48],
    "val_interval": 1,
}


def _configs(*names: str) -> list[str]:
    return [str(CONFIGS / n) for n in names]


def _workflow(names, workflow_type="train", **override) -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=_configs(*names), meta_file=META, logging_file=False, workflow_type=workflow_type, **override
    )
    wf.initialize()
    return wf


def _run(names, workflow_type="train", **override) -> ConfigWorkflow:
    wf = _workflow(names, workflow_type, **override)
    wf.run()
    wf.finalize()
    return wf


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    """Six synthetic stacks of 24x48x48 voxels: 2 training, 2 validation, 2 test."""
    folder = tmp_path_factory.mktemp("tiny_dataset")
    generate_dataset(folder, num_samples=6, shape=(24, 48, 48), seed=3, splits=(0.34, 0.33, 0.33), progress=False)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_dataset) -> dict:
    """One epoch of the real training workflow, then a resumed second epoch (both with the tiny overrides)."""
    root = tmp_path_factory.mktemp("bundle_root")
    first = _run(["train.json"], bundle_root=str(root), dataset_dir=str(tiny_dataset), max_epochs=1, **TINY)
    trainer = first.parser.get_parsed_content("train#trainer")
    epoch_length = trainer.state.epoch_length
    ckpt1 = latest_checkpoint(root / "models" / "trained" / "checkpoints")
    best1 = first.parser.get_parsed_content("validate#evaluator").state.best_metric
    second = _run(
        ["train.json"], bundle_root=str(root), dataset_dir=str(tiny_dataset), max_epochs=2, resume="true", **TINY
    )
    return {
        "root": root,
        "epoch_length": epoch_length,
        "ckpt1": ckpt1,
        "best1": best1,
        "first": first,
        "second": second,
    }


# ----------------------------------------------------------------------------------------------- metadata, configs


def test_metadata_has_the_mandatory_keys():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    for key in (
        "schema",
        "version",
        "changelog",
        "monai_version",
        "pytorch_version",
        "numpy_version",
        "required_packages_version",
        "name",
        "task",
        "description",
        "authors",
        "copyright",
        "data_source",
        "intended_use",
        "network_data_format",
    ):
        assert key in meta, key
    assert meta["version"] in meta["changelog"]
    for key in ("monai_version", "pytorch_version", "numpy_version"):
        assert all(part.isdigit() for part in meta[key].split(".")), meta[key]
    fmt = meta["network_data_format"]
    tensor_keys = {"type", "format", "num_channels", "spatial_shape", "dtype", "value_range", "is_patch_data"}
    for io_key, name in (("inputs", "image"), ("outputs", "pred")):
        spec = fmt[io_key][name]
        assert tensor_keys <= set(spec), (io_key, tensor_keys - set(spec))
        assert len(spec["channel_def"]) == spec["num_channels"]
        assert len(spec["spatial_shape"]) == 3
    train = ConfigParser.load_config_file(CONFIGS / "train.json")
    net = train["network_def"]
    assert fmt["inputs"]["image"]["num_channels"] == net["in_channels"]
    assert fmt["outputs"]["pred"]["num_channels"] == num_output_channels(net["out_channels"], net["multitask"])


def test_configs_share_the_network_and_preprocessing():
    train = ConfigParser.load_config_file(CONFIGS / "train.json")
    infer = ConfigParser.load_config_file(CONFIGS / "inference.json")
    assert train["network_def"] == infer["network_def"]
    assert train["intensity_percentiles"] == infer["intensity_percentiles"]
    assert train["threshold"] == infer["threshold"]


@pytest.mark.parametrize(
    "names, workflow_type",
    [
        (["train.json"], "train"),
        (["train.json", "evaluate.json"], "train"),
        (["train.json", "train_full.json"], "train"),
        (["inference.json"], "infer"),
    ],
)
def test_config_properties(names, workflow_type, tiny_dataset, tmp_path):
    wf = ConfigWorkflow(
        config_file=_configs(*names),
        meta_file=META,
        logging_file=False,
        workflow_type=workflow_type,
        bundle_root=str(tmp_path),
        dataset_dir=str(tiny_dataset),
        num_workers=0,
    )
    wf.initialize()
    # the checkpoint loaders check their file when built: give them one that fits the config's network
    weights = Path(wf.parser.get_parsed_content("ckpt_path"))  # models/model.pt, or models/trained/ with train.json
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(wf.parser.get_parsed_content("network_def").state_dict(), weights)
    assert wf.check_properties() == []


def test_default_bundle_root(tmp_path, monkeypatch):
    monkeypatch.delenv(BUNDLE_ROOT_ENV, raising=False)
    monkeypatch.chdir(REPO)
    assert Path(default_bundle_root()) == BUNDLE
    monkeypatch.chdir(BUNDLE)
    assert Path(default_bundle_root()) == BUNDLE
    monkeypatch.setenv(BUNDLE_ROOT_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a bundle folder"):
        default_bundle_root()


def test_resolve_dataset_dir(tmp_path, tiny_dataset):
    assert resolve_dataset_dir(str(tiny_dataset), tmp_path) == str(tiny_dataset)
    with pytest.raises(FileNotFoundError, match="dataset.json"):
        resolve_dataset_dir(str(tmp_path), tmp_path)
    made = Path(resolve_dataset_dir(None, tmp_path, num_samples=3, shape=(16, 24, 24), seed=5, progress=False))
    assert made == tmp_path / "data" / "synthetic"
    stamp = (made / "dataset.json").stat().st_mtime_ns
    assert resolve_dataset_dir("", tmp_path, num_samples=3, shape=(16, 24, 24), seed=5, progress=False) == str(made)
    assert (made / "dataset.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    items = load_datalist(made, "training", ["image", "label"])
    assert all(Path(i["image"]).is_file() and Path(i["label"]).is_file() for i in items)
    with pytest.raises(ValueError, match="split must be one of"):
        load_datalist(made, "train")


def test_init_foreground_prior():
    net = init_foreground_prior(NeuroLinkNet(features=(4, 8)), 0.02)
    assert torch.allclose(net.seg_head.bias, torch.tensor([np.log(0.02 / 0.98)], dtype=torch.float32))
    with torch.no_grad():
        prob = torch.sigmoid(net(torch.zeros(1, 1, 8, 8, 8))[:, 0])
    assert float(prob.mean()) < 0.2  # the untrained network starts mostly dark
    softmax = NeuroLinkNet(features=(4, 8), out_channels=2)
    before = softmax.seg_head.bias.clone()
    assert torch.equal(init_foreground_prior(softmax).seg_head.bias, before)
    with pytest.raises(ValueError, match="prior"):
        init_foreground_prior(net, 1.5)


def test_as_bool():
    assert as_bool("true") and as_bool("True") and as_bool(True) and as_bool(1)
    assert not as_bool("false") and not as_bool(False) and not as_bool(None)
    with pytest.raises(ValueError, match="resume"):
        as_bool("maybe", "resume")


# ------------------------------------------------------------------------------------- training, resume, evaluation


def test_training_writes_best_and_last_checkpoints(trained):
    root = trained["root"]
    assert (root / "models" / "trained" / "model.pt").is_file()
    assert not (root / "models" / "model.pt").exists()  # a training never writes over the shipped weights
    state = torch.load(root / "models" / "trained" / "model.pt", weights_only=True)
    net = NeuroLinkNet(features=(4, 8), kernel_size=3)
    net.load_state_dict(state)  # the best model is a plain state dict of the network
    assert trained["ckpt1"].name == "checkpoint_epoch=1.pt"
    assert any((root / "runs").iterdir())  # TensorBoard event files


def test_resume_continues_where_training_stopped(trained):
    root = trained["root"]
    second = trained["second"]
    trainer = second.parser.get_parsed_content("train#trainer")
    n = trained["epoch_length"]
    assert trainer.state.epoch == 2
    assert trainer.state.iteration == 2 * n  # the first epoch was restored, not rerun
    optimizer = second.parser.get_parsed_content("optimizer")
    steps = {int(s["step"]) for s in optimizer.state.values()}
    assert steps == {2 * n}  # AdamW moments of the first run were restored
    scheduler = second.parser.get_parsed_content("lr_scheduler")
    assert scheduler.last_epoch == 2
    # the last checkpoint replaces the one it resumed from
    assert [p.name for p in (root / "models" / "trained" / "checkpoints").glob("*.pt")] == ["checkpoint_epoch=2.pt"]
    evaluator = second.parser.get_parsed_content("validate#evaluator")
    assert evaluator.state.best_metric >= trained["best1"]


def test_a_new_training_replaces_stale_checkpoints(tmp_path, tiny_dataset):
    stale = tmp_path / "models" / "trained" / "checkpoints" / "checkpoint_epoch=7.pt"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"left over by a longer, earlier run")
    _run(["train.json"], bundle_root=str(tmp_path), dataset_dir=str(tiny_dataset), max_epochs=1, **TINY)
    assert [p.name for p in stale.parent.iterdir()] == ["checkpoint_epoch=1.pt"]
    assert latest_checkpoint(stale.parent).name == "checkpoint_epoch=1.pt"


def test_resume_without_checkpoint_fails_clearly(tmp_path, tiny_dataset):
    wf = _workflow(["train.json"], bundle_root=str(tmp_path), dataset_dir=str(tiny_dataset), resume=True, **TINY)
    with pytest.raises(Exception) as info:
        wf.run()
    assert "holds no checkpoint" in "".join(_messages(info.value))


def _messages(e: BaseException) -> list[str]:
    out = []
    while e is not None:
        out.append(str(e))
        e = e.__cause__ or e.__context__
    return out


def test_evaluate_writes_per_case_and_mean_metrics(trained, tiny_dataset, capsys):
    root = trained["root"]
    _run(
        ["train.json", "evaluate.json"],
        bundle_root=str(root),
        dataset_dir=str(tiny_dataset),
        **{k: v for k, v in TINY.items() if k != "val_interval"},
    )
    report = json.loads((root / "eval" / "metrics.json").read_text())
    test_stems = [input_stem(i["image"]) for i in load_datalist(tiny_dataset, "test")]
    assert [c["case"] for c in report["cases"]] == test_stems
    expected = {"mean_dice", "precision", "recall", "cldice", "betti0_error", "skeleton_breaks", "erl_fraction"}
    assert set(report["mean"]) == expected
    for name in ("mean_dice", "precision", "recall", "cldice"):
        values = [c[name] for c in report["cases"]]
        assert all(0.0 <= v <= 1.0 for v in values)
        assert report["mean"][name] == pytest.approx(float(np.mean(values)), abs=1e-5)
    with open(root / "eval" / "metrics.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "case" and set(rows[0][1:]) == expected
    assert [r[0] for r in rows[1:]] == test_stems + ["mean"]
    out = capsys.readouterr().out
    assert "mean_dice" in out and test_stems[0] in out


# ------------------------------------------------------------------------------------------------------ inference


def _infer(root, inputs, out_dir, **override):
    """Inference with the weights a training under ``root`` wrote (``models/trained/model.pt``, the documented
    ``--ckpt_path`` override) when there are some, else ``models/model.pt``."""
    trained_weights = Path(root) / "models" / "trained" / "model.pt"
    if trained_weights.is_file():
        override.setdefault("ckpt_path", str(trained_weights))
    return _run(
        ["inference.json"],
        workflow_type="infer",
        bundle_root=str(root),
        input_path=inputs,
        output_dir=str(out_dir),
        roi_size=[24, 48, 48],
        **{"network_def#features": [4, 8]},
        **override,
    )


def test_inference_writes_all_outputs_named_after_the_stem(trained, tiny_dataset, tmp_path):
    src = Path(load_datalist(tiny_dataset, "test")[0]["image"])
    stack, spacing = read_tiff_stack(src)
    sp = (2.0, 0.5, 0.5)
    image = tmp_path / "in" / "my stack.ome.tif"
    image.parent.mkdir()
    write_tiff_stack(image, stack, spacing=sp)
    out = tmp_path / "out"
    _infer(trained["root"], str(image), out, save_direction=True, save_distance="true")
    names = sorted(p.name for p in out.iterdir())
    stem = "my stack"
    assert names == sorted(
        f"{stem}{s}" for s in ("_prob.tif", "_seg.tif", ".swc", "_mip.png", "_dir.tif", "_dist.tif")
    ), names
    prob, prob_sp = read_tiff_stack(out / f"{stem}_prob.tif")
    seg, _ = read_tiff_stack(out / f"{stem}_seg.tif")
    direction, _ = read_tiff_stack(out / f"{stem}_dir.tif")
    dist, _ = read_tiff_stack(out / f"{stem}_dist.tif")
    assert prob.shape == seg.shape == dist.shape == stack.shape and direction.shape == (3, *stack.shape)
    assert prob.dtype == np.float32 and 0.0 <= prob.min() and prob.max() <= 1.0
    assert seg.dtype == np.uint8 and set(np.unique(seg)) <= {0, 255}
    np.testing.assert_array_equal(seg > 0, prob >= 0.5)
    np.testing.assert_allclose(prob_sp, sp, rtol=1e-5)
    norms = np.linalg.norm(direction, axis=0)
    assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))
    assert dist.min() >= 0
    swc = read_swc(out / f"{stem}.swc")
    assert swc.ndim == 2 and swc.shape[1] == 7
    if len(swc):  # SWC nodes lie inside the stack, (x, y, z) -> [z, y, x]
        assert np.all(swc[:, 2:5] >= -0.5) and np.all(swc[:, 2:5] <= np.array(stack.shape[::-1]) - 0.5)
    from PIL import Image

    assert Image.open(out / f"{stem}_mip.png").size == (stack.shape[2], stack.shape[1])


def test_inference_with_a_segmentation_only_network(tiny_dataset, tmp_path):
    root = tmp_path / "bundle"
    (root / "models").mkdir(parents=True)
    net = NeuroLinkNet(spatial_dims=3, in_channels=1, out_channels=1, features=(4, 8), kernel_size=3, multitask=False)
    torch.save(net.state_dict(), root / "models" / "model.pt")
    image = load_datalist(tiny_dataset, "test")[0]["image"]
    stem = input_stem(image)
    single = {"network_def#multitask": False, "threshold": 0.45}
    out = tmp_path / "out"
    _infer(root, image, out, **single)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{stem}{s}" for s in ("_prob.tif", "_seg.tif", ".swc", "_mip.png")
    )
    out2 = tmp_path / "out2"
    with pytest.raises(Exception) as info:
        _infer(root, image, out2, save_direction=True, **single)
    assert any("no direction head" in m and Path(image).name in m for m in _messages(info.value))
    assert not out2.exists() or not any(out2.iterdir())


def test_outputs_of_a_single_task_prediction():
    pred = torch.randn(1, 6, 8, 8)
    keys = {"prob_key": "prob", "direction_key": "dir", "distance_key": "dist"}
    with pytest.raises(ValueError, match="no direction head"):
        NeuroLinkOutputsd("pred", **keys)({"pred": pred})
    d = NeuroLinkOutputsd("pred", allow_missing_heads=True, **keys)({"pred": pred})
    assert d["dir"] is None and d["dist"] is None and d["prob"].shape == (1, 6, 8, 8)


def test_inference_on_folder_and_list(trained, tiny_dataset, tmp_path):
    folder = tmp_path / "stacks"
    folder.mkdir()
    for item in load_datalist(tiny_dataset, "test"):
        shutil.copy(item["image"], folder / f"{input_stem(item['image'])}.tiff")
    (folder / "notes.txt").write_text("not an image: ignored")
    out = tmp_path / "out"
    _infer(trained["root"], str(folder), out, trace=False, save_mip=False)
    stems = sorted(input_stem(p) for p in folder.glob("*.tiff"))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}{x}" for s in stems for x in ("_prob.tif", "_seg.tif"))
    out2 = tmp_path / "out2"
    _infer(trained["root"], [str(sorted(folder.glob("*.tiff"))[0])], out2, trace="false")
    assert sorted(p.name for p in out2.iterdir()) == [
        f"{stems[0]}_mip.png",
        f"{stems[0]}_prob.tif",
        f"{stems[0]}_seg.tif",
    ]


def test_inference_reads_nifti_as_zyx(trained, tmp_path):
    rng = np.random.default_rng(0)
    zyx = rng.random((20, 24, 28)).astype(np.float32)
    path = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(np.transpose(zyx, (2, 1, 0)), np.diag([0.4, 0.5, 2.0, 1.0])), str(path))
    data = inference_preprocessing()[0:4]
    d = {"image": str(path)}
    for t in data:
        d = t(d)
    assert tuple(d["image"].shape) == (1, 20, 24, 28)
    np.testing.assert_allclose(d["image"][0].numpy(), zyx, rtol=1e-6)
    out = tmp_path / "out"
    _infer(trained["root"], str(path), out, trace=False)
    prob, spacing = read_tiff_stack(out / "vol_prob.tif")
    assert prob.shape == zyx.shape
    np.testing.assert_allclose(spacing, (2.0, 0.5, 0.4), rtol=1e-5)


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[object, str, str]]:
    """name -> (input_path, file named in the error, expected words)."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty").mkdir()
    tifffile.imwrite(bad / "flat.tif", np.zeros((32, 32), np.uint8))
    write_tiff_stack(bad / "two.tif", np.zeros((2, 8, 32, 32), np.uint8))
    tifffile.imwrite(bad / "nan.tif", np.full((8, 32, 32), np.nan, np.float32))
    (bad / "junk.tif").write_bytes(b"this is not a TIFF file")
    nib.save(nib.Nifti1Image(np.full((16, 16, 8), np.nan, np.float32), np.eye(4)), str(bad / "nan.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 8, 2), np.float32), np.eye(4)), str(bad / "rgb.nii.gz"))
    return {
        "missing": (str(bad / "missing.tif"), "missing.tif", "no such file"),
        "unreadable": (str(bad / "junk.tif"), "junk.tif", "not a TIFF"),
        "2d": (str(bad / "flat.tif"), "flat.tif", "2D"),
        "channels": (str(bad / "two.tif"), "two.tif", "2 channels"),
        "nan": (str(bad / "nan.tif"), "nan.tif", "NaN"),
        "nan_nifti": (str(bad / "nan.nii.gz"), "nan.nii.gz", "NaN"),
        "channels_nifti": (str(bad / "rgb.nii.gz"), "rgb.nii.gz", "2 channels"),
        "empty_folder": (str(bad / "empty"), "empty", "no image stack"),
        "empty_list": ([], "input_path", "empty list"),
    }


BAD_CASES = [
    "missing",
    "unreadable",
    "2d",
    "channels",
    "nan",
    "nan_nifti",
    "channels_nifti",
    "empty_folder",
    "empty_list",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_inputs_fail_clearly_before_writing(case, trained, tiny_dataset, tmp_path):
    path, named, words = _bad_inputs(tmp_path)[case]
    good = load_datalist(tiny_dataset, "test")[0]["image"]
    inputs = [good, path] if isinstance(path, str) else path  # a good stack first: nothing may be written for it
    with pytest.raises(InferenceInputError) as info:
        list_inference_inputs(inputs)
    assert named in str(info.value) and words.lower() in str(info.value).lower(), str(info.value)
    out = tmp_path / "out"
    with pytest.raises(Exception) as info:
        _infer(trained["root"], inputs, out)
    messages = _messages(info.value)
    assert any(named in m and words.lower() in m.lower() for m in messages), messages
    assert not out.exists() or not any(out.iterdir())


def test_duplicate_stems_are_refused(tmp_path, tiny_dataset):
    src = load_datalist(tiny_dataset, "test")[0]["image"]
    (tmp_path / "a").mkdir()
    shutil.copy(src, tmp_path / "a" / "x.tif")
    shutil.copy(src, tmp_path / "x.tiff")
    with pytest.raises(InferenceInputError, match="share the output name stem 'x'"):
        list_inference_inputs([str(tmp_path / "a" / "x.tif"), str(tmp_path / "x.tiff")], validate=False)


def test_outputs_may_not_overwrite_inputs(tmp_path, tiny_dataset):
    src = load_datalist(tiny_dataset, "test")[0]["image"]
    shutil.copy(src, tmp_path / "a.tif")
    shutil.copy(src, tmp_path / "a_seg.tif")
    with pytest.raises(InferenceInputError, match="a_seg.tif: this input would be overwritten"):
        list_inference_inputs(str(tmp_path), validate=False, output_dir=str(tmp_path))
    assert len(list_inference_inputs(str(tmp_path), validate=False, output_dir=str(tmp_path / "out"))) == 2


def test_writer_leaves_nothing_of_a_failed_case(tmp_path, tiny_dataset):
    src = load_datalist(tiny_dataset, "test")[0]["image"]
    d = {"image": src}
    for t in inference_preprocessing():
        d = t(d)
    pred = torch.randn(5, *d["image"].shape[1:])
    d = NeuroLinkOutputsd("pred", prob_key="prob", direction_key="pred_direction", distance_key="pred_distance")(
        {**d, "pred": pred}
    )
    out = tmp_path / "out"
    writer = SaveNeuroLinkOutputsd("image", output_dir=out, save_swc=True)  # no "swc" in the data: fails late
    with pytest.raises(OutputWriteError, match=Path(src).name):
        writer(d)
    assert list(out.iterdir()) == []  # neither the finished TIFFs nor the staging folder remain
    SaveNeuroLinkOutputsd("image", output_dir=out, save_swc=False)(d)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{input_stem(src)}{s}" for s in ("_prob.tif", "_seg.tif", "_mip.png")
    )


def test_evaluation_report_picks_the_metric_column(tmp_path):
    from ignite.engine import Engine, Events
    from monai.data import MetaTensor

    from neurolink_monai.metrics import VoxelPRFHandler

    report = EvaluationReport(tmp_path, metrics={"recall": VoxelPRFHandler("recall")}, print_table=False)
    engine = Engine(lambda e, b: None)
    report.attach(engine)

    def results(e):  # what a VoxelPRFHandler leaves: (N, 4) details (precision, recall, f1, dice) and the mean
        e.state.metric_details = {"recall": torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]])}
        e.state.metrics["recall"] = 0.4

    engine.add_event_handler(Events.EPOCH_COMPLETED, results)
    batches = [
        [{"image": MetaTensor(torch.zeros(1, 2, 2, 2), meta={"filename_or_obj": f"/d/c{i}.tif"})}] for i in (1, 2)
    ]
    engine.run(batches, max_epochs=1)
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert [c["case"] for c in data["cases"]] == ["c1", "c2"]
    assert [c["recall"] for c in data["cases"]] == pytest.approx([0.2, 0.6])
    assert data["mean"] == {"recall": 0.4}
    assert (tmp_path / "metrics.csv").read_text().splitlines()[-1] == "mean,0.4000"


# ----------------------------------------------------------------------------------------------- export, verify


def test_ckpt_export_and_verify_net_in_out(trained, tmp_path):
    root = trained["root"]
    ts_path = tmp_path / "model.ts"
    overrides = {"bundle_root": str(root), "network_def#features": [4, 8]}
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=str(root / "models" / "trained" / "model.pt"),
        meta_file=META,
        config_file=str(CONFIGS / "inference.json"),
        **overrides,
    )
    ts, meta, _ = load_net_with_metadata(str(ts_path))
    assert meta["version"] == json.loads((CONFIGS / "metadata.json").read_text())["version"]
    net = NeuroLinkNet(features=(4, 8), kernel_size=3)
    net.load_state_dict(torch.load(root / "models" / "trained" / "model.pt", weights_only=True))
    net.eval()
    x = torch.rand(1, 1, 16, 24, 32)
    with torch.no_grad():
        torch.testing.assert_close(ts(x), net(x))
    verify_net_in_out(
        net_id="network_def",
        meta_file=META,
        config_file=str(CONFIGS / "inference.json"),
        device="cpu",
        n=2,
        **overrides,
    )


def test_shipped_model_loads_into_the_inference_network():
    path = BUNDLE / "models" / "model.pt"
    if not path.is_file():
        pytest.skip("bundle/models/model.pt not shipped yet")
    assert path.stat().st_size < 25 * 2**20
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


# ------------------------------------------------------------------------------------------------- real data


def test_real_stack_passes_the_input_checks(diadem_dir):
    items = list_inference_inputs(str(diadem_dir / "OP_1.tif"))
    d = items[0]
    for t in inference_preprocessing():
        d = t(d)
    img = d["image"]
    assert img.shape[0] == 1 and img.ndim == 4
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    from neurolink_monai.io import spacing_from_affine

    np.testing.assert_allclose(spacing_from_affine(img.affine), (0.9988, 0.3296, 0.3296), rtol=1e-3)


# ------------------------------------------------------------------------------------------- multi-GPU (gloo CPU)


@pytest.mark.slow
def test_multi_gpu_train_runs_with_two_gloo_processes(tiny_dataset, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "training",
        "--meta_file",
        META,
        "--config_file",
        str(_configs("train.json", "multi_gpu_train.json")),
        "--bundle_root",
        str(tmp_path),
        "--dataset_dir",
        str(tiny_dataset),
        "--max_epochs",
        "1",
        "--logging_file",
        str(CONFIGS / "logging.conf"),
    ]
    for key, value in TINY.items():
        cmd += [f"--{key}", json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "models" / "trained" / "model.pt").is_file()
    assert (tmp_path / "models" / "trained" / "checkpoints" / "checkpoint_epoch=1.pt").is_file()
