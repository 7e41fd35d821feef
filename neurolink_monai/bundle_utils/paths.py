# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Where the bundle lives and where its data come from: bundle root, dataset folder, MSD-style data lists."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DatasetError, MissingFileError, OutputDirError
from .naming import input_suffix

__all__ = [
    "BUNDLE_ROOT_ENV",
    "DATASET_SPLITS",
    "PATH_KEYS",
    "check_output_dir",
    "default_bundle_root",
    "default_inference_input",
    "load_datalist",
    "paired_datalist",
    "resolve_dataset_dir",
]

BUNDLE_ROOT_ENV = "NEUROLINK_BUNDLE_ROOT"
DATASET_SPLITS = ("training", "validation", "test")
PATH_KEYS = ("image", "label", "swc")  # data-list fields that hold file paths
_MARKER = Path("configs") / "metadata.json"


def _is_bundle(folder: Path) -> bool:
    return (folder / _MARKER).is_file() and (folder / "configs" / "train.json").is_file()


def default_bundle_root() -> str:
    """The bundle folder (the one holding ``configs/metadata.json``), as an absolute path string.

    Configs use it as ``"bundle_root": "$neurolink_monai.bundle_utils.default_bundle_root()"`` so that the same
    command works from the repository root (``--config_file bundle/configs/train.json``) and from inside the bundle
    folder (``--config_file configs/train.json``, the Model Zoo habit). ``--bundle_root DIR`` always wins over it.

    Resolution order: the ``NEUROLINK_BUNDLE_ROOT`` environment variable; ``./bundle`` when the current folder is
    a NeuroLink-MONAI checkout; the current folder when it is the bundle; the ``bundle`` folder beside the
    installed package (an editable install of a checkout).

    Raises:
        FileNotFoundError: none of these is a bundle folder; the message says how to pass ``--bundle_root``.
    """
    env = os.environ.get(BUNDLE_ROOT_ENV)
    if env:
        folder = Path(env).expanduser().absolute()
        if not _is_bundle(folder):
            raise MissingFileError(
                f"{BUNDLE_ROOT_ENV}={env!r} is not a bundle folder: {folder / _MARKER} or configs/train.json is missing."
            )
        return str(folder)
    cwd = Path.cwd()
    candidates = [cwd / "bundle", cwd, Path(__file__).resolve().parents[2] / "bundle"]
    for folder in candidates:
        if _is_bundle(folder):
            return str(folder.absolute())
    raise MissingFileError(
        "cannot find the NeuroLink-MONAI bundle folder (tried "
        + ", ".join(str(c) for c in candidates)
        + "): run from the repository root or the bundle folder, or pass --bundle_root /path/to/bundle."
    )


def resolve_dataset_dir(
    dataset_dir: str | os.PathLike | None,
    bundle_root: str | os.PathLike,
    num_samples: int | None = None,
    shape: Sequence[int] | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> str:
    """The dataset folder to train on: ``dataset_dir`` when given, else the embedded synthetic dataset.

    With ``dataset_dir`` empty or None the synthetic dataset is generated once into ``<bundle_root>/data/synthetic``
    with :func:`neurolink_monai.data.synthetic.ensure_dataset` and reused afterwards (regenerated only when the
    requested settings differ from the ones stored in its manifest).

    Args:
        dataset_dir: a folder with an MSD-style ``dataset.json`` (lists ``training``, ``validation`` and
            optionally ``test`` of ``{"image", "label", "swc"}`` paths relative to the folder, a label may be an
            ``.swc`` trace), a folder of stacks with their traces (see :func:`paired_datalist`), or None/"".
        bundle_root: the bundle folder.
        num_samples, shape, seed: synthetic dataset settings; None keeps the generator's defaults.
        progress: show a progress bar while generating.

    Raises:
        FileNotFoundError: ``dataset_dir`` is given but is not a folder with a ``dataset.json`` or stack/trace pairs.
    """
    if dataset_dir not in (None, "", "None", "null"):
        folder = Path(dataset_dir).expanduser().absolute()
        if not folder.is_dir():
            raise MissingFileError(f"--dataset_dir {str(folder)!r} is not a folder.")
        if not (folder / "dataset.json").is_file() and not paired_datalist(folder):
            raise MissingFileError(
                f"--dataset_dir {str(folder)!r} holds no dataset.json (MSD-style lists 'training', 'validation', 'test' "
                "of {'image': ..., 'label': ..., 'swc': ...} relative paths) and no image stacks with SWC traces of "
                "the same name (X.tif + X.swc)."
            )
        return str(folder)
    from neurolink_monai.data.synthetic import ensure_dataset

    kwargs: dict[str, Any] = {}
    if num_samples is not None:
        kwargs["num_samples"] = int(num_samples)
    if shape is not None:
        kwargs["shape"] = tuple(int(s) for s in shape)
    if seed is not None:
        kwargs["seed"] = int(seed)
    target = Path(bundle_root).expanduser().absolute() / "data" / "synthetic"
    return str(ensure_dataset(target, progress=progress, **kwargs).parent)


def paired_datalist(folder: str | os.PathLike) -> list[dict]:
    """Stacks with their traces side by side: ``{"image": X.tif, "label": X.swc}`` for every image ``X`` (TIFF or
    NIfTI) of ``folder`` that has an ``X.swc``, sorted by name, absolute paths; empty when there is none."""
    folder = Path(folder).expanduser().absolute()
    out = []
    for image in sorted(folder.iterdir()) if folder.is_dir() else []:
        suffix = input_suffix(image)
        if suffix is None or not image.is_file():
            continue
        swc = image.with_name(image.name[: -len(suffix)] + ".swc")
        if swc.is_file():
            out.append({"image": str(image), "label": str(swc)})
    return out


def load_datalist(dataset_dir: str | os.PathLike, split: str, required_keys: Sequence[str] = ("image",)) -> list[dict]:
    """Entries of one split of ``<dataset_dir>/dataset.json`` with absolute paths.

    A folder without ``dataset.json`` that holds stacks with their SWC traces gives :func:`paired_datalist` for
    every split (fine-tuning on a handful of traced stacks validates on the same stacks).

    Args:
        dataset_dir: folder holding ``dataset.json``.
        split: ``"training"``, ``"validation"`` or ``"test"``.
        required_keys: keys every entry must have (e.g. ``("image", "label")``); each path must exist.

    Returns:
        list of dicts ``{"image": abs path, "label": abs path, "swc": abs path, ...}``: the values of
        ``required_keys`` and of :data:`PATH_KEYS` (``image``, ``label``, ``swc``) are file paths made absolute;
        other fields (a ``"note"`` string, numbers, lists) are kept as they are.

    Raises:
        ValueError: unknown split (plain ``ValueError``); ``DatasetError`` for an empty split or malformed entries
            (the message names dataset.json and the entry).
        FileNotFoundError: a listed file does not exist (``MissingFileError``).
    """
    if split not in DATASET_SPLITS:
        raise ValueError(f"split must be one of {DATASET_SPLITS}, got {split!r}.")
    folder = Path(dataset_dir).expanduser().absolute()
    path = folder / "dataset.json"
    if not path.is_file() and folder.is_dir():
        pairs = paired_datalist(folder)
        if pairs:
            return pairs
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MissingFileError(f"{path} does not exist.") from None
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: cannot read it as JSON: {e}") from e
    entries = content.get(split) if isinstance(content, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DatasetError(f"{path}: the {split!r} list is missing or empty.")
    out = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"image": entry}
        if not isinstance(entry, dict):
            raise DatasetError(f"{path}: {split}[{i}] must be a dict of paths, got {entry!r}.")
        missing = [k for k in required_keys if k not in entry]
        if missing:
            raise DatasetError(f"{path}: {split}[{i}] lacks the keys {missing}: {entry!r}.")
        item = {}
        for key, value in entry.items():
            if isinstance(value, str) and (key in required_keys or key in PATH_KEYS):
                p = Path(value).expanduser()
                p = p if p.is_absolute() else folder / p
                if not p.is_file():
                    raise MissingFileError(f"{path}: {split}[{i}][{key!r}] = {value!r} does not exist ({p}).")
                item[key] = str(p)
            else:
                item[key] = value
        out.append(item)
    return out


def default_inference_input(dataset_dir: str | os.PathLike | None, bundle_root: str | os.PathLike) -> list[str]:
    """Images of the ``test`` split of the training dataset (the synthetic one by default): what inference runs on
    when no ``--input_path`` is given."""
    folder = resolve_dataset_dir(dataset_dir, bundle_root)
    return [item["image"] for item in load_datalist(folder, "test")]


def check_output_dir(output_dir: Any, option: str = "output_dir") -> Path:
    """Check, without creating anything, that ``output_dir`` is (or can be created as) a writable folder.

    Called while the bundle config is parsed, so that a bad ``--output_dir`` fails before the model runs. An
    existing folder is probed by creating and removing a hidden file in it (catches read-only file systems).

    Returns:
        the absolute folder path.

    Raises:
        OutputDirError: unset, a file, under a file, or not writable (naming ``--<option>`` and the path).
    """
    if output_dir in (None, ""):
        raise OutputDirError(f"--{option} is not set: give the folder the outputs go to.")
    folder = Path(str(output_dir)).expanduser().absolute()
    where = f"--{option} {folder}"
    if folder.exists():
        if not folder.is_dir():
            raise OutputDirError(f"{where}: is a file, not a folder.")
        try:
            fd, probe = tempfile.mkstemp(prefix=".neurolink-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise OutputDirError(f"{where}: the folder is not writable ({e.strerror}).") from None
        return folder
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputDirError(f"{where}: cannot create the folder, {parent} is a file.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputDirError(f"{where}: cannot create the folder, {parent} is not writable.")
    return folder
