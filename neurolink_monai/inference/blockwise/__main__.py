# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""``python -m neurolink_monai.inference.blockwise``: see :mod:`neurolink_monai.inference.blockwise.cli`."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
