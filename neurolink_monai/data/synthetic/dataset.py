# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Synthetic samples and MSD-style datasets on disk: generate once, reuse afterwards.

Folder layout written by :func:`generate_dataset`::

    DIR/dataset.json                 MSD-style lists "training", "validation", "test" (load_decathlon_datalist)
    DIR/imagesTr/synth_000.tif       uint16 ImageJ TIFF (z, y, x) with the voxel spacing
    DIR/labelsTr/synth_000.tif       uint8 label mask (1 = neurite)
    DIR/swc/synth_000.swc            ground-truth SWC, voxel units, 0-based (x -> W, y -> H, z -> D)
    DIR/previews/synth_000.png       optional maximum-intensity projections with the label overlaid
    DIR/synthetic_manifest.json      the settings, generator version and files, to recognise the folder later

Every byte is a function of the settings: sample ``i`` is drawn from ``SeedSequence(seed, spawn_key=(i,))``, so
it does not depend on how many samples are generated, and no timestamps are written.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ... import __version__
from ...io import sort_swc, write_swc, write_tiff_stack
from ...io.atomic import atomic_write_bytes
from ...utils import as_positive_int
from ..preview import save_mip_png
from .config import SyntheticConfig
from .morphology import check_shape, concatenate_swc, generate_crossing_fibres, generate_neuron
from .realism import sample_optics
from .render import render_components
from .swc_source import load_swc_folder, place_swc

__all__ = [
    "DATASET_JSON",
    "MANIFEST_NAME",
    "GENERATOR_VERSION",
    "DEFAULT_NUM_SAMPLES",
    "DEFAULT_SHAPE",
    "DEFAULT_SEED",
    "DEFAULT_SPLITS",
    "generate_sample",
    "split_counts",
    "generate_dataset",
    "ensure_dataset",
    "read_manifest",
]

DATASET_JSON = "dataset.json"
MANIFEST_NAME = "synthetic_manifest.json"
# Bump whenever the generator's output for the same settings changes: ensure_dataset then regenerates.
GENERATOR_VERSION = 1
GENERATOR_ID = "neurolink_monai.data.synthetic"
# The bundle's default dataset: CPU training for ~10 min on 2 cores still sees every sample many times.
DEFAULT_NUM_SAMPLES = 24
DEFAULT_SHAPE = (64, 128, 128)
DEFAULT_SEED = 0
DEFAULT_SPLITS = (0.7, 0.15, 0.15)
_SUBDIRS = ("imagesTr", "labelsTr", "swc", "previews")


def _seed_sequence(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    """A fresh copy of ``seed`` as a SeedSequence (spawning never depends on earlier spawns of the caller's)."""
    if isinstance(seed, np.random.SeedSequence):
        return np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key, pool_size=seed.pool_size)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative int or a numpy SeedSequence, got {seed!r}.")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}.")
    return np.random.SeedSequence(int(seed))


def generate_sample(
    shape: Sequence[int],
    seed: int | np.random.SeedSequence,
    config: SyntheticConfig | None = None,
    return_components: bool = False,
) -> dict[str, Any]:
    """One synthetic weak-signal neuron stack with its ground truth.

    Args:
        shape: volume shape ``(D, H, W)``, each at least 8.
        seed: int or ``numpy.random.SeedSequence``; the same seed and config give identical arrays.
        config: difficulty knobs; defaults to ``SyntheticConfig()``.
        return_components: also return the :class:`RenderedStack` (noiseless parts) under ``"components"``.

    Returns:
        dict with ``"image"`` uint16 ``(D, H, W)`` (uint8 when ``config.realism`` asks for it), ``"label"`` uint8 ``(D, H, W)``, ``"swc"`` float64 ``(N, 7)``
        (voxel units, depth-first order, ids ``1..N``; the neuron is the first tree, labelled crossing fibres
        follow as separate trees), ``"spacing"`` ``(z, y, x)`` (per sample with a realism config: anisotropy), ``"node_brightness"`` and ``"node_weak"``
        ``(N,)`` (relative brightness and weak-stretch window of each SWC node).
    """
    shape = check_shape(shape)
    cfg = SyntheticConfig() if config is None else config
    if not isinstance(cfg, SyntheticConfig):
        raise TypeError(f"config must be a SyntheticConfig or None, got {type(cfg).__name__}.")
    ss = _seed_sequence(seed)
    ss_morph, ss_fibres, ss_render = ss.spawn(3)
    if cfg.realism is not None:  # per-sample optics from a 4th stream, so the other draws keep their streams
        optics = sample_optics(np.random.default_rng(ss.spawn(1)[0]), cfg.realism, cfg)
        cfg = dataclasses.replace(cfg, **optics)
    if cfg.swc_dir is not None:
        trees = load_swc_folder(cfg.swc_dir)
        neuron = place_swc(trees, shape, np.random.default_rng(ss_morph), cfg.spacing, cfg.swc_spacing, cfg.radius[0])
    else:
        neuron = generate_neuron(shape, np.random.default_rng(ss_morph), cfg)
    fibres = generate_crossing_fibres(shape, np.random.default_rng(ss_fibres), cfg)
    # Coordinates and radii are rounded to 1e-4 voxel so that the SWC file holds exactly the rendered tree.
    neuron[:, 2:6] = np.round(neuron[:, 2:6], 4)
    fibres[:, 2:6] = np.round(fibres[:, 2:6], 4)
    if cfg.label_crossing_fibres:
        swc, clutter = sort_swc(concatenate_swc([neuron, fibres])), None
    else:
        swc, clutter = sort_swc(neuron), fibres
    rendered = render_components(swc, shape, np.random.default_rng(ss_render), cfg, clutter_swc=clutter)
    out = {
        "image": rendered.image,
        "label": rendered.label,
        "swc": swc,
        "spacing": tuple(cfg.spacing),
        "node_brightness": rendered.node_brightness,
        "node_weak": rendered.node_weak,
    }
    if return_components:
        out["components"] = rendered
        out["config"] = cfg  # the config the sample was rendered with (per-sample optics included)
    return out


def _check_splits(splits: Sequence[float]) -> tuple[float, float, float]:
    try:
        s = tuple(float(v) for v in splits)
    except (TypeError, ValueError):
        raise TypeError(f"splits must be three fractions (training, validation, test), got {splits!r}.") from None
    if len(s) != 3 or any(not math.isfinite(v) or v < 0 for v in s) or not math.isclose(sum(s), 1.0, abs_tol=1e-6):
        raise ValueError(
            f"splits must be three fractions >= 0 summing to 1 (training, validation, test), got {splits!r}."
        )
    if s[0] == 0:
        raise ValueError(f"the training fraction of splits must be > 0, got {splits!r}.")
    return s  # type: ignore[return-value]


def split_counts(num_samples: int, splits: Sequence[float] = DEFAULT_SPLITS) -> tuple[int, int, int]:
    """Samples per split: validation and test are rounded, each non-zero fraction gets at least one sample when
    ``num_samples`` allows (validation first), training takes the rest and at least one (24 samples with the default
    splits: 16, 4, 4; 3 samples: 1, 1, 1)."""
    s = _check_splits(splits)
    n = as_positive_int(num_samples, "num_samples")
    counts = [0] + [int(math.floor(n * f + 0.5)) for f in s[1:]]
    floor, spare = [0, 0, 0], n - 1
    for k in (1, 2):  # one sample for each non-empty split while training keeps one; validation first
        if s[k] > 0 and spare > 0:
            floor[k], spare = 1, spare - 1
            counts[k] = max(counts[k], 1)
    while counts[1] + counts[2] > n - 1:  # training keeps at least one sample
        k = 1 if counts[1] - floor[1] >= counts[2] - floor[2] else 2
        counts[k] -= 1
    counts[0] = n - counts[1] - counts[2]
    return counts[0], counts[1], counts[2]


def _settings(num_samples: int, shape, seed: int, config: SyntheticConfig, splits) -> dict[str, Any]:
    as_positive_int(num_samples, "num_samples")
    as_positive_int(seed, "seed", allow_zero=True)
    if not isinstance(config, SyntheticConfig):
        raise TypeError(f"config must be a SyntheticConfig or None, got {type(config).__name__}.")
    return {
        "num_samples": int(num_samples),
        "shape": list(check_shape(shape)),
        "seed": int(seed),
        "splits": list(_check_splits(splits)),
        "config": config.to_dict(),
    }


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"))


def _write_all(folder: Path, settings: dict[str, Any], config: SyntheticConfig, previews: bool, progress: bool):
    """Write every sample, dataset.json and the manifest into the (empty, existing) ``folder``."""
    from tqdm.auto import tqdm

    n = settings["num_samples"]
    shape, seed = tuple(settings["shape"]), settings["seed"]
    for sub in _SUBDIRS[:3] + (("previews",) if previews else ()):
        (folder / sub).mkdir()
    entries = []
    width = max(3, len(str(n - 1)))
    for i in tqdm(range(n), desc="synthetic neurons", unit="sample", disable=not progress, dynamic_ncols=True):
        name = f"synth_{i:0{width}d}"
        sample = generate_sample(shape, np.random.SeedSequence(seed, spawn_key=(i,)), config)
        spacing = sample["spacing"]
        write_tiff_stack(folder / "imagesTr" / f"{name}.tif", sample["image"], spacing, compression="zlib")
        write_tiff_stack(folder / "labelsTr" / f"{name}.tif", sample["label"], spacing, compression="zlib")
        header = [
            f"NeuroLink-MONAI synthetic neuron {name} (generator v{GENERATOR_VERSION}, seed {seed}, sample {i})",
            "coordinates: voxel units, 0-based voxel centres, x -> W, y -> H, z -> D; radius in x voxels",
            f"volume (D, H, W) = {tuple(shape)}, spacing (z, y, x) = {tuple(spacing)}",
        ]
        write_swc(folder / "swc" / f"{name}.swc", sample["swc"], header=header)
        if previews:
            save_mip_png(folder / "previews" / f"{name}.png", sample["image"], sample["label"])
        entries.append({"image": f"imagesTr/{name}.tif", "label": f"labelsTr/{name}.tif", "swc": f"swc/{name}.swc"})
    n_tr, n_va, n_te = split_counts(n, settings["splits"])
    datalist = {
        "name": "NeuroLinkSynthetic",
        "description": "Synthetic weak-signal neuron stacks (soma, tapering tortuous neurites, PSF blur, "
        "Poisson-Gaussian noise, fading stretches) with ground-truth SWC and label masks.",
        "reference": "NeuroLink-MONAI synthetic generator; NeuroLink: Yan et al., MICCAI 2024",
        "licence": "Apache-2.0",
        "release": f"{__version__} (generator v{GENERATOR_VERSION})",
        "tensorImageSize": "3D",
        "modality": {"0": "fluorescence light microscopy (synthetic)"},
        "labels": {"0": "background", "1": "neurite"},
        "spacing": list(config.spacing),
        "shape": list(shape),
        "numTraining": n_tr,
        "numValidation": n_va,
        "numTest": n_te,
        "training": entries[:n_tr],
        "validation": entries[n_tr : n_tr + n_va],
        "test": entries[n_tr + n_va :],
    }
    _write_json(folder / DATASET_JSON, datalist)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    manifest = {
        "generator": GENERATOR_ID,
        "generator_version": GENERATOR_VERSION,
        "neurolink_monai_version": __version__,
        "settings": settings,
        "files": {f: (folder / f).stat().st_size for f in files},
    }
    _write_json(folder / MANIFEST_NAME, manifest)


def read_manifest(dataset_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The generator manifest of ``dataset_dir``, or None when there is none (or it is not ours / unreadable)."""
    path = Path(dataset_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("generator") != GENERATOR_ID:
        return None
    return manifest


def regenerate_sample(dataset_dir: str | os.PathLike, index: int) -> dict[str, Any]:
    """Sample ``index`` of a dataset this generator wrote, regenerated in memory from its manifest's settings.

    It gives what the files do not hold, such as ``"node_weak"``, the weak-stretch window (0..1) of each SWC node
    (in the order of the written SWC), for scoring a prediction on the weak stretches alone.

    Raises:
        ValueError: ``dataset_dir`` has no manifest of this generator, or ``index`` is out of range.
    """
    manifest = read_manifest(dataset_dir)
    if manifest is None:
        raise ValueError(f"{dataset_dir}: no {MANIFEST_NAME} of this generator; cannot regenerate its samples.")
    settings = manifest["settings"]
    n = settings["num_samples"]
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise ValueError(f"{dataset_dir}: sample index must be an int in [0, {n}), got {index!r}.")
    seed = np.random.SeedSequence(settings["seed"], spawn_key=(int(index),))
    return generate_sample(settings["shape"], seed, SyntheticConfig.from_dict(settings["config"]))


def _inspect(folder: Path, settings: dict[str, Any] | None) -> tuple[str, str]:
    """Classify ``folder``: missing, empty, valid, mismatch (ours, other settings), incomplete (ours) or foreign."""
    if not folder.exists():
        return "missing", ""
    if not folder.is_dir():
        return "foreign", f"{folder} exists and is not a folder"
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    if not present and not any(folder.iterdir()):
        return "empty", ""
    manifest = read_manifest(folder)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        return "foreign", f"{folder} is not empty and holds no {MANIFEST_NAME} of this generator"
    listed = set(manifest["files"]) | {MANIFEST_NAME}
    extra = sorted(present - listed)
    if extra:
        return "foreign", f"{folder} holds files this generator did not write, e.g. {extra[:3]}"
    if settings is None:
        return "ours", ""
    if manifest.get("generator_version") != GENERATOR_VERSION or manifest.get("settings") != settings:
        diff = _settings_diff(manifest.get("settings") or {}, settings)
        if manifest.get("generator_version") != GENERATOR_VERSION:
            diff.append(f"generator_version: {manifest.get('generator_version')} -> {GENERATOR_VERSION}")
        return "mismatch", "; ".join(diff) or "settings differ"
    for rel, size in manifest["files"].items():
        p = folder / rel
        if not p.is_file() or p.stat().st_size != size:
            return "incomplete", f"{p} is missing or has changed size"
    return "valid", ""


def _settings_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    out = []
    flat_old = {**{k: v for k, v in old.items() if k != "config"}, **(old.get("config") or {})}
    flat_new = {**{k: v for k, v in new.items() if k != "config"}, **new["config"]}
    for key in sorted(set(flat_old) | set(flat_new)):
        if flat_old.get(key) != flat_new.get(key):
            out.append(f"{key}: {flat_old.get(key)!r} -> {flat_new.get(key)!r}")
    return out


def _tmp_sibling(folder: Path, tag: str) -> Path:
    return folder.parent / f".{folder.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _build(folder: Path, settings: dict[str, Any], config: SyntheticConfig, previews: bool, progress: bool) -> Path:
    """Generate into a temporary sibling folder and return it (the caller moves it into place)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(folder, "tmp")
    tmp.mkdir()
    try:
        _write_all(tmp, settings, config, previews, progress)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _swap_in(tmp: Path, folder: Path, replace: bool) -> None:
    """Move the finished ``tmp`` folder to ``folder``; with ``replace`` an existing folder of ours is swapped out."""
    if replace and folder.exists():
        trash = _tmp_sibling(folder, "old")
        os.rename(folder, trash)
        try:
            os.rename(tmp, folder)
        except BaseException:
            os.rename(trash, folder)
            raise
        shutil.rmtree(trash, ignore_errors=True)
        return
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    os.rename(tmp, folder)


def generate_dataset(
    output_dir: str | os.PathLike,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    shape: Sequence[int] = DEFAULT_SHAPE,
    seed: int = DEFAULT_SEED,
    config: SyntheticConfig | None = None,
    overwrite: bool = False,
    splits: Sequence[float] = DEFAULT_SPLITS,
    progress: bool = True,
    previews: bool = False,
) -> Path:
    """Generate ``num_samples`` synthetic samples into ``output_dir`` with an MSD-style ``dataset.json``.

    The samples are written to a temporary folder beside ``output_dir``, which is then renamed into place, so an
    interrupted run never leaves a half-written dataset. A folder this generator wrote before (recognised by its
    manifest, with no foreign files) is replaced. Any other non-empty folder is refused unless ``overwrite``: then
    the generated files are moved into it one by one (``os.replace``) and its other files are left alone.

    Args:
        output_dir: destination folder (created with its parents if needed).
        num_samples: number of samples.
        shape: volume shape ``(D, H, W)``.
        seed: non-negative int; the same settings give the same bytes.
        config: difficulty knobs; defaults to ``SyntheticConfig()``.
        overwrite: allow writing into a non-empty folder this generator did not create.
        splits: fractions ``(training, validation, test)``, see :func:`split_counts`.
        progress: show a tqdm progress bar.
        previews: also write MIP previews with the label overlaid to ``output_dir/previews/``.

    Returns:
        Path of ``dataset.json``.

    Raises:
        FileExistsError: ``output_dir`` is a non-empty folder of foreign files (or a file) and not ``overwrite``.
    """
    cfg = SyntheticConfig() if config is None else config
    settings = _settings(num_samples, shape, seed, cfg, splits)
    folder = Path(output_dir).expanduser().absolute()
    state, why = _inspect(folder, None)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"output folder {folder} exists and is a file.")
    if state == "foreign" and not overwrite:
        raise FileExistsError(
            f"refusing to write into {folder}: {why}. Choose an empty or new folder, or pass overwrite=True "
            "(--overwrite) to write the dataset files into it (other files are kept)."
        )
    tmp = _build(folder, settings, cfg, previews, progress)
    if state == "foreign":
        try:
            for src in sorted(p for p in tmp.rglob("*") if p.is_file()):
                dst = folder / src.relative_to(tmp)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        try:
            _swap_in(tmp, folder, replace=state == "ours")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder / DATASET_JSON


def ensure_dataset(
    dataset_dir: str | os.PathLike,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    shape: Sequence[int] = DEFAULT_SHAPE,
    seed: int = DEFAULT_SEED,
    config: SyntheticConfig | None = None,
    splits: Sequence[float] = DEFAULT_SPLITS,
    progress: bool = True,
    on_mismatch: str = "regenerate",
) -> Path:
    """Return the ``dataset.json`` of a synthetic dataset in ``dataset_dir``, generating it only when needed.

    The bundle calls this when the user gives no ``dataset_dir``. A folder holding a complete dataset written by
    this generator with the same settings and generator version is reused as is. A folder of ours made with other
    settings (or incomplete) is regenerated when ``on_mismatch="regenerate"``, else a ``ValueError`` lists the
    differences. A folder of foreign files is never touched. Generation goes to a temporary sibling folder that is
    renamed into place, so concurrent callers either win the rename or reuse the winner's dataset.

    Args:
        dataset_dir: the dataset folder (e.g. the bundle's ``data/synthetic``).
        num_samples, shape, seed, config, splits: as for :func:`generate_dataset`.
        progress: show a progress bar while generating.
        on_mismatch: ``"regenerate"`` or ``"error"``.

    Raises:
        FileExistsError: ``dataset_dir`` holds files this generator did not write.
        ValueError: settings differ and ``on_mismatch="error"``.
    """
    if on_mismatch not in ("regenerate", "error"):
        raise ValueError(f"on_mismatch must be 'regenerate' or 'error', got {on_mismatch!r}.")
    cfg = SyntheticConfig() if config is None else config
    settings = _settings(num_samples, shape, seed, cfg, splits)
    folder = Path(dataset_dir).expanduser().absolute()
    state, why = _inspect(folder, settings)
    if state == "valid":
        return folder / DATASET_JSON
    if state == "foreign":
        raise FileExistsError(
            f"cannot use {folder} for the synthetic dataset: {why}. Give an empty or new folder, or the "
            "dataset_dir of your own data."
        )
    if state in ("mismatch", "incomplete") and on_mismatch == "error":
        raise ValueError(f"the synthetic dataset in {folder} does not match the requested settings: {why}.")
    tmp = _build(folder, settings, cfg, previews=False, progress=progress)
    try:
        _swap_in(tmp, folder, replace=state in ("mismatch", "incomplete"))
    except OSError:
        # Another process renamed its dataset into place first: reuse it if it is the one we want.
        shutil.rmtree(tmp, ignore_errors=True)
        if _inspect(folder, settings)[0] == "valid":
            return folder / DATASET_JSON
        raise
    return folder / DATASET_JSON
