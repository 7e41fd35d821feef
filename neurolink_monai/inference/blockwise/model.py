# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The network for blockwise inference: the bundle's shipped model by default, another checkpoint, or a module.

The model travels to Dask workers as a :class:`ModelSpec` (serialised bytes plus a digest). It is scattered once to
every worker; each worker process deserialises it on its first block and keeps it (:meth:`ModelSpec.load`), so the
model is loaded once per worker, not once per block, and a remote cluster needs no access to the checkpoint file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...networks.outputs import num_output_channels

__all__ = ["ModelSpec", "bundle_inference_settings", "default_bundle_dir", "load_model_spec", "model_spec_from_module"]

_MODELS: dict[tuple[str, str], nn.Module] = {}
_MODELS_LOCK = threading.Lock()
_STATE_KEYS = ("model", "network", "net", "state_dict", "model_state_dict")


def default_bundle_dir() -> Path:
    """``bundle/`` of the source checkout this package is installed from (editable install)."""
    return Path(__file__).resolve().parents[3] / "bundle"


@dataclass(frozen=True)
class ModelSpec:
    """A serialised network: ``kind`` ``"module"`` (a pickled ``nn.Module``) or ``"torchscript"``.

    Attributes:
        kind: how ``payload`` deserialises.
        payload: the bytes.
        digest: sha256 identifying architecture and weights (recorded in the output).
        seg_channels: segmentation channels at the front of the output (NeuroLinkNet's ``out_channels``).
        out_channels: total output channels, or ``None`` when unknown until a forward pass.
        description: where the model came from, for messages and the record.
    """

    kind: str
    payload: bytes
    digest: str
    seg_channels: int = 1
    out_channels: int | None = None
    description: str = ""

    def load(self, device: torch.device | str = "cpu") -> nn.Module:
        """The network in eval mode on ``device``; deserialised once per process and device, then reused."""
        key = (self.digest, str(device))
        net = _MODELS.get(key)
        if net is None:
            with _MODELS_LOCK:
                net = _MODELS.get(key)
                if net is None:
                    buf = io.BytesIO(self.payload)
                    if self.kind == "torchscript":
                        net = torch.jit.load(buf, map_location=device)
                    else:
                        net = torch.load(buf, map_location=device, weights_only=False)  # our own bytes
                    net = net.to(device).eval()
                    _MODELS[key] = net
        return net

    def describe(self) -> dict:
        """What identifies the network in an output's record (where it was loaded from does not)."""
        return {"digest": self.digest, "kind": self.kind, "seg_channels": self.seg_channels}


def _module_digest(module: nn.Module) -> str:
    h = hashlib.sha256(repr(module).encode())
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _channels_of(module: Any) -> tuple[int, int | None]:
    seg = getattr(module, "out_channels", None)
    multitask = getattr(module, "multitask", None)
    if isinstance(seg, int) and not isinstance(seg, bool):
        if isinstance(multitask, bool):
            return seg, num_output_channels(seg, multitask)
        return seg, None
    return 1, None


def model_spec_from_module(module: nn.Module, seg_channels: int | None = None, description: str = "") -> ModelSpec:
    """Wrap an in-memory network (its class must be importable on the workers).

    Args:
        module: maps ``(B, 1, D, H, W)`` to ``(B, C, D, H, W)``.
        seg_channels: segmentation channels at the front of ``C``; defaults to ``module.out_channels`` or 1.
        description: recorded in the output.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, a checkpoint path or a ModelSpec, got {type(module)}.")
    seg, total = _channels_of(module)
    if seg_channels is not None:
        seg = seg_channels
    module = module.cpu().eval()
    if isinstance(module, torch.jit.ScriptModule):
        buf = io.BytesIO()
        torch.jit.save(module, buf)
        payload, kind = buf.getvalue(), "torchscript"
        digest = hashlib.sha256(payload).hexdigest()
    else:
        buf = io.BytesIO()
        torch.save(module, buf)
        payload, kind = buf.getvalue(), "module"
        digest = _module_digest(module)
    return ModelSpec(kind, payload, digest, seg, total, description or type(module).__name__)


def _read_config(config_path: Path, bundle_dir: Path | None) -> Any:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    try:
        parser.read_config(str(config_path))
    except Exception as e:
        raise ValueError(f"{config_path}: cannot read the bundle config ({e}).") from e
    parser["bundle_root"] = str(bundle_dir if bundle_dir is not None else config_path.parent.parent)
    return parser


def _network_from_config(config_path: Path, bundle_dir: Path | None) -> nn.Module:
    parser = _read_config(config_path, bundle_dir)
    if "network_def" not in parser:
        raise ValueError(f"{config_path}: the config has no 'network_def' entry.")
    try:
        net = parser.get_parsed_content("network_def", instantiate=True)
    except Exception as e:
        raise ValueError(f"{config_path}: cannot build 'network_def' ({e}).") from e
    if not isinstance(net, nn.Module):
        raise ValueError(f"{config_path}: 'network_def' is not a torch.nn.Module but {type(net).__name__}.")
    return net


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.endswith("constants.pkl") for n in z.namelist())


def load_model_spec(
    model_path: str | os.PathLike | None = None,
    config_path: str | os.PathLike | None = None,
    bundle_dir: str | os.PathLike | None = None,
) -> ModelSpec:
    """Load a checkpoint into a :class:`ModelSpec`.

    Args:
        model_path: a TorchScript file (e.g. the bundle's ``ckpt_export`` output), or a ``torch.save`` state dict
            (or a checkpoint dict holding one under ``model``/``network``/``state_dict``) for the network defined by
            ``network_def`` in ``config_path``. Default: ``<bundle_dir>/models/model.pt``.
        config_path: a MONAI bundle config with ``network_def``; default ``<bundle_dir>/configs/inference.json``.
        bundle_dir: the bundle folder; default: ``bundle/`` of this source checkout.

    Raises:
        FileNotFoundError: the model or config file is missing (the message says how to pass another model).
        ValueError: the file is not a loadable checkpoint or does not match the network.
    """
    bdir = Path(bundle_dir) if bundle_dir is not None else default_bundle_dir()
    if model_path is None:
        model_path = bdir / "models" / "model.pt"
        if not Path(model_path).is_file():
            raise FileNotFoundError(
                f"the bundle's model {model_path} does not exist yet: train or download the bundle's weights, or "
                "pass another checkpoint with --model PATH (a TorchScript file, or a state dict with --config)."
            )
    mpath = Path(model_path).expanduser()
    if not mpath.is_file():
        raise FileNotFoundError(f"model checkpoint not found: {mpath}")
    raw = mpath.read_bytes()
    if _is_torchscript(mpath):
        try:
            net = torch.jit.load(io.BytesIO(raw), map_location="cpu")
        except Exception as e:
            raise ValueError(f"{mpath}: cannot load the TorchScript model ({e}).") from e
        seg, total = _channels_of(net)
        return ModelSpec("torchscript", raw, hashlib.sha256(raw).hexdigest(), seg, total, str(mpath.resolve()))
    cpath = Path(config_path) if config_path is not None else bdir / "configs" / "inference.json"
    if not cpath.is_file():
        raise FileNotFoundError(
            f"network config not found: {cpath}; a state-dict checkpoint ({mpath}) needs a bundle config with "
            "'network_def' (--config PATH)."
        )
    from neurolink_monai.bundle_utils.checkpoint import read_checkpoint

    state = read_checkpoint(mpath, "cpu", option="--model")  # says what is wrong; never unpickles objects
    if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in _STATE_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            raise ValueError(f"{mpath}: a checkpoint dict without a state dict under any of {_STATE_KEYS}.")
        state = inner
    if not isinstance(state, dict):
        raise ValueError(f"{mpath}: expected a state dict, got {type(state).__name__}.")
    net = _network_from_config(cpath, Path(bundle_dir) if bundle_dir is not None else None)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{mpath}: the weights do not match 'network_def' of {cpath}: {e}") from e
    spec = model_spec_from_module(net, description=str(mpath.resolve()))
    digest = hashlib.sha256(raw + json.dumps(_read_config(cpath, None)["network_def"], sort_keys=True).encode())
    return ModelSpec(
        spec.kind, spec.payload, digest.hexdigest(), spec.seg_channels, spec.out_channels, spec.description
    )


def _find(obj: Any, attrs: tuple[str, ...], depth: int = 0) -> Any:
    """First object among ``obj``, its ``transforms`` (Compose) and their attributes that has all ``attrs``."""
    if obj is None or depth > 3:
        return None
    if all(hasattr(obj, a) for a in attrs):
        return obj
    children = list(getattr(obj, "transforms", []) or []) if not isinstance(obj, (str, bytes)) else []
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        children += [v for v in vars(obj).values() if hasattr(v, "__dict__") and not isinstance(v, (nn.Module, type))]
    for child in children:
        found = _find(child, attrs, depth + 1)
        if found is not None:
            return found
    return None


def bundle_inference_settings(
    config_path: str | os.PathLike | None = None, bundle_dir: str | os.PathLike | None = None
) -> dict:
    """Sliding-window, preprocessing and threshold settings of a bundle inference config (missing ones are absent).

    Reads the top-level ``roi_size``, ``overlap``, ``sw_batch_size``, ``threshold`` and ``intensity_percentiles``
    (the keys of ``bundle/configs/inference.json``), then the ``inferer`` object (a ``SlidingWindowInferer`` or
    ``NeuroLinkInferer``: its ``roi_size``, ``overlap``, ``mode``, ``sigma_scale``, ``padding_mode``, ``cval``,
    ``context_margin``, ``skip_background``, ``background_z``, ``sw_batch_size`` win) and a
    ``ScaleIntensityRangePercentiles[d]`` inside ``preprocessing`` (``lower``, ``upper`` win); under ``"trace"``,
    the tracer's keywords of the ``TraceSWCd`` in ``postprocessing`` (the napari widget traces with them).
    ``postprocessing`` is not instantiated (its writers would create folders). Anything that cannot be parsed is
    skipped, so the caller's defaults apply.
    """
    bdir = Path(bundle_dir) if bundle_dir is not None else default_bundle_dir()
    cpath = Path(config_path) if config_path is not None else bdir / "configs" / "inference.json"
    if not cpath.is_file():
        return {}
    try:
        parser = _read_config(cpath, bdir)
    except ValueError:
        return {}
    out: dict[str, Any] = {}

    def parsed(key: str) -> Any:
        try:
            return parser.get_parsed_content(key, instantiate=True) if key in parser else None
        except Exception:
            return None

    for key in ("roi_size", "overlap", "sw_batch_size", "threshold"):
        value = parsed(key)
        if value is not None:
            out[key] = list(value) if isinstance(value, tuple) else value
    percentiles = parsed("intensity_percentiles")
    if isinstance(percentiles, (list, tuple)) and len(percentiles) == 2:
        out["lower"], out["upper"] = float(percentiles[0]), float(percentiles[1])
    inferer = parsed("inferer")
    if inferer is not None and hasattr(inferer, "roi_size") and hasattr(inferer, "overlap"):
        attrs = (
            "roi_size",
            "overlap",
            "mode",
            "sigma_scale",
            "padding_mode",
            "cval",
            "context_margin",
            "skip_background",
            "background_z",
            "sw_batch_size",
        )
        for attr in attrs:
            value = getattr(inferer, attr, None)
            if value is not None:
                value = getattr(value, "value", value)
                out[attr] = list(value) if isinstance(value, tuple) else value
    scaler = _find(parsed("preprocessing"), ("lower", "upper", "b_min", "b_max"))
    if scaler is not None:
        out["lower"], out["upper"] = float(scaler.lower), float(scaler.upper)
    trace = _trace_keywords(parser)
    if trace:
        out["trace"] = trace
    return out


def trace_step_id(parser: Any) -> str | None:
    """The config id (``"postprocessing#transforms#<i>"``) of the first ``TraceSWCd`` in the post-processing of a
    bundle inference config read by ``parser`` (a ``monai.bundle.ConfigParser``); None when there is none."""
    try:
        steps = parser.get("postprocessing#transforms")
    except Exception:
        return None
    for i, step in enumerate(steps if isinstance(steps, list) else []):
        if isinstance(step, dict) and str(step.get("_target_", "")).endswith("TraceSWCd"):
            return f"postprocessing#transforms#{i}"
    return None


def _trace_keywords(parser: Any) -> dict[str, Any]:
    """The :func:`~neurolink_monai.tracing.trace_swc` keywords of the :func:`trace_step_id` step (``max_gap``,
    ``link_cost``, ...), each resolved alone (nothing else of the post-processing is built); those that cannot be
    resolved are left out."""
    from ...tracing.trace import TRACE_KEYWORDS

    step = trace_step_id(parser)
    if step is None:
        return {}
    out = {}
    for key in (k for k in parser.get(step) if k in TRACE_KEYWORDS):
        try:
            out[key] = parser.get_parsed_content(f"{step}#{key}")
        except Exception:
            continue
    return out
