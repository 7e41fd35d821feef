# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The napari plugin (npe2): SWC/TIFF/OME-Zarr readers, an SWC writer and the "Segment and trace" widget.

Install with ``pip install -e ".[napari]"``; the manifest is ``napari.yaml`` beside this file, registered through the
``napari.manifest`` entry point. :mod:`.layers`, :mod:`.readers`, :mod:`.writers` and :mod:`.segment` need neither
napari nor Qt; :mod:`.widget` needs both.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MANIFEST_PATH"]

MANIFEST_PATH = Path(__file__).with_name("napari.yaml")
