# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Checkpoint reading with errors that say which file and what is wrong, checked before any model runs."""

from __future__ import annotations

import logging
import os
import pickle
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from ignite.handlers import Checkpoint
from monai.handlers import CheckpointLoader

from ..errors import CheckpointError

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["CheckedCheckpointLoader", "check_state_dict", "read_checkpoint"]

logger = logging.getLogger(__name__)

_SHOWN = 3  # keys listed per kind of mismatch

# what torch.load raises on damaged or foreign bytes besides pickle.UnpicklingError (found by feeding it random files)
_DAMAGED_FILE_ERRORS = (
    RuntimeError,
    EOFError,
    ValueError,
    OSError,
    AttributeError,
    IndexError,
    KeyError,
    TypeError,
    struct.error,
)


def _describe_content(path: Path) -> str:
    """What a file that torch cannot load looks like: text (with its start) or unrecognised binary data."""
    with open(path, "rb") as f:
        head = f.read(256)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\t\r\n" for c in text):
        start = " ".join(text.split())[:40]
        return f"it is a text file (starting {start!r}), not a PyTorch checkpoint"
    return "it is not a PyTorch checkpoint (unrecognised or damaged binary data)"


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def read_checkpoint(path: Any, map_location: Any = None, option: str = "--ckpt_path") -> Mapping[str, Any]:
    """Load a state-dict checkpoint (tensors and plain containers only) or raise a :class:`CheckpointError`.

    Args:
        path: the checkpoint file (``bundle/models/model.pt`` or ``checkpoint_epoch=N.pt``).
        map_location: ``torch.load`` map location.
        option: what the path is, named in the errors (the option ``--ckpt_path``, or ``resume checkpoint``).

    Raises:
        CheckpointError: the path is unset, missing, a folder, unreadable, empty, a TorchScript archive, a text
            file, damaged, holds arbitrary Python objects, or is not a dict; the message names the file.
    """
    if path in (None, "", "None", "null"):
        raise CheckpointError(f"{option} is not set: give the checkpoint file (e.g. bundle/models/model.pt).")
    p = Path(str(path)).expanduser()
    where = f"{option} {p}"
    if not p.exists():
        raise CheckpointError(f"{where}: no such file.")
    if p.is_dir():
        raise CheckpointError(f"{where}: is a folder, not a checkpoint file.")
    if not os.access(p, os.R_OK):
        raise CheckpointError(f"{where}: the file is not readable (permission denied).")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{where}: the file is empty.")
    if _is_torchscript(p):
        raise CheckpointError(
            f"{where}: is a TorchScript archive; give the state-dict checkpoint it was exported from (model.pt)."
        )
    try:
        with warnings.catch_warnings():  # a damaged file's header reads as an odd protocol: the error below says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            checkpoint = torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():
            raise CheckpointError(
                f"{where}: holds Python objects other than tensors and plain containers, so it is not a "
                "NeuroLink state-dict checkpoint; it is not unpickled, as that could run arbitrary code."
            ) from None
        raise CheckpointError(f"{where}: {_describe_content(p)}.") from None
    except _DAMAGED_FILE_ERRORS as e:
        if isinstance(e, OSError) and not isinstance(e, EOFError) and e.errno is not None:
            raise CheckpointError(f"{where}: cannot read the file ({e.strerror}).") from None
        raise CheckpointError(f"{where}: {_describe_content(p)}.") from None
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{where}: holds a {type(checkpoint).__name__}, not a dict of state dicts.")
    return checkpoint


def _shown(keys: list[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(repr(k) for k in keys[:_SHOWN]) + more


def check_state_dict(state: Any, module: torch.nn.Module, where: str) -> None:
    """Raise a :class:`CheckpointError` unless ``state`` has exactly the keys and tensor shapes of ``module``.

    Args:
        state: the state dict read from the checkpoint.
        module: the network it is meant for (e.g. the bundle's ``network_def``).
        where: the file (and option) named in the message.
    """
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where}: the model entry is a {type(state).__name__}, not a state dict.")
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found: dict[str, Any] = dict(state)
    if found and all(k.startswith("module.") for k in found) and not any(k.startswith("module.") for k in expected):
        found = {k[len("module.") :]: v for k, v in found.items()}  # saved from DistributedDataParallel
    not_tensors = [k for k, v in found.items() if not isinstance(v, torch.Tensor)]
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k!r} is {tuple(found[k].shape)} in the file but {expected[k]} in the network"
        for k in expected
        if k in found and isinstance(found[k], torch.Tensor) and tuple(found[k].shape) != expected[k]
    ]
    problems = []
    if not_tensors:
        problems.append(f"{len(not_tensors)} entries are not tensors ({_shown(not_tensors)})")
    if missing:
        problems.append(f"{len(missing)} network weights are missing ({_shown(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} entries are not weights of this network ({_shown(unexpected)})")
    if shapes:
        problems.append(f"{len(shapes)} weights have another shape ({'; '.join(shapes[:_SHOWN])})")
    if problems:
        raise CheckpointError(
            f"{where}: the checkpoint does not fit the network of the config ({type(module).__name__}): "
            + "; ".join(problems)
            + ". Was it trained with another network_def (features, kernel_size, norm, local_contrast, multitask,"
            " out_channels)? Weights trained before bundle 0.5.0 need --network_def#norm"
            """ '$("instance", {"affine": True})' --network_def#local_contrast '$None' --context_margin 0."""
        )


class CheckedCheckpointLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` that reads and checks the file when it is built, before any model runs.

    The file is read once, at construction (config parsing), with :func:`read_checkpoint`; every network of
    ``load_dict`` is checked with :func:`check_state_dict` and every other object must have its entry. The
    weights are loaded into the objects at ``Events.STARTED``, as MONAI's loader does. Errors are
    :class:`CheckpointError` naming the file.

    Args:
        load_path: the checkpoint file.
        load_dict: name -> object to restore (``{"model": network}``).
        map_location: ``torch.load`` map location.
        option: what the path is, named in the errors (the option ``--ckpt_path``).
        strict: passed to ``load_state_dict``.
        optional: names of ``load_dict`` that an older checkpoint may lack; they are then left as they are, with a
            warning.
    """

    def __init__(
        self,
        load_path: str,
        load_dict: dict,
        map_location: Any = None,
        option: str = "--ckpt_path",
        strict: bool = True,
        name: str | None = None,
        optional: tuple[str, ...] = (),
    ) -> None:
        if not isinstance(load_dict, Mapping) or not load_dict:
            raise ValueError(f"load_dict must name at least one object to restore, got {load_dict!r}.")
        super().__init__(load_path=str(load_path), load_dict=dict(load_dict), name=name, map_location=map_location)
        self.strict = strict
        where = f"{option} {load_path}"
        checkpoint = read_checkpoint(load_path, map_location, option)
        first = next(iter(self.load_dict))
        if len(self.load_dict) == 1 and first not in checkpoint:
            checkpoint = {first: checkpoint}  # the file is directly the model's state dict (MONAI's convention)
        for key in [k for k in optional if k in self.load_dict and k not in checkpoint]:
            logger.warning(f"{where}: the checkpoint has no {key!r} entry; it is not restored.")
            del self.load_dict[key]
        for key, obj in self.load_dict.items():
            if key not in checkpoint:
                raise CheckpointError(
                    f"{where}: the checkpoint has no {key!r} entry (it holds {_shown(list(checkpoint))})."
                )
            if isinstance(obj, torch.nn.Module):
                check_state_dict(checkpoint[key], getattr(obj, "module", obj) if _is_wrapped(obj) else obj, where)
        self.checkpoint = checkpoint

    def __call__(self, engine: Engine) -> None:
        prior_max_epochs = engine.state.max_epochs
        Checkpoint.load_objects(to_load=self.load_dict, checkpoint=dict(self.checkpoint), strict=self.strict)
        if prior_max_epochs is not None and engine.state.epoch > prior_max_epochs:
            raise CheckpointError(
                f"{self.load_path}: the checkpoint is at epoch {engine.state.epoch}, beyond max_epochs "
                f"{prior_max_epochs}; pass a larger --max_epochs to continue training."
            )
        engine.state.max_epochs = prior_max_epochs
        self.logger.info(f"Restored all variables from {self.load_path}")


def _is_wrapped(module: torch.nn.Module) -> bool:
    return isinstance(module, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel))
