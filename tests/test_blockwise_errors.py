# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Blockwise inference on bad input: clear errors, and never a corrupted or clobbered output."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr

from neurolink_monai.inference.blockwise import (
    BlockwiseInputError,
    BlockwiseOptions,
    BlockwiseOutputError,
    ClusterOptions,
    dask_client,
    open_volume,
    partial_path,
    read_record,
)
from neurolink_monai.inference.blockwise.cli import main as cli_main

from helpers import run_blockwise_here, tiny_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def net():
    return tiny_net()


@pytest.fixture
def src(tmp_path):
    rng = np.random.default_rng(0)
    z = zarr.create_array(str(tmp_path / "in.zarr"), shape=(8, 24, 24), chunks=(4, 12, 12), dtype="uint16")
    z[:] = rng.integers(0, 1000, size=(8, 24, 24), dtype=np.uint16)
    return tmp_path / "in.zarr"


def run(src, out, net, **kwargs):
    return run_blockwise_here(src, out, **{"model": net, "roi_size": (8, 16, 16), "chunks": (4, 12, 12), **kwargs})


def test_missing_and_corrupt_inputs(tmp_path):
    with pytest.raises(BlockwiseInputError, match="input not found"):
        open_volume(tmp_path / "nope.zarr")
    bad = tmp_path / "bad.zarr"
    bad.mkdir()
    (bad / "zarr.json").write_text("{ not json")
    with pytest.raises(BlockwiseInputError, match="bad.zarr: not a readable Zarr"):
        open_volume(bad)
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(BlockwiseInputError, match="empty.zarr: not a readable Zarr"):
        open_volume(tmp_path / "empty.zarr")
    (tmp_path / "junk.tif").write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(BlockwiseInputError, match="junk.tif: .*corrupt"):
        open_volume(tmp_path / "junk.tif")
    (tmp_path / "x.nii").write_bytes(b"")
    with pytest.raises(BlockwiseInputError, match="unsupported input"):
        open_volume(tmp_path / "x.nii")


def test_wrong_shapes(tmp_path):
    zarr.create_array(str(tmp_path / "2d.zarr"), shape=(20, 20), dtype="uint8")
    with pytest.raises(BlockwiseInputError, match="need a 3D"):
        open_volume(tmp_path / "2d.zarr")
    zarr.create_array(str(tmp_path / "c2.zarr"), shape=(2, 5, 20, 20), dtype="uint8")
    with pytest.raises(BlockwiseInputError, match="single-channel 3D stack"):
        open_volume(tmp_path / "c2.zarr")
    assert open_volume(
        zarr.create_array(str(tmp_path / "c1.zarr"), shape=(1, 5, 20, 20), dtype="uint8").store_path.store.root
    ).shape == (5, 20, 20)
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("raw", shape=(5, 20, 20), dtype="uint8")
    with pytest.raises(BlockwiseInputError, match=r"without OME-Zarr multiscales metadata; give the array .*raw"):
        open_volume(tmp_path / "g.zarr")
    zarr.create_array(str(tmp_path / "s.zarr"), shape=(5, 20, 20), dtype="U4")
    with pytest.raises(BlockwiseInputError, match="unsupported sample type"):
        open_volume(tmp_path / "s.zarr")


@pytest.mark.parametrize("chunks", [0, (4, 0, 4), (4, 4), (4, 4, 4, 4), (4, 2.5, 4)])
def test_bad_chunk_sizes_write_nothing(src, net, tmp_path, chunks):
    out = tmp_path / "out.zarr"
    with pytest.raises(ValueError, match="bad chunk sizes"):
        run(src, out, net, chunks=chunks)
    assert not out.exists() and not partial_path(out).exists()


def test_cli_rejects_bad_chunks_before_loading_anything(src, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main([str(src), "o.zarr", "--chunks", "8", "x", "8"])
    assert e.value.code == 2 and "--chunks must be integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main([str(src), "o.zarr", "--chunks", "8", "8"])
    assert "1 or 3 values" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, message",
    [
        ("--context-margin", "context_margin must be an int >= 0, got -1"),
        ("--background-z", "background_z must be a finite number in [0.0, inf], got -1.0"),
    ],
)
def test_cli_rejects_a_negative_margin_or_noise_floor_z(option, message, src, net, tmp_path, capsys):
    model = tmp_path / "net.ts"
    torch.jit.script(net).save(str(model))
    rc = cli_main([str(src), str(tmp_path / "o.zarr"), "--model", str(model), option, "-1", "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err.strip().splitlines()[-1]
    assert not (tmp_path / "o.zarr").exists()


def test_the_bundle_defaults_skip_background_windows():
    from neurolink_monai.inference.blockwise import bundle_inference_settings

    settings = bundle_inference_settings()
    assert settings["skip_background"] is True and settings["background_z"] == 3.0


def test_cli_missing_default_model_is_a_clear_error(src, tmp_path, capsys):
    rc = cli_main([str(src), str(tmp_path / "o.zarr"), "--bundle-dir", str(tmp_path / "empty-bundle"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist yet" in err and "--model" in err and "Traceback" not in err
    assert not (tmp_path / "o.zarr").exists()


def test_output_that_is_not_ours_is_refused(src, net, tmp_path):
    f = tmp_path / "file.zarr"
    f.write_text("precious")
    with pytest.raises(BlockwiseOutputError, match="not a NeuroLink blockwise output.*--overwrite"):
        run(src, f, net)
    assert f.read_text() == "precious"
    d = tmp_path / "other.zarr"
    zarr.open_group(str(d), mode="w").create_array("x", shape=(2,), dtype="uint8")
    with pytest.raises(BlockwiseOutputError, match="not a NeuroLink blockwise output"):
        run(src, d, net)
    assert (d / "x").exists()
    res = run(src, d, net, overwrite=True)
    assert res.status == "complete" and not (d / "x").exists() and read_record(d)["status"] == "complete"


def test_output_with_other_settings_is_refused_then_overwritten(src, net, tmp_path):
    out = tmp_path / "out.zarr"
    run(src, out, net)
    before = zarr.open_array(str(out / "prob" / "0"), mode="r")[:]
    with pytest.raises(BlockwiseOutputError, match=r"other settings: settings\.roi_size: recorded \[8, 16, 16\]"):
        run(src, out, net, roi_size=(8, 12, 12))
    np.testing.assert_array_equal(zarr.open_array(str(out / "prob" / "0"), mode="r")[:], before)
    other = tiny_net(seed=None)
    with pytest.raises(BlockwiseOutputError, match="model.digest"):
        run(src, out, other)
    rng = np.random.default_rng(1)
    z2 = zarr.create_array(str(tmp_path / "in2.zarr"), shape=(8, 24, 24), chunks=(4, 12, 12), dtype="uint16")
    z2[:] = rng.integers(0, 1000, size=(8, 24, 24), dtype=np.uint16)
    with pytest.raises(BlockwiseOutputError, match="input.path"):
        run(tmp_path / "in2.zarr", out, net)
    res = run(src, out, net, roi_size=(8, 12, 12), overwrite=True)
    assert res.status == "complete" and read_record(out)["settings"]["roi_size"] == [8, 12, 12]


def test_output_must_not_be_the_input(src, net, tmp_path):
    with pytest.raises(BlockwiseOutputError, match="must not be the input"):
        run(src, src, net, overwrite=True)
    with pytest.raises(BlockwiseOutputError, match="must not be the input"):
        run(src, src / "seg.zarr", net, overwrite=True)
    with pytest.raises(BlockwiseOutputError, match="does not exist"):
        run(src, tmp_path / "no" / "such" / "out.zarr", net)
    assert read_record(src) is None and (src / "zarr.json").is_file()


def test_corrupt_input_chunk_fails_cleanly_and_resumes_after_repair(net, tmp_path):
    src = tmp_path / "wide.zarr"
    z = zarr.create_array(str(src), shape=(8, 24, 48), chunks=(4, 12, 12), dtype="uint16")
    z[:] = np.random.default_rng(2).integers(0, 1000, size=(8, 24, 48), dtype=np.uint16)
    out = tmp_path / "out.zarr"
    good = zarr.open_array(str(src), mode="r")[:]
    chunk = src / "c" / "1" / "1" / "3"  # only the last blocks along x read it
    saved = chunk.read_bytes()
    chunk.write_bytes(b"\x00garbage")
    with pytest.raises(BlockwiseInputError, match=r"wide.zarr: cannot read block"):
        run(src, out, net, chunks=(8, 24, 12))  # fails while reading for the percentiles
    assert not out.exists() and not partial_path(out).exists()
    chunk.write_bytes(saved)

    def corrupt_once_started(msg: str) -> None:  # the chunk breaks after the percentiles were read, mid-run
        if msg.startswith("intensity window"):
            chunk.write_bytes(b"\x00garbage")

    with pytest.raises(BlockwiseInputError, match=r"wide.zarr: cannot read block"):
        run(src, out, net, chunks=(8, 24, 12), log=corrupt_once_started)
    assert not out.exists()  # the final output only ever appears complete
    assert read_record(partial_path(out))["status"] == "incomplete"
    chunk.write_bytes(saved)
    res = run(src, out, net, chunks=(8, 24, 12))
    assert res.status == "complete" and res.blocks_skipped >= 1 and res.blocks_computed < res.blocks_total
    assert not partial_path(out).exists()
    ref = run(src, tmp_path / "ref.zarr", net, chunks=(8, 24, 12))
    assert ref.blocks_computed == ref.blocks_total
    np.testing.assert_array_equal(
        zarr.open_array(str(out / "prob" / "0"))[:], zarr.open_array(str(tmp_path / "ref.zarr" / "prob" / "0"))[:]
    )
    assert np.array_equal(zarr.open_array(str(src), mode="r")[:], good)


def test_partial_output_of_other_settings_needs_overwrite(src, net, tmp_path):
    out = tmp_path / "out.zarr"
    part = partial_path(out)
    part.mkdir()
    (part / "notes.txt").write_text("someone else's")
    with pytest.raises(BlockwiseOutputError, match="unfinished run's output.*--overwrite"):
        run(src, out, net)
    assert (part / "notes.txt").exists()
    assert run(src, out, net, overwrite=True).status == "complete"
    assert json.loads((out / "zarr.json").read_text())["attributes"]["neurolink_blockwise"]["status"] == "complete"


def test_multitask_maps_need_a_multitask_network(src, tmp_path):
    single = tiny_net(seed=None, multitask=False)
    with pytest.raises(ValueError, match="multi-task network"):
        run(src, tmp_path / "o.zarr", single, save_direction=True)
    res = run(src, tmp_path / "o.zarr", single)
    assert res.status == "complete"


def test_chunks_too_big_for_memory_are_refused(net, tmp_path):
    huge = zarr.create_array(str(tmp_path / "huge.zarr"), shape=(2048, 4096, 4096), chunks=(64, 512, 512), dtype="u2")
    assert huge.nchunks_initialized == 0  # 64 GiB declared, nothing written
    with pytest.raises(ValueError, match=r"bad chunk sizes: blocks of \[2048, 4096, 4096\] need ~\d+\.\d GiB"):
        run(tmp_path / "huge.zarr", tmp_path / "o.zarr", net, chunks=(2048, 4096, 4096))
    assert not (tmp_path / "o.zarr").exists()


def test_options_are_checked_when_built():
    with pytest.raises(ValueError, match="prob_dtype must be 'float16' or 'uint8', got 'int8'"):
        BlockwiseOptions(prob_dtype="int8")
    with pytest.raises(ValueError, match="either overlap .* or halo"):
        BlockwiseOptions(overlap=0.25, halo=4)
    with pytest.raises(ValueError, match="workers must be a positive int, got 0"):
        ClusterOptions(workers=0)
    with pytest.raises(ValueError, match="threads_per_worker must be a positive int, got True"):
        ClusterOptions(threads_per_worker=True)
    with pytest.raises(ValueError, match="scheduler must be 'synchronous' or an address.*'local'"):
        ClusterOptions(scheduler="local")
    with pytest.raises(ValueError, match="bad device 'gpu0'"):
        BlockwiseOptions(device="gpu0").resolve_device()
    assert BlockwiseOptions(device="cpu", amp=True).resolve_device() == ("cpu", False)  # AMP only on CUDA


def test_synchronous_runs_without_a_dask_client():
    with dask_client(ClusterOptions(scheduler="synchronous", torch_threads=2)) as (client, threads):
        assert client is None and threads == 2
