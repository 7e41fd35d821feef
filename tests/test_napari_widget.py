# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The "Segment and trace" widget in a real, headless napari viewer (pytest-qt, ``QT_QPA_PLATFORM=offscreen``).

napari draws with OpenGL; offscreen Qt gets a GLX context from an X display, so without ``DISPLAY`` a private
``Xvfb`` is started (:func:`neurolink_monai.napari.headless.ensure_display`; Debian package ``xvfb``, installed by
``.ci/run``), and the tests skip when there is none.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("npe2")

from test_napari_plugin import tiny_checkpoint  # noqa: E402

from neurolink_monai.data.synthetic import generate_sample  # noqa: E402
from neurolink_monai.io import read_swc  # noqa: E402
from neurolink_monai.napari import MANIFEST_PATH  # noqa: E402
from neurolink_monai.napari.layers import STATUS_COLOURS, points_to_swc  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
_WAIT_MS = 180_000  # generous: the CI machine is a shared 2-core box


@pytest.fixture(scope="session", autouse=True)
def display():
    """An X display for offscreen Qt's OpenGL context (session-scoped and autouse, so that it exists before
    pytest-qt's session-scoped ``qapp``)."""
    from neurolink_monai.napari.headless import ensure_display

    name = ensure_display()
    if name is None:
        pytest.skip("napari needs OpenGL: no DISPLAY and no Xvfb (apt-get install xvfb)")
    return name


@pytest.fixture
def viewer(display, qtbot):
    import napari
    from npe2 import PluginManager, PluginManifest

    pm = PluginManager.instance()
    if "neurolink-monai" not in pm:  # not pip-installed with the extra: register the manifest of this checkout
        pm.register(PluginManifest.from_file(MANIFEST_PATH))
    v = napari.Viewer(show=False)
    yield v
    v.close()


@pytest.fixture
def sample():
    return generate_sample((16, 48, 48), 2)


def wait_for(qtbot, widget, worker) -> None:
    assert worker is not None, widget.status.value
    with qtbot.waitSignal(worker.finished, timeout=_WAIT_MS):
        pass


def make_widget(viewer, tmp_path, sample):
    from neurolink_monai.napari.widget import SegmentAndTraceWidget

    ckpt, config = tiny_checkpoint(tmp_path)
    image = viewer.add_image(sample["image"], name="stack", scale=sample["spacing"])
    widget = SegmentAndTraceWidget(viewer, roi_size=(16, 48, 48), config=config)
    viewer.window.add_dock_widget(widget)
    widget.checkpoint.value = ckpt
    widget.image.value = image
    return widget, image


def test_widget_errors_are_notifications(viewer, qtbot, tmp_path, sample):
    widget, _ = make_widget(viewer, tmp_path, sample)
    flat = viewer.add_image(np.zeros((32, 32), dtype=np.float32), name="flat")
    widget.image.value = flat
    assert widget.run() is None and "2D image" in widget.status.value
    widget.image.value = viewer.layers["stack"]
    widget.checkpoint.value = tmp_path / "missing.pt"
    assert widget.run() is None and "checkpoint not found" in widget.status.value
    assert widget.run_button.enabled  # nothing left busy


def test_widget_cancel_run_trace_write(viewer, qtbot, tmp_path, sample):
    widget, image = make_widget(viewer, tmp_path, sample)
    original = image.data.copy()

    # cancel: many small windows, cancelled at once -> a notification, no layers
    widget.inference_options["roi_size"] = (8, 16, 16)
    worker = widget.run()
    widget.cancel()
    wait_for(qtbot, widget, worker)
    assert "cancelled" in widget.status.value
    assert "stack prob" not in viewer.layers and widget.run_button.enabled

    # run: one window -> prob (Image) and mask (Labels) with the image's scale, progress at the end
    widget.inference_options["roi_size"] = (16, 48, 48)
    wait_for(qtbot, widget, widget.run())
    qtbot.waitUntil(lambda: "stack mask" in viewer.layers, timeout=_WAIT_MS)
    prob, mask = viewer.layers["stack prob"], viewer.layers["stack mask"]
    assert prob.data.shape == image.data.shape and type(mask).__name__ == "Labels"
    np.testing.assert_allclose(prob.scale, image.scale)
    assert widget.progress.value == widget.progress.max == 1
    assert widget.prob_layer.value is prob

    # trace a known probability map with a faint cut, rooted at a clicked point at the soma
    gt = sample["label"].astype(np.float32) * 0.95
    gt[:, :, 30:33] *= 0.3  # a stretch below the threshold that the tracer has to bridge
    gt_layer = viewer.add_image(gt, name="gt prob", scale=sample["spacing"])
    soma_zyx = sample["swc"][0, [4, 3, 2]]
    viewer.add_points([soma_zyx * np.asarray(sample["spacing"])], name="root")  # world coordinates
    widget.prob_layer.value = gt_layer
    widget.root_layer.value = viewer.layers["root"]
    wait_for(qtbot, widget, widget.trace())
    qtbot.waitUntil(lambda: "gt trace edges" in viewer.layers, timeout=_WAIT_MS)
    points, edges = viewer.layers["gt trace"], viewer.layers["gt trace edges"]
    features = points.features
    assert len(points.data) > 20 and "status" in features
    root_rows = np.flatnonzero(features["parent"].to_numpy() == -1)
    assert np.linalg.norm(points.data[root_rows[0]] - soma_zyx) < 3.0  # the first tree starts at the clicked root
    assert (features["status"] == 2).any(), widget.status.value  # a bridged stretch ...
    assert np.isclose(edges.edge_color, STATUS_COLOURS[2]).all(axis=1).any()  # ... drawn in magenta
    assert 1 <= len(root_rows) <= 3  # the bundle's tracing settings: at most trace_max_trees trees
    np.testing.assert_allclose(points.scale, image.scale)

    # a blob that the default takes for a soma, on a thin neurite entering the stack: "soma in view" decides
    zz, yy, xx = np.indices(gt.shape)
    blob = ((zz - 8) ** 2 + (yy - 24) ** 2 + (xx - 30) ** 2 <= 25).astype(np.float32)
    blob[8, 24, :30] = 1.0
    widget.prob_layer.value = viewer.add_image(blob, name="blob prob", scale=sample["spacing"])
    widget.root_layer.value = None
    wait_for(qtbot, widget, widget.trace())
    qtbot.waitUntil(lambda: "blob trace" in viewer.layers, timeout=_WAIT_MS)
    assert viewer.layers["blob trace"].features["type"][0] == 1  # rooted at the soma
    viewer.layers.remove("blob trace")
    widget.soma_in_view.value = False
    wait_for(qtbot, widget, widget.trace())
    qtbot.waitUntil(lambda: "blob trace" in viewer.layers, timeout=_WAIT_MS)
    rooted = viewer.layers["blob trace"]
    assert (rooted.features["type"] == 3).all() and rooted.data[0][2] <= 1.0  # rooted where it enters (x = 0)

    # write with the plugin's writer through napari; the file holds the layer's tree
    out = tmp_path / "trace.swc"
    points.save(str(out), plugin="neurolink-monai")
    written = read_swc(out)
    np.testing.assert_array_equal(written, points_to_swc(points.data, features))
    assert int((written[:, 6] == -1).sum()) == int((features["parent"] == -1).sum())
    np.testing.assert_array_equal(image.data, original)  # the opened image was not modified


def test_contributions_through_napari(viewer, qtbot, tmp_path, sample):
    """napari opens an SWC with the plugin's reader and docks the widget from the manifest."""
    from neurolink_monai.io import write_swc

    path = tmp_path / "gold.swc"
    write_swc(path, sample["swc"], header=[f"voxel spacing (z, y, x) = {tuple(sample['spacing'])}"])
    layers = viewer.open(str(path), plugin="neurolink-monai")
    assert [type(layer).__name__ for layer in layers] == ["Points", "Vectors"]
    np.testing.assert_allclose(layers[0].scale, sample["spacing"])
    np.testing.assert_array_equal(points_to_swc(layers[0].data, layers[0].features), read_swc(path))
    _, widget = viewer.window.add_plugin_dock_widget("neurolink-monai", "Segment and trace")
    assert type(widget).__name__ == "SegmentAndTraceWidget"
    assert [layer.name for layer in widget.viewer.layers] == [layer.name for layer in viewer.layers]  # napari's proxy
    # the docked widget works through the viewer proxy napari hands to plugins
    viewer.add_image(np.zeros((8, 8), dtype=np.float32), name="flat")
    assert widget.run() is None and "2D image" in widget.status.value
    viewer.add_image(sample["label"].astype(np.float32), name="label prob", scale=sample["spacing"])
    widget.prob_layer.value = next(c for c in widget.prob_layer.choices if c.name == "label prob")
    wait_for(qtbot, widget, widget.trace())
    qtbot.waitUntil(lambda: "label trace" in viewer.layers, timeout=_WAIT_MS)
    assert len(viewer.layers["label trace"].data) > 20
