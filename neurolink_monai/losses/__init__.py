# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Losses of NeuroLink (Yan et al., MICCAI 2024): the morphology continuity loss, the multi-task NeuroLink loss,
the label centreline graph they rely on, and the ignite glue that logs each loss term. The label thinning is
:func:`neurolink_monai.skeleton.thin_curves`."""

from __future__ import annotations

from .centreline import CentrelineGraph, build_centreline_graph
from .continuity import MorphologyContinuityLoss
from .handlers import LossTermsHandler, from_loss_terms
from .neurolink import STACKED_TARGET_CHANNELS, NeuroLinkLoss

__all__ = [
    "CentrelineGraph",
    "LossTermsHandler",
    "MorphologyContinuityLoss",
    "NeuroLinkLoss",
    "STACKED_TARGET_CHANNELS",
    "build_centreline_graph",
    "from_loss_terms",
]
