# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The MONAI bundle in bundle/: metadata, config properties, bundle root and dataset folder, initialisation
helpers and the shipped weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from neurolink_monai.bundle_utils import (
    BUNDLE_ROOT_ENV,
    as_bool,
    default_bundle_root,
    image_preprocessing_from_config,
    init_foreground_prior,
    load_datalist,
    resolve_dataset_dir,
)
from neurolink_monai.networks import NeuroLinkNet, num_output_channels
from neurolink_monai.transforms import DEFAULT_PERCENTILES

from helpers import BUNDLE, CONFIGS, META, REPO, bundle_configs


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
    assert train["image_preprocessing"] == infer["image_preprocessing"]
    assert train["train"]["deterministic_transforms"].startswith("$@image_preprocessing + ")
    assert train["validate"]["preprocessing"]["transforms"].startswith("$@image_preprocessing + ")
    assert infer["preprocessing"]["transforms"] == "@image_preprocessing"


def test_image_preprocessing_is_listed_in_the_config_and_overridable():
    steps = image_preprocessing_from_config(CONFIGS / "inference.json")
    assert [type(t).__name__ for t in steps] == [
        "LoadImaged",
        "EnsureChannelFirstd",
        "ToZYXd",
        "CheckStackd",
        "MicroscopyNormalized",
        "EnsureTyped",
    ]
    check, scale, typed = steps[3].transform, steps[4].transform, steps[5]
    assert check.num_channels == 1 and tuple(check.percentiles) == DEFAULT_PERCENTILES
    assert (scale.lower, scale.upper, scale.clip) == (*DEFAULT_PERCENTILES, True)
    assert typed.dtype == (torch.float32,) and typed.converter.track_meta is True
    changed = image_preprocessing_from_config(
        CONFIGS / "train.json", intensity_percentiles=[1, 99], **{"image_preprocessing#4#clip": False}
    )
    assert (changed[4].transform.lower, changed[4].transform.upper, changed[4].transform.clip) == (1, 99, False)
    assert tuple(changed[3].transform.percentiles) == (1, 99)
    with pytest.raises(ValueError, match=r"metadata\.json: the config has no 'image_preprocessing'"):
        image_preprocessing_from_config(CONFIGS / "metadata.json")


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
        config_file=bundle_configs(*names),
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


@pytest.mark.parametrize("name", ["model.pt", "synthetic_only.pt"])
def test_shipped_model_loads_into_the_inference_network(name):
    path = BUNDLE / "models" / name
    if not path.is_file():
        pytest.skip(f"bundle/models/{name} not shipped yet")
    assert path.stat().st_size < 25 * 2**20
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
