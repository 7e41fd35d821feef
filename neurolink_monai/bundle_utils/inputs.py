# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Input listing and up-front checks for the inference workflow: a file, a list of files or a folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import NeuroLinkUserError
from ..transforms.intensity import DEFAULT_PERCENTILES
from .flags import as_bool
from .naming import INPUT_SUFFIXES, input_stem, input_suffix, output_paths
from .paths import check_output_dir
from .preprocessing import load_image_transforms

__all__ = ["InferenceInputError", "check_inference_input", "list_inference_inputs"]


class InferenceInputError(NeuroLinkUserError, ValueError):
    """A bad inference input: missing, unreadable, not a 3D single-channel stack, NaN only, empty folder..."""


def _expand(input_path: Any) -> list[Path]:
    if isinstance(input_path, (str, os.PathLike)):
        items = [input_path]
    elif isinstance(input_path, Sequence):
        items = list(input_path)
    else:
        raise InferenceInputError(
            f"input_path must be a file, a folder or a list of files, got {type(input_path).__name__}: {input_path!r}."
        )
    if not items:
        raise InferenceInputError("input_path is an empty list: give at least one TIFF/NIfTI stack.")
    files: list[Path] = []
    for item in items:
        if not isinstance(item, (str, os.PathLike)) or str(item) == "":
            raise InferenceInputError(f"input_path entries must be file or folder paths, got {item!r}.")
        p = Path(item).expanduser().absolute()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".") and input_suffix(f))
            if not found:
                raise InferenceInputError(
                    f"{p}: the input folder holds no image stack (looked for {', '.join(INPUT_SUFFIXES)})."
                )
            files.extend(found)
        elif p.exists():
            if not p.is_file():
                raise InferenceInputError(f"{p}: not a regular file.")
            if input_suffix(p) is None:
                raise InferenceInputError(f"{p}: unsupported file type; expected one of {', '.join(INPUT_SUFFIXES)}.")
            files.append(p)
        else:
            raise InferenceInputError(f"{p}: no such file or folder.")
    return files


def check_inference_input(
    path: str | os.PathLike, num_channels: int = 1, percentiles: Sequence[float] | None = DEFAULT_PERCENTILES
) -> tuple[int, ...]:
    """Load ``path`` with the bundle's loading chain and check it; returns the channel-first shape.

    Args:
        path: the stack.
        num_channels: channels the network takes.
        percentiles: the intensity-scaling percentiles; the stack must have more than one grey level of contrast
            between them (:func:`neurolink_monai.transforms.check_contrast`); None skips that rule.

    Raises:
        InferenceInputError: unreadable file, 2D image or single slice, wrong channel count, NaN/Inf voxels, a
            constant or near-constant stack... naming the file.
    """
    p = Path(path)
    if not os.access(p, os.R_OK):
        raise InferenceInputError(f"{p}: the file is not readable (permission denied).")
    try:
        img = _apply(load_image_transforms("image", num_channels, percentiles), str(p))
    except InferenceInputError:
        raise
    except Exception as e:  # readers raise many types for damaged files; keep the innermost message
        raise InferenceInputError(_root_message(e, p)) from e
    return tuple(int(s) for s in img.shape)


def _apply(transforms: Sequence[Any], path: str) -> Any:
    data = {"image": path}
    for t in transforms:
        data = t(data)  # called directly: MONAI's apply_transform would hide the message in a RuntimeError chain
    return data["image"]


def _root_message(e: BaseException, path: Path) -> str:
    while e.__cause__ is not None and isinstance(e, RuntimeError):
        e = e.__cause__
    msg = str(e).strip() or type(e).__name__
    return msg if str(path) in msg else f"{path}: cannot read the image ({msg})."


def list_inference_inputs(
    input_path: Any,
    validate: bool = True,
    num_channels: int = 1,
    output_dir: str | os.PathLike | None = None,
    percentiles: Sequence[float] | None = DEFAULT_PERCENTILES,
) -> list[dict[str, str]]:
    """The data list ``[{"image": path}, ...]`` of an inference run, checked before anything is written.

    Args:
        input_path: a TIFF/NIfTI file, a folder (its ``.tif``/``.tiff``/``.nii``/``.nii.gz`` files, sorted; other
            files are ignored), or a list of files and folders.
        validate: load every input once with the bundle's loading chain and check it (3D, ``num_channels``
            channels, finite values), so that a bad file fails the run before any output is written.
        num_channels: channels the network takes.
        output_dir: the inference output folder; when given, an input that an output would overwrite (e.g.
            ``a_seg.tif`` next to ``a.tif`` with the outputs written into the same folder) is refused, and the
            folder must be writable (:func:`~neurolink_monai.bundle_utils.paths.check_output_dir`): all checked
            before any model runs.
        percentiles: intensity-scaling percentiles of the contrast rule (see :func:`check_inference_input`).

    Raises:
        InferenceInputError: a missing path, an empty folder or list, an unsupported file, two inputs with the
            same output stem, an input an output would overwrite, or (with ``validate``) an unreadable, 2D,
            multi-channel or NaN stack; the message names the file.
    """
    files = _expand(input_path)
    seen: dict[str, Path] = {}
    unique: list[Path] = []
    for f in files:
        stem = input_stem(f)
        if stem in seen:
            if seen[stem] == f:
                continue
            raise InferenceInputError(
                f"{f} and {seen[stem]} share the output name stem {stem!r}; their outputs would overwrite each "
                "other. Rename one or run them separately."
            )
        seen[stem] = f
        unique.append(f)
    if output_dir is not None:
        check_output_dir(output_dir)
        inputs = {f.resolve() for f in unique}
        for f in unique:
            for out in output_paths(Path(output_dir).expanduser().absolute(), f).values():
                if out.resolve() in inputs:
                    raise InferenceInputError(
                        f"{out}: this input would be overwritten by an output of {f}; choose another --output_dir."
                    )
    if as_bool(validate, "validate_inputs"):
        for f in unique:
            check_inference_input(f, num_channels, percentiles)
    return [{"image": str(f)} for f in unique]
