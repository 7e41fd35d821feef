# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Direction-guided tracing: probability (+ direction, distance) maps -> SWC reconstructions.

:func:`trace_swc` is the function, :func:`trace_classical` the no-model reference (image in, SWC out), :class:`TraceSWC` / :class:`TraceSWCd` the MONAI post-processing transforms,
and ``python -m neurolink_monai.tracing PROB.tif --output OUT.swc`` the command line.
"""

from __future__ import annotations

from .bridging import Bridge, BridgeParams, BridgeResult, bridge_gaps
from .classical import ClassicalConfig, classical_probability, classical_threshold, trace_classical
from .endpoints import endpoint_directions, extend_tips
from .linking import LinkParams, LinkResult, link_pieces
from .pruning import prune_spurs
from .smoothing import smooth_sections
from .trace import TRACE_KEYWORDS, TraceConfig, trace_swc, trace_with_config
from .transforms import TraceSWC, TraceSWCd
from .trees import forest_to_swc, skeleton_radius

__all__ = [
    "trace_swc",
    "trace_classical",
    "classical_probability",
    "classical_threshold",
    "ClassicalConfig",
    "link_pieces",
    "LinkParams",
    "LinkResult",
    "trace_with_config",
    "TraceConfig",
    "TRACE_KEYWORDS",
    "TraceSWC",
    "TraceSWCd",
    "prune_spurs",
    "smooth_sections",
    "endpoint_directions",
    "extend_tips",
    "bridge_gaps",
    "Bridge",
    "BridgeParams",
    "BridgeResult",
    "forest_to_swc",
    "skeleton_radius",
]
