# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Builders shared by the tests: SWC chains, tubes, tiny networks, an in-process blockwise run and the bundle's
workflows with tiny settings.

Imported as ``from helpers import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "BUNDLE",
    "CONFIGS",
    "META",
    "REPO",
    "TINY",
    "bundle_configs",
    "bundle_workflow",
    "chain_swc",
    "exception_messages",
    "run_blockwise_here",
    "run_bundle",
    "run_inference",
    "straight_swc",
    "tiny_net",
    "tube",
]


def chain_swc(points_xyz: Sequence[Sequence[float]], parents: Sequence[int] | None = None) -> np.ndarray:
    """SWC array ``(N, 7)`` with ids 1..N, type 3 (dendrite), radius 1; by default each node's parent is the
    previous one (a single unbranched chain rooted at the first point)."""
    pts = np.asarray(points_xyz, dtype=float)
    n = len(pts)
    if parents is None:
        parents = [-1] + list(range(1, n))
    swc = np.zeros((n, 7))
    swc[:, 0] = np.arange(1, n + 1)
    swc[:, 1] = 3
    swc[:, 2:5] = pts
    swc[:, 5] = 1.0
    swc[:, 6] = parents
    return swc


def straight_swc(x0: int, x1: int, y: float = 0.0, z: float = 0.0) -> np.ndarray:
    """A chain along x with one node per voxel from ``x0`` to ``x1`` (inclusive) at height ``y``, depth ``z``."""
    return chain_swc([(x, y, z) for x in range(x0, x1 + 1)])


def tube(
    shape: Sequence[int],
    p0: Sequence[float],
    p1: Sequence[float],
    radius: float,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Flat-ended cylinder from p0 to p1 (z, y, x voxel coordinates) of the given radius, OR-ed into ``out``."""
    out = np.zeros(shape, dtype=bool) if out is None else out
    grid = np.stack(np.indices(shape), axis=-1).astype(np.float64)
    a, b = np.asarray(p0, float), np.asarray(p1, float)
    axis = (b - a) / np.linalg.norm(b - a)
    t = (grid - a) @ axis
    perp = np.linalg.norm(grid - a - t[..., None] * axis, axis=-1)
    out |= (t >= 0) & (t <= np.linalg.norm(b - a)) & (perp <= radius)
    return out


def tiny_net(features: Sequence[int] = (4, 8), dsconv: bool = False, seed: int | None = 0, **kwargs: Any):
    """A small NeuroLinkNet (3x3x3 kernels) in eval mode, its weights drawn after ``torch.manual_seed(seed)``."""
    from neurolink_monai.networks import NeuroLinkNet

    if seed is not None:
        torch.manual_seed(seed)
    return NeuroLinkNet(features=tuple(features), kernel_size=3, dsconv=dsconv, **kwargs).eval()


def run_blockwise_here(src: str | os.PathLike, out: str | os.PathLike, **kwargs: Any):
    """``run_blockwise`` in this process without a progress bar and without the bundle's defaults (the bundle
    folder is a missing ``no-bundle`` beside the output), so the settings under test are all explicit."""
    from neurolink_monai.inference.blockwise import run_blockwise

    kwargs = {
        "scheduler": "synchronous",
        "progress": False,
        "bundle_dir": Path(out).parent / "no-bundle",
        **kwargs,
    }
    return run_blockwise(src, out, **kwargs)


# ------------------------------------------------------------------------------------------ the bundle's workflows

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


def bundle_configs(*names: str) -> list[str]:
    """Paths of the bundle's config files ``names`` (e.g. ``"train.json"``)."""
    return [str(CONFIGS / n) for n in names]


def bundle_net(config: str = "inference.json", **network_def: Any) -> torch.nn.Module:
    """The ``network_def`` of the bundle config ``config`` (norm, local contrast and all), with its entries
    ``network_def`` changed (``features=[4, 8]``), freshly initialised."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / config))
    parser.update({f"network_def#{k}": v for k, v in network_def.items()})
    return parser.get_parsed_content("network_def")


def bundle_workflow(names: Sequence[str], workflow_type: str = "train", **override: Any):
    """An initialised ``ConfigWorkflow`` of the bundle configs ``names`` with ``override``."""
    from monai.bundle import ConfigWorkflow

    wf = ConfigWorkflow(
        config_file=bundle_configs(*names),
        meta_file=META,
        logging_file=False,
        workflow_type=workflow_type,
        **override,
    )
    wf.initialize()
    return wf


def run_bundle(names: Sequence[str], workflow_type: str = "train", **override: Any):
    """Run (and finalise) :func:`bundle_workflow`; returns the workflow."""
    wf = bundle_workflow(names, workflow_type, **override)
    wf.run()
    wf.finalize()
    return wf


def run_inference(root: str | os.PathLike, inputs: Any, out_dir: str | os.PathLike, **override: Any):
    """The inference workflow with the tiny network, with the weights a training under ``root`` wrote
    (``models/trained/model.pt``, the documented ``--ckpt_path`` override) when there are some, else
    ``models/model.pt``."""
    trained_weights = Path(root) / "models" / "trained" / "model.pt"
    if trained_weights.is_file():
        override.setdefault("ckpt_path", str(trained_weights))
    return run_bundle(
        ["inference.json"],
        workflow_type="infer",
        bundle_root=str(root),
        input_path=inputs,
        output_dir=str(out_dir),
        roi_size=[24, 48, 48],
        **{"network_def#features": [4, 8]},
        **override,
    )


def exception_messages(e: BaseException | None) -> list[str]:
    """The messages of ``e`` and of the exceptions it was raised from (MONAI wraps config errors)."""
    out = []
    while e is not None:
        out.append(str(e))
        e = e.__cause__ or e.__context__
    return out
