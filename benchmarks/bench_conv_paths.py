# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""The CPU convolution changes of NeuroLinkNet, each timed against what it replaced, paired in one run.

    python benchmarks/bench_conv_paths.py [--threads 2] [--repeats 3] [--backward]

1. ``networks.Conv3d`` (oneDNN always) against ``nn.Conv3d`` (PyTorch's backend rule) on the 3x3x3 convolutions that
   the rule sends to ``slow_conv3d``: forward and forward+backward milliseconds, ratio new / old.
2. ``MultiViewBlock`` computing its standard and offset convolutions as one (``_views_one_convolution``) against the
   four separate modules, in the bundle's NeuroLinkNet: a 64x128x128 inference window and a 32x64x64 training step.
3. ``networks.Conv3d``'s written-out backward (``_OneDNNConvolution``: channels-last, the input gradient as a forward
   convolution) against autograd through oneDNN's convolution, on convolutions of the bundle's network and of
   DSConv3D (forward+backward), and on one training step of ``train.json``'s network (its batch of 2 x 32x64x64
   patches). ``--backward`` runs this part alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import torch
from _timing import paired_seconds
from torch import nn

from neurolink_monai.networks import Conv3d, NeuroLinkNet, conv
from neurolink_monai.networks.neurolink_net import MultiViewBlock

SHAPES = [((1, 8, 32, 64, 64), 8), ((1, 32, 16, 32, 32), 16), ((1, 1, 64, 128, 128), 4)]
# (input, output channels): DSConv3D's K = 3 and K = 9 offset convolutions, train.json's finest level (8 -> 8, and
# 16 -> 20: a MultiViewBlock's standard and offset convolutions stacked)
BACKWARD_SHAPES = [
    ((1, 16, 32, 64, 64), 4),
    ((1, 16, 32, 64, 64), 16),
    ((2, 8, 32, 64, 64), 8),
    ((2, 16, 32, 64, 64), 20),
]
REPO = Path(__file__).resolve().parents[1]


def convolutions(repeats: int) -> None:
    print(f"{'input':<24}{'out':>5}{'fwd ms old/new':>18}{'ratio':>7}{'f+b ms old/new':>18}{'ratio':>7}")
    for shape, out in SHAPES:
        x = torch.randn(shape, requires_grad=True)
        new = Conv3d(shape[1], out, 3, padding=1)
        old = nn.Conv3d(shape[1], out, 3, padding=1)
        old.load_state_dict(new.state_dict())

        def forward(conv: nn.Module):
            def run():
                with torch.no_grad():
                    conv(x)

            return run

        def step(conv: nn.Module):
            return lambda: conv(x).sum().backward()

        f_old, f_new, f_ratio = paired_seconds(forward(old), forward(new), repeats)
        b_old, b_new, b_ratio = paired_seconds(step(old), step(new), repeats)
        print(
            f"{str(shape):<24}{out:>5}{f_old * 1e3:>9.0f}/{f_new * 1e3:<8.0f}{f_ratio:>7.2f}"
            f"{b_old * 1e3:>9.0f}/{b_new * 1e3:<8.0f}{b_ratio:>7.2f}",
            flush=True,
        )


def block(repeats: int) -> None:
    fused = MultiViewBlock._views_one_convolution

    def separate(self: MultiViewBlock, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.standard(x)] + [snake(x) for snake in self.snakes]

    net = NeuroLinkNet(features=[8, 16, 32, 64], kernel_size=3)
    window, patch = torch.rand(1, 1, 64, 128, 128), torch.rand(1, 1, 32, 64, 64)

    def infer(impl):
        def run():
            MultiViewBlock._views_one_convolution = impl
            net.eval()
            with torch.inference_mode():
                net(window)

        return run

    def train(impl):
        def run():
            MultiViewBlock._views_one_convolution = impl
            net.train()
            net(patch).square().mean().backward()

        return run

    try:
        for name, make in (("inference window 64x128x128", infer), ("training step 32x64x64", train)):
            old, new, ratio = paired_seconds(make(separate), make(fused), repeats)
            print(f"{name:<30} separate {old:.2f} s, one convolution {new:.2f} s, ratio {ratio:.2f}", flush=True)
    finally:
        MultiViewBlock._views_one_convolution = fused


@contextlib.contextmanager
def autograd_backward(enabled: bool):
    """Within the block, ``networks.Conv3d`` differentiates oneDNN's convolution by autograd (its behaviour before
    ``_OneDNNConvolution``) when ``enabled``."""
    written_out = conv._OneDNNConvolution.apply
    if enabled:
        conv._OneDNNConvolution.apply = lambda x, w, b, padding: torch.mkldnn_convolution(
            x, w, b, padding, [1, 1, 1], [1, 1, 1], 1
        )
    try:
        yield
    finally:
        conv._OneDNNConvolution.apply = written_out


def backward(repeats: int) -> None:
    def step(module: nn.Module, x: torch.Tensor, old: bool):
        def run():
            with autograd_backward(old):
                module(x).float().sum().backward()

        return run

    print(f"{'forward+backward':<34}{'out':>5}{'ms autograd/written out':>26}{'ratio':>7}")
    for shape, out in BACKWARD_SHAPES:
        x = torch.randn(shape, requires_grad=True)
        layer = Conv3d(shape[1], out, 3, padding=1)
        old, new, ratio = paired_seconds(step(layer, x, True), step(layer, x, False), repeats)
        print(f"{str(shape):<34}{out:>5}{old * 1e3:>14.1f}/{new * 1e3:<11.1f}{ratio:>7.2f}", flush=True)
    config = json.loads((REPO / "bundle" / "configs" / "train.json").read_text())
    spec = {k: v for k, v in config["network_def"].items() if k != "_target_"}
    net = NeuroLinkNet(**spec).train()
    patches = torch.randn(config["batch_size"] * config["num_samples"], 1, *config["patch_size"])
    old, new, ratio = paired_seconds(step(net, patches, True), step(net, patches, False), repeats)
    print(f"{'train.json training step ' + str(tuple(patches.shape)):<39}{old:>14.3f}/{new:<11.3f}{ratio:>7.2f} (s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backward", action="store_true", help="time the written-out convolution backward alone")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads={torch.get_num_threads()}, paired runs, ratio = median of new/old per pair")
    if not args.backward:
        convolutions(args.repeats)
        block(args.repeats)
    backward(args.repeats)


if __name__ == "__main__":
    main()
