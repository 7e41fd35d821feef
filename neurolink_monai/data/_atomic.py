# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Deprecated location of :func:`neurolink_monai.io.atomic_write_bytes`, kept only because
``neurolink_monai.bundle_utils.handlers`` still imports it from here; import it from :mod:`neurolink_monai.io`."""

from __future__ import annotations

from ..io.atomic import atomic_write_bytes

__all__ = ["atomic_write_bytes"]
