# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Whole-stack inference: the bundle's inference workflow (image to SWC) and the sliding-window network pass
of NeuroLinkNet next to MONAI's BasicUNet of the same width, in one run.

    python benchmarks/bench_inference.py [--shape 76 512 512] [--input STACK.tif] [--threads 2]

1. ``python -m monai.bundle run evaluating ... inference.json`` on the stack (a synthetic neuron from
   ``neurolink_monai.data.synthetic`` unless ``--input`` names a TIFF), in a child process: wall seconds,
   voxels/s and the child's peak RSS (the shipped weights, the bundle's settings).
2. The network pass alone through the bundle's ``NeuroLinkInferer`` (same windows, same blending) for the shipped
   NeuroLinkNet and for ``BasicUNet`` with features ``(8, 8, 16, 32, 64, 8)`` (random weights: only the cost
   matters), each with background skipping as configured (``--no-skip`` turns it off for both); BasicUNet also
   with NeuroLinkNet's CPU convolution kernels (``neurolink_monai.networks.Conv3d``), for a like-for-like ratio.
   The benchmark's process keeps freed memory for reuse as the bundle's inference does (``keep_freed_memory``);
   ``--default-allocator`` leaves glibc's default instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _timing import keep_freed_memory, with_onednn_convs
from bench_network import bundle_network_spec
from monai.networks.nets import BasicUNet

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from neurolink_monai.bundle_utils import image_preprocessing_from_config  # noqa: E402
from neurolink_monai.inference import NeuroLinkInferer  # noqa: E402
from neurolink_monai.networks import NeuroLinkNet  # noqa: E402

_CHILD = """
import resource, runpy, sys, torch
torch.set_num_threads({threads})
sys.argv = {argv!r}
try:
    runpy.run_module("monai.bundle", run_name="__main__")
finally:
    print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
"""


def bundle_run(stack: Path, out_dir: Path, threads: int) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of the bundle's inference workflow on ``stack``, in a child process."""
    configs = REPO / "bundle" / "configs"
    argv = ["monai.bundle", "run", "evaluating", "--meta_file", str(configs / "metadata.json")]
    argv += ["--config_file", str(configs / "inference.json"), "--input_path", str(stack)]
    argv += ["--output_dir", str(out_dir)]
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(threads=threads, argv=argv)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bundle inference failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    rss = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("PEAK_RSS_KB")]
    return seconds, float(rss[-1]) / 1024 if rss else float("nan")


def make_stack(shape: list[int], folder: Path) -> Path:
    import tifffile

    from neurolink_monai.data.synthetic import generate_sample

    path = folder / f"synthetic_{'x'.join(map(str, shape))}.tif"
    tifffile.imwrite(path, generate_sample(shape, seed=0)["image"])
    return path


def network_pass(
    image: torch.Tensor, net: torch.nn.Module, roi: list[int], skip: bool, context_margin: int
) -> tuple[float, int, int]:
    inferer = NeuroLinkInferer(roi, overlap=0.25, mode="gaussian", skip_background=skip, context_margin=context_margin)
    start = time.perf_counter()
    with torch.no_grad():
        inferer(image, net)
    return time.perf_counter() - start, inferer.last_windows, inferer.last_skipped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=[76, 512, 512])
    parser.add_argument("--input", type=Path, default=None, help="a TIFF stack instead of a synthetic one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-skip", action="store_true", help="do not skip background windows")
    parser.add_argument("--no-bundle", action="store_true", help="only the network passes")
    parser.add_argument("--default-allocator", action="store_true", help="network passes without keep_freed_memory")
    args = parser.parse_args()
    if not args.default_allocator:
        keep_freed_memory()
    torch.set_num_threads(args.threads)
    config = json.loads((REPO / "bundle" / "configs" / "inference.json").read_text())
    roi, margin = list(config["roi_size"]), int(config["context_margin"])
    spec = bundle_network_spec("inference.json")
    features = list(spec["features"])
    with tempfile.TemporaryDirectory() as tmp:
        stack = args.input if args.input is not None else make_stack(args.shape, Path(tmp))
        from monai.transforms import Compose

        chain = image_preprocessing_from_config(REPO / "bundle" / "configs" / "inference.json")
        image = Compose(chain)({"image": str(stack)})
        image = image["image"].as_tensor()[None].float()
        voxels = int(np.prod(image.shape[2:]))
        print(
            f"stack {stack.name} shape {tuple(image.shape[2:])} threads={torch.get_num_threads()} roi={roi} margin={margin}"
        )
        print(f"{'run':<64}{'seconds':>10}{'Mvox/s':>10}{'peak RSS MB':>13}")
        if not args.no_bundle:
            seconds, rss = bundle_run(stack, Path(tmp) / "out", args.threads)
            print(
                f"{'bundle inference.json, image to SWC':<64}{seconds:>10.1f}{voxels / seconds / 1e6:>10.3f}{rss:>13.0f}"
            )
        net = NeuroLinkNet(**spec).eval()
        net.load_state_dict(torch.load(REPO / "bundle" / "models" / "model.pt", map_location="cpu", weights_only=True))
        basic_features = (features[0], *features, features[0])
        basic = BasicUNet(3, 1, 1, features=basic_features).eval()
        basic_onednn = with_onednn_convs(BasicUNet(3, 1, 1, features=basic_features).eval())
        runs = {
            f"NeuroLinkNet {tuple(features)} network pass": net,
            f"BasicUNet {basic_features} network pass": basic,
            f"BasicUNet {basic_features}, oneDNN convs, network pass": basic_onednn,
        }
        for name, model in runs.items():
            seconds, windows, skipped = network_pass(image, model, roi, not args.no_skip, margin)
            label = f"{name} ({windows - skipped}/{windows} windows)"
            print(f"{label:<64}{seconds:>10.1f}{voxels / seconds / 1e6:>10.3f}{'':>13}", flush=True)


if __name__ == "__main__":
    main()
