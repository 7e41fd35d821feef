# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Contrast of real and synthetic stacks under the bundle's contrast rule (issue 15).

Prints, for each stack, the intensities at the scaling percentiles (0.5, 99.95) and their difference in grey levels
(:func:`neurolink_monai.transforms.contrast_step`): the rule refuses a stack at 1 grey level or less. Stacks: the
real DIADEM OP stacks (``../shared/real/diadem_op_dev`` or ``$NEUROLINK_SHARED/real/diadem_op_dev``; skipped when
absent) and synthetic stacks of every difficulty preset.

    PYTHONPATH=$PWD python benchmarks/contrast_levels.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from neurolink_monai.data.synthetic import SyntheticConfig, generate_dataset
from neurolink_monai.data.synthetic.config import DIFFICULTY_PRESETS
from neurolink_monai.io import read_tiff_stack
from neurolink_monai.transforms import contrast_step
from neurolink_monai.transforms.intensity import DEFAULT_PERCENTILES

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NEUROLINK_SHARED", REPO.parent / "shared"))


def levels(path: Path) -> tuple[float, float, float]:
    arr, _ = read_tiff_stack(path)
    low, high = np.percentile(arr, DEFAULT_PERCENTILES)
    return float(low), float(high), float((high - low) / contrast_step(arr.dtype, low, high))


def main() -> None:
    print(f"{'stack':32s} {'p0.5':>8s} {'p99.95':>8s} {'grey levels':>12s}")
    real = SHARED / "real" / "diadem_op_dev"
    for path in sorted(real.glob("OP_*.tif")) if real.is_dir() else []:
        low, high, n = levels(path)
        print(f"{'DIADEM ' + path.name:32s} {low:8.1f} {high:8.1f} {n:12.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(DIFFICULTY_PRESETS):
            folder = Path(tmp) / name
            generate_dataset(
                folder,
                num_samples=4,
                shape=(32, 64, 64),
                seed=0,
                config=SyntheticConfig.preset(name),
                splits=(1.0, 0.0, 0.0),
                progress=False,
            )
            counts = [levels(p)[2] for p in sorted(folder.rglob("*.tif")) if "labels" not in p.parent.name]
            print(f"{'synthetic ' + name + ' (min of 4)':32s} {'':8s} {'':8s} {min(counts):12.1f}")


if __name__ == "__main__":
    main()
