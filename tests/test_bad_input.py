# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Bad and awkward input through every entry point, as a table of regression cases (issue 15).

Each case writes its inputs under ``<tmp>/in`` (``make``), then runs one entry point (``call``: the Python API, a
CLI's ``main``, or ``python -m monai.bundle run`` in a subprocess) with its outputs under ``<tmp>/out``, and states
either the error it must give (type, and words of the message, which names the file or option) or that it must
succeed. For every case the inputs must be left byte for byte as they were, and a failed case must leave no output
file. The kill-and-resume training test at the end checks that a resumed training equals an uninterrupted one bit
for bit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch
import zarr

from neurolink_monai.bundle_utils import (
    BinaryLabeld,
    CheckedCheckpointLoader,
    CheckpointError,
    DatasetError,
    InferenceInputError,
    MissingFileError,
    OutputDirError,
    list_inference_inputs,
    load_datalist,
)
from neurolink_monai.data.synthetic import SyntheticConfig, generate_dataset, read_manifest
from neurolink_monai.inference.blockwise import BlockwiseInputError, open_volume
from neurolink_monai.io import TiffStackError, read_swc, read_tiff_stack, write_tiff_stack

from helpers import CONFIGS, META, REPO, TINY, bundle_workflow, run_blockwise_here, tiny_net

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _stack(shape=(12, 40, 40), seed=0) -> np.ndarray:
    """A small valid stack: a bright line on a Poisson background."""
    rng = np.random.default_rng(seed)
    img = rng.poisson(20, shape).astype(np.uint16)
    img[:, shape[1] // 2, 4:-4] += 200
    return img


def _labels(values) -> np.ndarray:
    arr = np.zeros((8, 24, 24), np.uint8)
    for i, v in enumerate(values):
        arr[i, 5:10, 5:10] = v
    return arr


def _tif(name: str, arr: np.ndarray, **kw: Any) -> Callable[[Path], None]:
    def make(inp: Path) -> None:
        write_tiff_stack(inp / name, arr, **kw)

    return make


def _save(name: str, obj: Any) -> Callable[[Path], None]:
    return lambda inp: torch.save(obj() if callable(obj) else obj, inp / name)


def _write(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda inp: (inp / name).write_bytes(data)


def _nothing(inp: Path) -> None:
    pass


class _NotWeights:
    """A pickled object that is not a tensor: a weights-only load must refuse it."""


@dataclass
class Case:
    """``make(inp)`` writes the inputs; ``call(inp, out)`` runs the entry point; ``error`` None means success."""

    make: Callable[[Path], Any]
    call: Callable[[Path, Path], Any]
    error: type[BaseException] | None = None
    words: tuple[str, ...] = ()  # must all appear in the message (case-insensitive)
    root_ok: bool = True  # False: meaningless as root (file permissions are not enforced)


def _load(name: str, features=(4, 8)) -> Callable[[Path, Path], Any]:
    return lambda inp, out: CheckedCheckpointLoader(str(inp / name), {"model": tiny_net(features, dsconv=True)})


def _ddp_state() -> dict:
    return {"model": {f"module.{k}": v for k, v in tiny_net(dsconv=True).state_dict().items()}}


def _torchscript(inp: Path) -> None:
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(inp / "model.ts"))


def _inputs(name: str = "stack.tif", output: str = "out") -> Callable[[Path, Path], Any]:
    def call(inp: Path, out: Path) -> Any:
        folder = inp / output[3:] if output.startswith("in/") else out
        return list_inference_inputs([str(inp / name)], output_dir=folder)

    return call


def _checked_not_created(inp: Path, out: Path) -> None:
    list_inference_inputs([str(inp / "stack.tif")], output_dir=out / "a" / "b")
    assert not out.exists()  # checked, not created


def _unwritable(inp: Path) -> None:
    _tif("stack.tif", _stack())(inp)
    (inp / "locked").mkdir()
    (inp / "locked").chmod(0o500)


def _sparse_bright() -> np.ndarray:
    arr = np.zeros((12, 40, 40), np.uint8)
    arr[5, 20, 20:23] = 200  # 3 voxels: above the 99.95th percentile
    return arr


def _nifti_slice(inp: Path) -> None:
    nib.save(nib.Nifti1Image(_stack((1, 40, 40)).T.astype(np.float32), np.eye(4)), str(inp / "slice.nii.gz"))


def _synthetic_hard(inp: Path) -> None:
    generate_dataset(
        inp / "ds",
        num_samples=2,
        shape=(16, 48, 48),
        seed=7,
        config=SyntheticConfig.preset("hard"),
        splits=(0.5, 0.0, 0.5),
        progress=False,
    )


def _all_images(inp: Path, out: Path) -> Any:
    images = [str(p) for p in sorted((inp / "ds").rglob("*.tif")) if "labels" not in p.parent.name]
    assert images
    return list_inference_inputs(images, output_dir=out)


def _label(nonzero_is_neurite: bool = False) -> Callable[[Path, Path], Any]:
    def call(inp: Path, out: Path) -> Any:
        from monai.transforms import EnsureChannelFirstd, LoadImaged

        data = {"label": str(inp / "label.tif")}
        for t in (
            LoadImaged("label", image_only=True),
            EnsureChannelFirstd("label"),
            BinaryLabeld("label", nonzero_is_neurite),
        ):
            data = t(data)
        label = data["label"]
        assert set(torch.unique(label).tolist()) == {0.0, 1.0}
        return label

    return call


def _dataset(extra: dict) -> Callable[[Path], None]:
    def make(inp: Path) -> None:
        write_tiff_stack(inp / "img.tif", _stack())
        write_tiff_stack(inp / "lab.tif", np.zeros((12, 40, 40), np.uint8))
        entry = {"image": "img.tif", "label": "lab.tif", **extra}
        (inp / "dataset.json").write_text(json.dumps({"training": [entry]}))

    return make


def _datalist(extra: dict) -> Callable[[Path, Path], Any]:
    def call(inp: Path, out: Path) -> Any:
        items = load_datalist(inp, "training", ["image", "label"])
        for key, value in extra.items():
            assert items[0][key] == value  # kept as given, not taken for a file path
        return items

    return call


def _truncated(inp: Path) -> None:
    write_tiff_stack(inp / "full.tif", _stack((20, 40, 40)))
    data = (inp / "full.tif").read_bytes()
    (inp / "cut.tif").write_bytes(data[: len(data) // 2])
    (inp / "full.tif").unlink()


def _huge_header(inp: Path) -> None:
    """A damaged header: one 64x64 page whose tags declare 60000 x 60000 pixels (3.4 GB)."""
    tifffile.imwrite(inp / "huge.tif", np.zeros((64, 64), np.uint8))
    with tifffile.TiffFile(inp / "huge.tif", mode="r+b") as tf:
        tf.pages[0].tags["ImageWidth"].overwrite(60000)
        tf.pages[0].tags["ImageLength"].overwrite(60000)


def _zarr(name: str, value: Any, dtype: str) -> Callable[[Path], None]:
    def make(inp: Path) -> None:
        z = zarr.create_array(str(inp / name), shape=(8, 24, 24), chunks=(8, 24, 24), dtype=dtype)
        z[:] = value

    return make


def _blockwise(inp: Path, out: Path) -> Any:
    out.mkdir()
    return run_blockwise_here(inp / "flat.zarr", out / "seg.zarr", model=tiny_net(seed=None), roi_size=(8, 16, 16))


CASES: dict[str, Case] = {
    # checkpoints: which file and what is wrong with it, never advice to unpickle it
    "ckpt_missing": Case(_nothing, _load("missing.pt"), CheckpointError, ("missing.pt", "no such file")),
    "ckpt_random_bytes": Case(
        _write("random.pt", np.random.default_rng(0).bytes(4096)),
        _load("random.pt"),
        CheckpointError,
        ("random.pt", "not a pytorch checkpoint"),
    ),
    "ckpt_empty_file": Case(_write("empty.pt", b""), _load("empty.pt"), CheckpointError, ("empty.pt", "empty")),
    "ckpt_text_file": Case(
        _write("notes.pt", b"these are my notes\n"), _load("notes.pt"), CheckpointError, ("notes.pt", "text file")
    ),
    "ckpt_other_architecture": Case(
        _save("big.pt", lambda: {"model": tiny_net((8, 16), dsconv=True).state_dict()}),
        _load("big.pt"),
        CheckpointError,
        ("big.pt", "another shape", "network_def"),
    ),
    "ckpt_wrong_keys": Case(
        _save("keys.pt", {"model": {"encoder.weight": torch.zeros(3)}}),
        _load("keys.pt"),
        CheckpointError,
        ("keys.pt", "missing", "not weights of this network"),
    ),
    "ckpt_torchscript": Case(_torchscript, _load("model.ts"), CheckpointError, ("model.ts", "torchscript")),
    "ckpt_pickled_object": Case(
        _save("obj.pt", {"model": _NotWeights()}), _load("obj.pt"), CheckpointError, ("obj.pt", "not unpickled")
    ),
    "ckpt_folder": Case(lambda i: (i / "ck").mkdir(), _load("ck"), CheckpointError, ("ck", "is a folder")),
    "ckpt_good_bare_state_dict": Case(_save("model.pt", lambda: tiny_net(dsconv=True).state_dict()), _load("model.pt")),
    "ckpt_good_ddp_prefix": Case(_save("ddp.pt", _ddp_state), _load("ddp.pt")),
    # output folders, checked before any model runs, never created by the check
    "outdir_is_file": Case(
        lambda i: (_tif("stack.tif", _stack())(i), (i / "taken").write_text("x")),
        _inputs(output="in/taken"),
        OutputDirError,
        ("--output_dir", "taken", "is a file"),
    ),
    "outdir_under_file": Case(
        lambda i: (_tif("stack.tif", _stack())(i), (i / "taken").write_text("x")),
        _inputs(output="in/taken/sub"),
        OutputDirError,
        ("--output_dir", "taken", "is a file"),
    ),
    "outdir_unwritable": Case(
        _unwritable, _inputs(output="in/locked/new"), OutputDirError, ("locked", "not writable"), root_ok=False
    ),
    "outdir_new_nested_passes": Case(_tif("stack.tif", _stack()), _checked_not_created),
    # stack content: refuse constant and near-constant stacks, keep real, noisy and faint ones
    "stack_all_zero": Case(
        _tif("stack.tif", np.zeros((12, 40, 40), np.uint16)), _inputs(), InferenceInputError, ("stack.tif", "constant")
    ),
    "stack_constant": Case(
        _tif("stack.tif", np.full((12, 40, 40), 37, np.uint8)), _inputs(), InferenceInputError, ("constant", "37")
    ),
    "stack_one_grey_level": Case(
        _tif("stack.tif", (np.random.default_rng(0).random((12, 40, 40)) < 0.5).astype(np.uint8) + 100),
        _inputs(),
        InferenceInputError,
        ("near-constant", "100 .. 101"),
    ),
    "stack_float_near_constant": Case(
        _tif("stack.tif", (1000 + 1e-4 * np.random.default_rng(0).random((12, 40, 40))).astype(np.float32)),
        _inputs(),
        InferenceInputError,
        ("stack.tif", "constant"),
    ),
    "stack_sparse_bright": Case(
        _tif("stack.tif", _sparse_bright()), _inputs(), InferenceInputError, ("near-constant", "upper percentile")
    ),
    "stack_single_slice": Case(
        _nifti_slice, _inputs("slice.nii.gz"), InferenceInputError, ("slice.nii.gz", "single slice")
    ),
    "stack_pure_noise_passes": Case(
        _tif("stack.tif", np.random.default_rng(0).poisson(3, (12, 40, 40)).astype(np.uint8)), _inputs()
    ),
    "stack_faint_line_passes": Case(_tif("stack.tif", _stack()), _inputs()),
    "stack_synthetic_hard_passes": Case(_synthetic_hard, _all_images),
    # training labels must be binary, or the documented option says every nonzero value is neurite
    "label_values_0_to_5": Case(
        _tif("label.tif", _labels(range(6))), _label(), DatasetError, ("label.tif", "binary", "0, 1, 2, 3, 4, 5")
    ),
    "label_probability_map": Case(
        _tif("label.tif", np.linspace(0, 1, 8 * 24 * 24, dtype=np.float32).reshape(8, 24, 24)),
        _label(),
        DatasetError,
        ("label.tif", "binary", "label_nonzero_is_neurite"),
    ),
    "label_0_1_passes": Case(_tif("label.tif", _labels([0, 1])), _label()),
    "label_0_255_passes": Case(_tif("label.tif", _labels([0, 255])), _label()),
    "label_multi_with_option_passes": Case(_tif("label.tif", _labels(range(6))), _label(nonzero_is_neurite=True)),
    # dataset.json: extra fields are not file paths; listed files must exist
    "dataset_extra_string_passes": Case(
        _dataset({"note": "imaged 2024-05-01", "subject": "mouse 3"}),
        _datalist({"note": "imaged 2024-05-01", "subject": "mouse 3"}),
    ),
    "dataset_missing_swc": Case(
        _dataset({"swc": "gone.swc"}), _datalist({}), MissingFileError, ("dataset.json", "gone.swc", "does not exist")
    ),
    # files
    "swc_utf8_bom_passes": Case(
        _write("bom.swc", b"\xef\xbb\xbf# saved by a Windows editor\n1 1 0 0 0 1 -1\n2 3 1 0 0 1 1\n"),
        lambda i, o: read_swc(i / "bom.swc").shape == (2, 7) or pytest.fail("BOM file misread"),
    ),
    "tiff_truncated": Case(
        _truncated, lambda i, o: read_tiff_stack(i / "cut.tif"), TiffStackError, ("cut.tif", "truncated", "20 slices")
    ),
    "tiff_truncated_blockwise": Case(
        _truncated, lambda i, o: open_volume(i / "cut.tif"), BlockwiseInputError, ("cut.tif", "truncated", "20 slices")
    ),
    "tiff_huge_header": Case(
        _huge_header, lambda i, o: read_tiff_stack(i / "huge.tif"), TiffStackError, ("huge.tif", "60000", "3.35 gib")
    ),
    "tiff_huge_header_blockwise": Case(
        _huge_header, lambda i, o: open_volume(i / "huge.tif"), BlockwiseInputError, ("huge.tif", "60000")
    ),
    "tiff_larger_than_memory": Case(
        _tif("zlib.tif", _stack(), compression="zlib"),
        lambda i, o: read_tiff_stack(i / "zlib.tif"),
        TiffStackError,
        ("zlib.tif", "memory", "blockwise"),
    ),
    "zarr_boolean": Case(
        _zarr("mask.zarr", False, "bool"),
        lambda i, o: open_volume(i / "mask.zarr"),
        BlockwiseInputError,
        ("mask.zarr", "boolean"),
    ),
    "blockwise_constant_volume": Case(
        _zarr("flat.zarr", 100, "uint16"), _blockwise, BlockwiseInputError, ("flat.zarr", "near-constant", "100 .. 100")
    ),
}


def _cli(module: str, argv: Callable[[Path, Path], list[str]]) -> Callable[[Path, Path], Any]:
    """Run a CLI's ``main``; a non-zero exit raises ``SystemExit`` whose message is its last stderr line."""

    def call(inp: Path, out: Path, capsys: Any = None) -> Any:
        import importlib

        main = importlib.import_module(module).main
        try:
            code = main(argv(inp, out))
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err.strip().splitlines()
        if code:
            raise SystemExit(f"exit {code}: {err[-1] if err else ''}")
        return code

    return call


def _prob(inp: Path) -> None:
    prob = np.zeros((12, 40, 40), np.float32)
    prob[6, 20, 5:35] = 1.0
    write_tiff_stack(inp / "prob.tif", prob)


def _prob_and_locked(inp: Path) -> None:
    _prob(inp)
    (inp / "locked").mkdir()
    (inp / "locked").chmod(0o500)


TRACE = "neurolink_monai.tracing.__main__"
CLI_CASES: dict[str, Case] = {
    "tracing_output_is_folder": Case(
        _prob, _cli(TRACE, lambda i, o: [str(i / "prob.tif"), "-o", str(i)]), SystemExit, ("--output", "is a folder")
    ),
    "tracing_input_is_folder": Case(
        lambda i: (i / "d.tif").mkdir(),
        _cli(TRACE, lambda i, o: [str(i / "d.tif"), "-o", str(i / "x.swc")]),
        SystemExit,
        ("d.tif", "is a folder"),
    ),
    "tracing_output_folder_missing": Case(
        _prob,
        _cli(TRACE, lambda i, o: [str(i / "prob.tif"), "-o", str(o / "x.swc")]),
        SystemExit,
        ("--output", "does not exist"),
    ),
    "tracing_output_unwritable": Case(
        _prob_and_locked,
        _cli(TRACE, lambda i, o: [str(i / "prob.tif"), "-o", str(i / "locked" / "x.swc")]),
        SystemExit,
        ("locked", "not writable"),
        root_ok=False,
    ),
    "tracing_2d_input": Case(
        lambda i: tifffile.imwrite(i / "flat.tif", np.ones((40, 40), np.float32)),
        _cli(TRACE, lambda i, o: [str(i / "flat.tif"), "-o", str(i / "x.swc")]),
        SystemExit,
        ("flat.tif", "2d image"),
    ),
    "tracing_good": Case(_prob, _cli(TRACE, lambda i, o: [str(i / "prob.tif"), "-o", str(o.mkdir() or o / "x.swc")])),
    "synthetic_existing_dataset": Case(
        lambda i: generate_dataset(i / "ds", num_samples=1, shape=(8, 24, 24), seed=1, progress=False),
        _cli(
            "neurolink_monai.data.synthetic.__main__",
            lambda i, o: [
                "--output-dir",
                str(i / "ds"),
                "--num-samples",
                "1",
                "--shape",
                "8",
                "24",
                "24",
                "--seed",
                "2",
            ],
        ),
        SystemExit,
        ("--output-dir", "already holds a dataset", "--overwrite"),
    ),
    "blockwise_cli_model_text_file": Case(
        lambda i: (_zarr("in.zarr", 7, "uint16")(i), (i / "m.pt").write_text("not weights\n")),
        _cli(
            "neurolink_monai.inference.blockwise.cli",
            lambda i, o: [str(i / "in.zarr"), str(o.mkdir() or o / "s.zarr"), "--model", str(i / "m.pt"), "-q"],
        ),
        SystemExit,
        ("--model", "m.pt", "text file"),
    ),
    "blockwise_cli_boolean_zarr": Case(
        _zarr("mask.zarr", True, "bool"),
        _cli(
            "neurolink_monai.inference.blockwise.cli",
            lambda i, o: [str(i / "mask.zarr"), str(o.mkdir() or o / "seg.zarr"), "--scheduler", "synchronous", "-q"],
        ),
        SystemExit,
        ("mask.zarr", "boolean"),
    ),
}


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and os.access(p.parent, os.R_OK | os.X_OK)
    }


def _messages(e: BaseException | None) -> str:
    out = []
    while e is not None:  # what Python prints: causes, and contexts unless suppressed (raise ... from None)
        out.append(str(e))
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return " | ".join(out)


def _run_case(case: Case, tmp_path: Path, call: Callable[[Path, Path], Any]) -> None:
    if IS_ROOT and not case.root_ok:
        pytest.skip("file permissions are not enforced for root")
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    case.make(inp)
    before = _snapshot(inp)
    try:
        if case.error is None:
            call(inp, out)
        else:
            with pytest.raises(case.error) as info:
                call(inp, out)
            text = _messages(info.value).lower()
            for word in case.words:
                assert word.lower() in text, f"{word!r} not in {text!r}"
            assert "weights_only" not in text  # never advise unpickling an untrusted file
            left = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
            assert not left, f"partial outputs left: {left}"
        assert _snapshot(inp) == before, "an input was modified"
    finally:
        for p in inp.rglob("*"):
            if p.is_dir():
                p.chmod(0o700)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path, monkeypatch):
    if name.startswith("tiff_huge_header"):

        def refuse(*args, **kwargs):
            raise AssertionError("the image data were read before the size check")

        monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", refuse)
    if name == "tiff_larger_than_memory":
        import neurolink_monai.io.tiff as tiff_module

        monkeypatch.setattr(tiff_module, "_available_memory", lambda: 1024)
    _run_case(CASES[name], tmp_path, CASES[name].call)


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_bad_cli_input(name, tmp_path, capsys):
    case = CLI_CASES[name]
    _run_case(case, tmp_path, lambda i, o: case.call(i, o, capsys))
    if name == "synthetic_existing_dataset":
        assert read_manifest(tmp_path / "in" / "ds")["settings"]["seed"] == 1  # not replaced


# ----------------------------------------------------------------------------------------------- bundle workflows


def _bundle(workflow: str, configs: list[str], args: dict[str, Any], cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "monai.bundle", "run", workflow, "--meta_file", META, "--config_file"]
    cmd.append(str(CONFIGS / configs[0]) if len(configs) == 1 else json.dumps([str(CONFIGS / c) for c in configs]))
    for key, value in args.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("NEUROLINK_TRACEBACK", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _bad_labels(inp: Path, tiny: Path) -> dict[str, Any]:
    shutil.copytree(tiny, inp / "ds")
    listing = json.loads((inp / "ds" / "dataset.json").read_text())
    label = inp / "ds" / listing["training"][0]["label"]
    arr, _ = read_tiff_stack(label)
    arr = arr.copy()
    arr[arr > 0] = np.arange(1, int((arr > 0).sum()) + 1) % 5 + 1  # an instance-like map with values 1..5
    write_tiff_stack(label, arr.astype(np.uint8))
    return {"dataset_dir": str(inp / "ds"), "max_epochs": 1, "network_def#features": [4, 8]}


def _test_image(tiny: Path) -> str:
    return load_datalist(tiny, "test")[0]["image"]


# workflow, configs, make(inp, tiny dataset) -> overrides, words of the last stderr line
BUNDLE_CASES: dict[str, tuple[str, list[str], Callable[[Path, Path], dict], tuple[str, ...]]] = {
    "inference_ckpt_text_file": (
        "evaluating",
        ["inference.json"],
        lambda i, t: (
            (i / "notes.pt").write_text("not weights\n"),
            {"input_path": _test_image(t), "ckpt_path": str(i / "notes.pt")},
        )[1],
        ("notes.pt", "text file"),
    ),
    "inference_ckpt_other_architecture": (
        "evaluating",
        ["inference.json"],
        lambda i, t: (
            torch.save(tiny_net((4, 8), dsconv=True).state_dict(), i / "small.pt"),
            {"input_path": _test_image(t), "ckpt_path": str(i / "small.pt")},
        )[1],
        ("small.pt", "does not fit the network"),
    ),
    "inference_constant_stack": (
        "evaluating",
        ["inference.json"],
        lambda i, t: (
            write_tiff_stack(i / "flat.tif", np.zeros((16, 32, 32), np.uint8)),
            {"input_path": str(i / "flat.tif")},
        )[1],
        ("flat.tif", "constant"),
    ),
    "inference_output_dir_is_file": (
        "evaluating",
        ["inference.json"],
        lambda i, t: (
            (i / "taken").write_text("x"),
            {"input_path": _test_image(t), "output_dir": str(i / "taken")},
        )[1],
        ("--output_dir", "is a file"),
    ),
    "training_label_not_binary": ("training", ["train.json"], _bad_labels, ("label", "binary", "0, 1, 2, 3, 4, 5")),
}


@pytest.mark.parametrize("name", sorted(BUNDLE_CASES))
def test_bundle_failure_ends_with_one_clear_line(name, tmp_path, tiny_dataset):
    """``python -m monai.bundle run`` fails with exit 1 and the last stderr line names the file and the problem,
    not MONAI's ``RuntimeError: Failed to evaluate ConfigExpression``; no output is written."""
    workflow, configs, make, words = BUNDLE_CASES[name]
    inp, out, root = tmp_path / "in", tmp_path / "out", tmp_path / "root"
    inp.mkdir()
    shutil.copytree(REPO / "bundle" / "configs", root / "configs")
    (root / "models").mkdir()
    shutil.copy(REPO / "bundle" / "models" / "model.pt", root / "models" / "model.pt")
    args = {"bundle_root": str(root), "output_dir": str(out), **make(inp, tiny_dataset)}
    before = _snapshot(inp)
    proc = _bundle(workflow, configs, args, tmp_path)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert last.startswith("error: ") and "Failed to evaluate" not in last, proc.stderr[-3000:]
    for word in words:
        assert word.lower() in last.lower(), last
    assert _snapshot(inp) == before
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))
    assert not (root / "models" / "checkpoints").exists() or not any((root / "models" / "checkpoints").iterdir())


# ----------------------------------------------------------------------------------------------- exact resume


class _Killed(Exception):
    """Stands for the process being killed in the middle of an epoch."""


def _train(root: Path, data: Path, max_epochs: int, resume: bool = False, kill_at: tuple[int, int] | None = None):
    from ignite.engine import Events

    wf = bundle_workflow(
        ["train.json"],
        bundle_root=str(root),
        dataset_dir=str(data),
        max_epochs=max_epochs,
        resume=str(resume).lower(),
        **TINY,
    )
    trainer = wf.parser.get_parsed_content("train#trainer")
    if kill_at is not None:

        @trainer.on(Events.ITERATION_COMPLETED)
        def _kill(engine):
            in_epoch = (engine.state.iteration - 1) % engine.state.epoch_length + 1
            if (engine.state.epoch, in_epoch) == kill_at:
                raise _Killed()

    try:
        wf.run()
    except Exception as e:
        if kill_at is None or "_Killed" not in repr(e) + _messages(e) + type(e.__context__).__name__:
            raise
    wf.finalize()
    return {k: v.detach().clone() for k, v in wf.parser.get_parsed_content("network").state_dict().items()}


def test_killed_and_resumed_training_equals_an_uninterrupted_one(tmp_path, tiny_dataset, one_torch_thread):
    """2 epochs straight vs. killed in the middle of epoch 2 and resumed (``--resume true``): same weights bit for
    bit on the CPU (the random state, data order, scheduler and optimizer are all restored; without the random
    state they differ)."""
    straight = _train(tmp_path / "a", tiny_dataset, 2)
    _train(tmp_path / "b", tiny_dataset, 2, kill_at=(2, 1))
    resumed = _train(tmp_path / "b", tiny_dataset, 2, resume=True)
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_real_stacks_pass_the_contrast_rule(diadem_dir):
    """The real DIADEM OP stacks are accepted (OP_3, the faintest, spans 70 grey levels between the percentiles)."""
    assert len(list_inference_inputs([str(diadem_dir / f"OP_{i}.tif") for i in (1, 2, 3)])) == 3


def test_case_counts():
    """Every refused and every accepted case stays in the tables."""
    cases = {**CASES, **CLI_CASES}
    refused = [n for n, c in cases.items() if c.error is not None] + list(BUNDLE_CASES)
    accepted = [n for n, c in cases.items() if c.error is None]
    assert len(refused) >= 40 and len(accepted) >= 12, (len(refused), len(accepted))


def _raise_wrapped(inner: BaseException) -> BaseException:
    """``inner`` wrapped as MONAI's config parser does."""
    try:
        try:
            raise inner
        except BaseException as e:
            raise RuntimeError("Failed to evaluate ConfigExpression: $@evaluator.run()") from e
    except RuntimeError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    "inner, short, last",
    [
        (CheckpointError("--ckpt_path m.pt: it is a text file"), True, "error: --ckpt_path m.pt: it is a text file"),
        (None, True, "error: trace must be true or false, got 'maybe'."),  # a ValueError raised by our own checks
        (ZeroDivisionError("division by zero"), False, "error: ZeroDivisionError: division by zero"),  # a bug
    ],
)
def test_error_hook_prints_the_cause_last(inner, short, last, capsys, monkeypatch):
    from neurolink_monai import errors
    from neurolink_monai.bundle_utils import as_bool

    monkeypatch.delenv(errors.TRACEBACK_ENV, raising=False)
    if inner is None:
        try:
            as_bool("maybe", "trace")
        except ValueError as e:
            inner = e
    exc = _raise_wrapped(inner)
    errors._hook(type(exc), exc, exc.__traceback__)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == last
    assert ("Traceback" in "\n".join(err)) is not short


def test_error_hook_waits_for_cache_workers(capsys, monkeypatch):
    """A ``CacheDataset`` worker thread still inside its current item when the error reaches the hook is joined before
    the ``error:`` line is printed, so the interpreter never finalises under it (``terminate called ...`` would then
    be the last line)."""
    import threading
    import time
    from multiprocessing.pool import ThreadPool

    from neurolink_monai import errors

    monkeypatch.delenv(errors.TRACEBACK_ENV, raising=False)
    started = threading.Event()

    def slow_item(i: int) -> int:
        started.set()
        time.sleep(0.5)
        return i

    pool = ThreadPool(1)
    pool.map_async(slow_item, range(3))
    started.wait(5)
    pool.terminate()  # as ``with ThreadPool(...)`` does when the main thread raises; the worker finishes its item
    workers = [t for t in pool._pool if t.is_alive()]
    assert workers
    exc = _raise_wrapped(CheckpointError("--ckpt_path m.pt: it is a text file"))
    errors._hook(type(exc), exc, exc.__traceback__)
    assert not any(t.is_alive() for t in workers)
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: --ckpt_path m.pt: it is a text file"
