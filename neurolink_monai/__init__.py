# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""NeuroLink-MONAI: weak-signal neuron reconstruction with morphology learning (Yan et al., MICCAI 2024)."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
