# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""NeuroLinkNet next to MONAI's BasicUNet of similar width: parameters and forward+backward time, one run.

python benchmarks/bench_network.py [--threads 2] [--size 64] [--features 8 16 32 64] [--kernel-size 3]
python benchmarks/bench_network.py --inference [--threads 2] [--repeats 3] [--keep-freed-memory] [--bfloat16]
    [--channels-last]
python benchmarks/bench_network.py --backward-ab [--threads 2] [--repeats 5]
python benchmarks/bench_network.py --fold-ab [--threads 2] [--repeats 5] [--keep-freed-memory]

The defaults are the bundle's configuration (``bundle/configs/train.json``). Each network is timed alternately
with BasicUNet (pairs), and the ratio is the median of the per-pair ratios (goal for the bundle's configuration:
<= 2.5). NeuroLinkNet's convolutions always take oneDNN on CPU (``neurolink_monai.networks.Conv3d``); the row
"BasicUNet, oneDNN convs" gives BasicUNet the same kernels, for a like-for-like ratio.

``--inference`` times the forward pass alone instead, as the bundle's inference runs it: one window of
``roi_size`` (``bundle/configs/inference.json``, 80x128x128) through ``network_def`` with the shipped weights
``bundle/models/model.pt``, in eval mode under ``torch.inference_mode``, paired with BasicUNet of the same width. ``--keep-freed-memory``
first makes glibc's malloc keep freed memory (``_timing.keep_freed_memory``), to show what the page faults of
fresh large tensors cost.

``--backward-ab`` times one training step of ``train.json``'s network on one batch of its patches
(``num_samples`` x ``patch_size``, 2 x 32x64x64) with DSConv3D's written-out backward (``_SnakeFusion``, what
training runs) against autograd through the same plain operators (what training ran before 0.5.1), alternately,
and the peak memory of each.

``--fold-ab`` times one inference window (as ``--inference``) with the eval-mode batch norms folded into the layers
before them (``networks.norm.fold_norm``, what inference runs) against the norms applied one by one, alternately, and
prints the largest difference of the outputs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from _timing import keep_freed_memory, paired_seconds, peak_memory_mb, with_onednn_convs
from monai.networks.nets import BasicUNet

from neurolink_monai.networks import DSConv3D, NeuroLinkNet

REPO = Path(__file__).resolve().parents[1]


def bundle_network_spec(config_name: str) -> dict:
    """The keyword arguments of ``network_def`` in ``bundle/configs/<config_name>`` (plain JSON values)."""
    config = json.loads((REPO / "bundle" / "configs" / config_name).read_text())
    return {k: v for k, v in config["network_def"].items() if k != "_target_"}


def inference_pass(
    threads: int,
    repeats: int,
    device: torch.device,
    note: str = "",
    autocast: torch.dtype | None = None,
    channels_last: bool = False,
) -> None:
    """Forward-only seconds of one ``roi_size`` window: the shipped network next to BasicUNet of the same width;
    ``channels_last``: both networks and the window in ``torch.channels_last_3d``."""
    from neurolink_monai.bundle_utils import load_pretrained

    config = json.loads((REPO / "bundle" / "configs" / "inference.json").read_text())
    spec = bundle_network_spec("inference.json")
    net = load_pretrained(NeuroLinkNet(**spec), REPO / "bundle" / "models" / "model.pt").to(device).eval()
    f = spec["features"]
    basic_features = (f[0], *f, f[0])
    basic = with_onednn_convs(BasicUNet(3, 1, 1, features=basic_features)).to(device).eval()
    x = torch.randn(1, spec["in_channels"], *config["roi_size"], device=device)
    if channels_last:
        net, basic = net.to(memory_format=torch.channels_last_3d), basic.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)

    def forward(model: torch.nn.Module):
        def run() -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                model(x)

        return run

    base_s, seconds, ratio = paired_seconds(forward(basic), forward(net), repeats)
    cast = ("" if autocast is None else f", autocast {autocast}") + (", channels_last_3d" if channels_last else "")
    print(f"device={device} threads={threads} window={tuple(x.shape)} forward only, eval, inference_mode{cast}{note}")
    print(f"{'network':<52}{'fwd s':>10}{'ratio':>8}")
    print(f"{f'BasicUNet{basic_features}, oneDNN convs':<52}{base_s:>10.3f}{1.0:>8.2f}")
    print(f"{f'NeuroLinkNet bundle network_def, model.pt':<52}{seconds:>10.3f}{ratio:>8.2f}", flush=True)


def backward_ab(repeats: int, device: torch.device) -> None:
    """Training step of ``train.json``'s network with the written-out DSConv3D backward against plain autograd."""
    config = json.loads((REPO / "bundle" / "configs" / "train.json").read_text())
    x = torch.randn(config["batch_size"] * config["num_samples"], 1, *config["patch_size"], device=device)
    net = NeuroLinkNet(**bundle_network_spec("train.json")).to(device).train()
    written_out = DSConv3D._takes_snake_function

    def step(use_function: bool):
        def run() -> None:
            DSConv3D._takes_snake_function = written_out if use_function else (lambda self, x, offsets: False)
            try:
                net(x).float().sum().backward()
            finally:
                DSConv3D._takes_snake_function = written_out

        return run

    autograd_s, function_s, ratio = paired_seconds(step(False), step(True), repeats)
    print(f"device={device} threads={torch.get_num_threads()} batch={tuple(x.shape)} train.json network_def")
    print(f"{'DSConv3D backward':<36}{'step s':>10}{'peak MB':>10}")
    for name, seconds, use in (("autograd (plain operators)", autograd_s, False), ("written out", function_s, True)):
        print(f"{name:<36}{seconds:>10.3f}{peak_memory_mb(step(use), device):>10.0f}")
    print(f"written out / autograd, median of pairs: {ratio:.3f}")


def fold_ab(repeats: int, device: torch.device) -> None:
    """One inference window of the shipped network with its batch norms folded against applied one by one."""
    from neurolink_monai.bundle_utils import load_pretrained
    from neurolink_monai.networks import neurolink_net

    config = json.loads((REPO / "bundle" / "configs" / "inference.json").read_text())
    spec = bundle_network_spec("inference.json")
    net = load_pretrained(NeuroLinkNet(**spec), REPO / "bundle" / "models" / "model.pt").to(device).eval()
    x = torch.rand(1, spec["in_channels"], *config["roi_size"], device=device)
    fold, folded_fusion = neurolink_net.fold_norm, DSConv3D._folded_fusion

    def forward(folding: bool):
        def run() -> torch.Tensor:
            neurolink_net.fold_norm = fold if folding else (lambda weight, bias, norm: None)
            DSConv3D._folded_fusion = folded_fusion if folding else (lambda self: None)
            try:
                with torch.inference_mode():
                    return net(x)
            finally:
                neurolink_net.fold_norm, DSConv3D._folded_fusion = fold, folded_fusion

        return run

    difference = (forward(True)() - forward(False)()).abs().max().item()
    applied_s, folded_s, ratio = paired_seconds(forward(False), forward(True), repeats)
    print(f"device={device} threads={torch.get_num_threads()} window={tuple(x.shape)} model.pt, inference_mode")
    print(f"norms applied {applied_s:.3f} s, folded {folded_s:.3f} s, folded / applied (median of pairs) {ratio:.3f}")
    print(f"largest output difference {difference:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--features", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--inference", action="store_true", help="forward-only time of one bundle inference window")
    parser.add_argument("--keep-freed-memory", action="store_true", help="glibc malloc keeps freed memory (mallopt)")
    parser.add_argument("--bfloat16", action="store_true", help="with --inference: both networks under bf16 autocast")
    parser.add_argument("--channels-last", action="store_true", help="with --inference: channels_last_3d layout")
    parser.add_argument(
        "--backward-ab", action="store_true", help="training step: written-out DSConv3D backward vs autograd"
    )
    parser.add_argument("--fold-ab", action="store_true", help="inference window: batch norms folded vs applied")
    args = parser.parse_args()
    if args.keep_freed_memory:
        keep_freed_memory()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.inference:
        note = ", malloc keeps freed memory" if args.keep_freed_memory else ""
        autocast = torch.bfloat16 if args.bfloat16 else None
        inference_pass(args.threads, args.repeats, device, note, autocast, args.channels_last)
        return
    if args.backward_ab:
        backward_ab(args.repeats, device)
        return
    if args.fold_ab:
        fold_ab(args.repeats, device)
        return
    x = torch.randn(1, 1, args.size, args.size, args.size, device=device)
    f = args.features
    basic = (f[0], *(list(f) + [f[-1] * 2] * 4)[:4], f[0])  # BasicUNet: 5 levels + the output width
    nets = {
        f"BasicUNet{basic}": BasicUNet(3, 1, 1, features=basic),
        f"BasicUNet{basic}, oneDNN convs": with_onednn_convs(BasicUNet(3, 1, 1, features=basic)),
        f"NeuroLinkNet plain {tuple(f)}": NeuroLinkNet(features=f, dsconv=False),
        f"NeuroLinkNet K={args.kernel_size} {tuple(f)}": NeuroLinkNet(features=f, kernel_size=args.kernel_size),
        "NeuroLinkNet train.json network_def": NeuroLinkNet(**bundle_network_spec("train.json")),
    }
    print(f"device={device} threads={torch.get_num_threads()} input={tuple(x.shape)}")
    print(f"{'network':<44}{'params':>12}{'fwd+bwd s':>12}{'ratio':>8}")
    base_net = next(iter(nets.values()))
    base_net = base_net.to(device).train()

    def step(net: torch.nn.Module):
        return lambda: net(x).float().sum().backward()

    for name, net in nets.items():
        net = net.to(device).train()
        base_s, seconds, ratio = paired_seconds(step(base_net), step(net), args.repeats)
        params = sum(p.numel() for p in net.parameters())
        print(f"{name:<44}{params:>12,}{seconds:>12.3f}{ratio:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
