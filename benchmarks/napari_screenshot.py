# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Screenshot of the napari "Segment and trace" widget on a traced synthetic stack (the README's picture).

Generates a synthetic weak-signal stack, opens it in a napari viewer (headless: offscreen Qt on a private Xvfb when
there is no display), clicks the widget's Run (the shipped weights ``bundle/models/model.pt``) and Trace buttons
with the default options, shows the result in 3D and saves the window (canvas and dock widget) as a palette PNG.
Prints the inference and tracing wall time and the traced tree's figures.

Usage: PYTHONPATH=$PWD python benchmarks/napari_screenshot.py [--output docs/images/napari_segment_and_trace.png]
       [--seed 3] [--shape 64 128 128]   (needs ``pip install -e ".[napari]"``)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from neurolink_monai.napari.headless import ensure_display

REPO_ROOT = Path(__file__).resolve().parents[1]


def wait(app, worker) -> float:
    """Run the Qt event loop until ``worker`` has finished; returns the wall time."""
    done = []
    worker.finished.connect(lambda: done.append(True))
    start = time.perf_counter()
    while not done:
        app.processEvents()
        time.sleep(0.02)
    app.processEvents()
    return time.perf_counter() - start


def palette_png(rgb, colours: int):
    """A palette image: ``colours`` adaptive entries plus the status colours, which cover too few pixels to survive
    an adaptive palette (so the magenta and yellow edges keep their colour)."""
    from PIL import Image

    from neurolink_monai.napari.layers import STATUS_COLOURS

    adaptive = rgb.quantize(colors=colours, method=Image.Quantize.MEDIANCUT).getpalette()[: 3 * colours]
    fixed = [int(round(255 * c)) for rgba in STATUS_COLOURS for c in rgba[:3]]
    palette = Image.new("P", (1, 1))
    palette.putpalette(adaptive + fixed + [0] * (768 - len(adaptive) - len(fixed)))
    return rgb.quantize(palette=palette, dither=Image.Dither.NONE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "images" / "napari_segment_and_trace.png")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 128, 128))
    parser.add_argument("--colours", type=int, default=96, help="palette size of the PNG (smaller file)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if ensure_display() is None:
        raise SystemExit("napari_screenshot.py: no DISPLAY and no Xvfb to draw on; install xvfb (apt-get install xvfb)")

    import napari
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from neurolink_monai.data.synthetic import generate_sample
    from neurolink_monai.napari.widget import SegmentAndTraceWidget

    sample = generate_sample(tuple(args.shape), args.seed)
    viewer = napari.Viewer(show=False)
    viewer.window.resize(1400, 820)
    image = viewer.add_image(sample["image"], name="synthetic", scale=sample["spacing"], colormap="gray")
    widget = SegmentAndTraceWidget(viewer)
    widget.native.setMaximumWidth(440)
    viewer.window.add_dock_widget(widget, name="Segment and trace", area="right")
    widget.image.value = image
    app = QApplication.instance()

    seconds_run = wait(app, widget.run())
    if "synthetic prob" not in viewer.layers:
        raise SystemExit(f"napari_screenshot.py: the segmentation failed: {widget.status.value}")
    seconds_trace = wait(app, widget.trace())
    if "synthetic trace" not in viewer.layers:
        raise SystemExit(f"napari_screenshot.py: the tracing failed: {widget.status.value}")
    status = viewer.layers["synthetic trace"].features["status"].to_numpy()
    print(f"stack {tuple(args.shape)} seed {args.seed}: inference {seconds_run:.1f} s, tracing {seconds_trace:.1f} s")
    print(widget.status.value)
    print(
        f"edges: {int((status == 0).sum())} confident, {int((status == 1).sum())} low confidence, "
        f"{int((status == 2).sum())} bridged"
    )

    viewer.layers["synthetic mask"].visible = False
    viewer.layers["synthetic prob"].visible = False
    viewer.layers["synthetic"].contrast_limits = tuple(np.percentile(sample["image"], [5, 99.99]))
    viewer.layers["synthetic"].opacity = 0.6
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    viewer.camera.angles = (0.0, 20.0, 70.0)  # tilted to show depth
    viewer.camera.zoom *= 1.25
    app.processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    png = palette_png(Image.fromarray(shot[..., :3]), args.colours)
    png.save(args.output, optimize=True)
    print(f"wrote {args.output} ({shot.shape[1]} x {shot.shape[0]}, {args.output.stat().st_size / 1024:.0f} KiB)")
    viewer.close()


if __name__ == "__main__":
    main()
