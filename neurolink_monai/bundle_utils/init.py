# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Network initialisation used by the bundle's training configs."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["init_foreground_prior", "load_pretrained"]


def init_foreground_prior(network: nn.Module, prior: float = 0.01) -> nn.Module:
    """Set the bias of NeuroLinkNet's segmentation head so that every voxel starts at probability ``prior``.

    Neurites fill about 1 % of a stack. With a zero bias the network starts at probability 0.5 everywhere and Adam,
    whose steps are about ``lr`` per parameter, needs thousands of iterations just to darken the background,
    which a short CPU schedule does not have. Starting from the foreground prior, as for the classification head of
    RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017), lets the first iterations learn
    the neurites instead. Only a sigmoid head (``out_channels == 1``) is changed; softmax heads are left as they are.

    Args:
        network: a :class:`neurolink_monai.networks.NeuroLinkNet` (anything with a ``seg_head`` convolution), or a
            ``DistributedDataParallel`` wrapping one.
        prior: starting foreground probability in (0, 1).

    Returns:
        the same network (modified in place), for use in config expressions.
    """
    if not 0.0 < float(prior) < 1.0:
        raise ValueError(f"prior must lie in (0, 1), got {prior!r}.")
    module = getattr(network, "module", network)
    head = getattr(module, "seg_head", None)
    if not isinstance(head, nn.Conv3d) or head.bias is None:
        raise TypeError(f"expected a network with a 'seg_head' Conv3d with bias, got {type(module).__name__}.")
    if head.out_channels == 1:
        with torch.no_grad():
            head.bias.fill_(math.log(prior / (1.0 - prior)))
    return network


def load_pretrained(network: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a state dict (``torch.save(net.state_dict())``, or a MONAI checkpoint holding it under ``"model"``)
    into ``network``: the starting point of fine-tuning.

    The file is read and checked by :func:`~neurolink_monai.bundle_utils.read_checkpoint` and
    :func:`~neurolink_monai.bundle_utils.check_state_dict` (tensors only, the keys and shapes of ``network``).

    Args:
        network: the network built from ``network_def`` (or a ``DistributedDataParallel`` wrapping one).
        path: the weights file, e.g. the shipped ``models/model.pt``.

    Returns:
        the same network, for use in config expressions.

    Raises:
        CheckpointError: the file is missing, unreadable, or holds weights of another network; the message names
            the file and the option ``--pretrained_path``.
    """
    from .checkpoint import check_state_dict, read_checkpoint

    option = "--pretrained_path"
    state = read_checkpoint(path, map_location="cpu", option=option)
    if isinstance(state.get("model"), dict):
        state = state["model"]
    module = getattr(network, "module", network)
    check_state_dict(state, module, f"{option} {Path(str(path)).expanduser()}")
    if all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in module.state_dict()):
        state = {k[len("module.") :]: v for k, v in state.items()}
    module.load_state_dict(state)
    return network
