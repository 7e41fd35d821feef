# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The "Segment and trace" dock widget: bundle inference in a worker thread, then tracing to SWC.

1. **Segment**: pick an Image layer and a checkpoint (default the shipped ``bundle/models/model.pt``); *Run* calls
   :func:`neurolink_monai.napari.segment.segment_volume` in a napari worker thread with a progress bar (one step per
   sliding window) and a *Cancel* button, then adds ``<image> prob`` (Image) and ``<image> mask`` (Labels) layers
   with the image's scale and translation. The direction and distance heads travel in the prob layer's metadata.
2. **Trace**: pick a probability layer (the one just made, or any map in [0, 1]), the tracer's threshold, maximum
   gap and minimum piece length, optionally a Points layer whose last point is the root, and *soma in view* (untick
   it for axon stacks whose somata lie outside: each tree is then rooted where it enters the stack); *Trace* runs
   :func:`neurolink_monai.tracing.trace_with_config` with the bundle's other tracing settings (main-tree linking,
   at most 3 trees, the contrast check against the chosen image when it has the probability's shape, faint-spur
   removal: ``bundle_inference_settings(...)["trace"]``) in a worker thread and adds the SWC as Points + Vectors layers
   (:mod:`neurolink_monai.napari.layers`). Edges are cyan when confident, yellow below the *confident above*
   probability and magenta where the tracer bridged voxels below the threshold: the places to proofread.
   Save the points layer with File > Save Selected Layers (``.swc``).

Errors (wrong dimensionality, a missing checkpoint, a cancelled run, a root outside the volume) are napari
notifications and the status line; the viewer stays responsive and no layer the user opened is modified.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, ProgressBar, PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from .layers import edge_status, swc_to_layer_data, tree_index
from .segment import InferenceCancelled, SegmentationResult, default_checkpoint, segment_volume

__all__ = ["SegmentAndTraceWidget"]

_GENERATED = "neurolink_generated"  # metadata flag of the layers this widget made (only those are ever replaced)


class _ProgressSignal(QObject):
    """Carries ``(done, total)`` from the worker thread to the GUI thread (a queued Qt connection)."""

    changed = Signal(int, int)


class SegmentAndTraceWidget(Container):
    """Dock widget: segment an image layer with the bundle's model, trace the probability map to SWC.

    Args:
        napari_viewer: the viewer (napari passes it by this name).
        roi_size, overlap: override the bundle config's sliding-window settings (e.g. a small ROI for a quick look).
        config: another bundle inference config (its ``network_def`` must match the checkpoint).
    """

    def __init__(
        self,
        napari_viewer: napari.viewer.Viewer,
        roi_size: tuple[int, int, int] | None = None,
        overlap: float | None = None,
        config: str | None = None,
    ) -> None:
        super().__init__(labels=True)
        self.viewer = napari_viewer
        self.inference_options: dict[str, Any] = {"roi_size": roi_size, "overlap": overlap, "config": config}
        self.image = ComboBox(label="image", choices=self._layer_choices("image"))
        self.checkpoint = FileEdit(label="checkpoint", value=default_checkpoint(), filter="*.pt *.pth *.ts")
        self.run_button = PushButton(text="Run segmentation")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="windows", value=0, min=0, max=1)
        self.prob_layer = ComboBox(label="probability", choices=self._layer_choices("image"))
        self.threshold = FloatSpinBox(label="threshold", value=0.5, min=0.01, max=1.0, step=0.05)
        self.confident = FloatSpinBox(label="confident above", value=0.7, min=0.01, max=1.0, step=0.05)
        self.max_gap = FloatSpinBox(label="max gap (voxels)", value=15.0, min=0.0, max=500.0, step=1.0)
        self.min_length = FloatSpinBox(label="min length (voxels)", value=6.0, min=0.0, max=10000.0, step=1.0)
        self.root_layer = ComboBox(label="root point", choices=self._layer_choices("points", optional=True))
        self.soma_in_view = CheckBox(
            text="soma in view",
            value=True,
            tooltip="untick for axon stacks whose somata lie outside the stack: no blob is taken for a soma, and "
            "each tree is rooted where it enters the stack",
        )
        self.trace_button = PushButton(text="Trace")
        self.status = Label(value="")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.image,
                self.checkpoint,
                self.run_button,
                self.cancel_button,
                self.progress,
                self.prob_layer,
                self.threshold,
                self.confident,
                self.max_gap,
                self.min_length,
                self.root_layer,
                self.soma_in_view,
                self.trace_button,
                self.status,
            ]
        )
        self.worker: Any = None
        self._cancel = threading.Event()
        self._signal = _ProgressSignal()
        self._signal.changed.connect(self._on_progress)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.trace_button.changed.connect(self.trace)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(lambda _e=None: self.reset_choices())
        self.reset_choices()

    # ---------------------------------------------------------------- helpers
    def _layer_choices(self, kind: str, optional: bool = False):
        layer_type = {"image": napari.layers.Image, "points": napari.layers.Points}[kind]

        def choices(_widget: Any = None) -> list[tuple[str, Any]]:
            found = [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, layer_type)]
            return ([("none", None)] if optional else []) + found

        return choices

    def _report(self, message: str, error: bool = False) -> None:
        self.status.value = message
        (show_error if error else show_info)(message)

    def _busy(self, busy: bool) -> None:
        self.run_button.enabled = self.trace_button.enabled = not busy
        self.cancel_button.enabled = busy

    def _put_layer(self, data: Any, meta: dict, layer_type: str) -> Any:
        """Add a layer, or update this widget's own earlier layer of that name (never a layer the user opened)."""
        name = meta["name"]
        meta = {**meta, "metadata": {**meta.get("metadata", {}), _GENERATED: True}}
        if name in self.viewer.layers:
            old = self.viewer.layers[name]
            if old.metadata.get(_GENERATED) and type(old).__name__.lower() == layer_type:
                self.viewer.layers.remove(old)
        return self.viewer.add_layer(napari.layers.Layer.create(data, meta, layer_type))

    # ---------------------------------------------------------------- segmentation
    def run(self) -> Any:
        """Start the inference on the chosen image layer in a worker thread; returns the worker (None on error)."""
        layer = self.image.value
        if layer is None:
            self._report("Segment and trace: open or choose an image layer first.", error=True)
            return None
        if layer.multiscale or layer.rgb or layer.ndim != 3:
            what = "multiscale" if layer.multiscale else "RGB" if layer.rgb else f"{layer.ndim}D"
            self._report(
                f"Segment and trace: layer {layer.name!r} is a {what} image of shape {tuple(layer.data.shape)}; "
                "the model needs a single-channel 3D stack (z, y, x).",
                error=True,
            )
            return None
        ckpt = Path(str(self.checkpoint.value)).expanduser()
        if not ckpt.is_file():
            self._report(f"Segment and trace: checkpoint not found: {ckpt}", error=True)
            return None
        self._cancel.clear()
        self.progress.value = 0
        self.status.value = f"segmenting {layer.name!r} ..."
        self._busy(True)
        worker = create_worker(
            segment_volume,
            np.asarray(layer.data),
            ckpt,
            progress=self._signal.changed.emit,
            cancelled=self._cancel.is_set,
            name=f"layer {layer.name!r}",
            _start_thread=False,
            _ignore_errors=True,  # errors go to _on_error (a notification), not to napari's exception hook
            **{k: v for k, v in self.inference_options.items() if v is not None},
        )
        worker.returned.connect(lambda result, src=layer: self._on_segmented(result, src))
        worker.errored.connect(self._on_error)
        worker.finished.connect(lambda: self._busy(False))
        self.worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running inference before its next sliding window."""
        self._cancel.set()
        if self.worker is not None:
            self.worker.quit()

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.max = max(1, total)
        self.progress.value = done

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, InferenceCancelled):
            self._report(f"Segment and trace: {exc}", error=False)
            return
        self._report(f"Segment and trace: {type(exc).__name__}: {exc}", error=True)

    def _on_segmented(self, result: SegmentationResult, source: Any) -> None:
        common = {"scale": tuple(source.scale), "translate": tuple(source.translate)}
        heads = {"direction": result.direction, "distance": result.distance, "source": source.name}
        prob = self._put_layer(
            result.prob,
            {
                **common,
                "name": f"{source.name} prob",
                "colormap": "magma",
                "blending": "additive",
                "contrast_limits": (0.0, 1.0),
                "metadata": {"neurolink_heads": heads, "checkpoint": result.checkpoint},
            },
            "image",
        )
        self._put_layer(result.mask, {**common, "name": f"{source.name} mask", "opacity": 0.4}, "labels")
        self.reset_choices()
        self.prob_layer.value = prob
        self.threshold.value = result.threshold
        self._report(f"Segmented {source.name!r} with {Path(result.checkpoint).name}: {int(result.mask.sum())} voxels")

    # ---------------------------------------------------------------- tracing
    def _root_voxel(self, prob_layer: Any) -> tuple[float, float, float] | None:
        points = self.root_layer.value
        if points is None or len(points.data) == 0:
            return None
        world = points.data_to_world(np.asarray(points.data[-1], dtype=np.float64))
        z, y, x = np.asarray(prob_layer.world_to_data(world), dtype=np.float64)[-3:]
        return (float(x), float(y), float(z))

    def trace(self) -> Any:
        """Trace the chosen probability layer to SWC in a worker thread; returns the worker (None on error)."""
        from neurolink_monai.inference.blockwise import bundle_inference_settings
        from neurolink_monai.tracing import TraceConfig, trace_with_config

        layer = self.prob_layer.value
        if layer is None or layer.ndim != 3 or layer.rgb or layer.multiscale:
            self._report("Segment and trace: choose a 3D probability layer to trace (run the segmentation).", True)
            return None
        try:
            # the bundle's tracer (main-tree linking, contrast check, ...), with this widget's fields
            bundle = bundle_inference_settings(self.inference_options["config"]).get("trace", {})
            config = TraceConfig.from_keywords(
                **{
                    **bundle,
                    "threshold": float(self.threshold.value),
                    "max_gap": float(self.max_gap.value),
                    "min_component_length": float(self.min_length.value),
                    "soma_in_view": bool(self.soma_in_view.value),
                }
            )
            root = self._root_voxel(layer)
        except (ValueError, TypeError) as e:
            self._report(f"Segment and trace: {e}", error=True)
            return None
        prob = np.asarray(layer.data)
        image = self.image.value
        image = np.asarray(image.data) if image is not None and tuple(image.data.shape) == prob.shape else None
        heads = layer.metadata.get("neurolink_heads") or {}
        direction, distance = heads.get("direction"), heads.get("distance")
        if direction is not None and tuple(direction.shape[1:]) != prob.shape:
            direction = distance = None  # the heads belong to another volume
        self.status.value = f"tracing {layer.name!r} ..."
        self._busy(True)
        worker = create_worker(
            trace_with_config,
            prob,
            direction,
            distance,
            root=root,
            spacing=tuple(layer.scale),
            config=config,
            names=(f"layer {layer.name!r}", "direction head", "distance head"),
            image=image,
            _start_thread=False,
            _ignore_errors=True,
        )
        worker.returned.connect(lambda swc, src=layer, p=prob: self._on_traced(swc, src, p))
        worker.errored.connect(self._on_error)
        worker.finished.connect(lambda: self._busy(False))
        self.worker = worker
        worker.start()
        return worker

    def _on_traced(self, swc: np.ndarray, source: Any, prob: np.ndarray) -> None:
        from neurolink_monai.tracing.trace import as_probability

        name = source.name[: -len(" prob")] if source.name.endswith(" prob") else source.name
        if len(swc) == 0:
            self._report(f"Segment and trace: nothing in {source.name!r} reaches threshold {self.threshold.value}.")
            return
        parent_row, tree = tree_index(swc)
        status = edge_status(
            swc[:, [4, 3, 2]],
            parent_row,
            as_probability(prob, source.name),
            float(self.threshold.value),
            max(float(self.confident.value), float(self.threshold.value)),
        )
        for data, meta, layer_type in swc_to_layer_data(
            swc, f"{name} trace", tuple(source.scale), tuple(source.translate), status
        ):
            self._put_layer(data, meta, layer_type)
        trees = int(tree.max()) + 1
        self._report(
            f"Traced {len(swc)} nodes, {trees} tree{'s' if trees != 1 else ''}. Edges: {int((status == 2).sum())} bridged "
            f"(magenta), {int((status == 1).sum())} low confidence (yellow)."
        )
