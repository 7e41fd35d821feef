# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""NeuroLinkNet next to MONAI's BasicUNet of similar width: parameters and forward+backward time, one run.

python benchmarks/bench_network.py [--threads 2] [--size 64] [--features 8 16 32 64] [--kernel-size 3]

The defaults are the bundle's configuration (``bundle/configs/train.json``). Each network is timed alternately
with BasicUNet (pairs), and the ratio is the median of the per-pair ratios (goal for the bundle's configuration:
<= 2.5). NeuroLinkNet's convolutions always take oneDNN on CPU (``neurolink_monai.networks.Conv3d``); the row
"BasicUNet, oneDNN convs" gives BasicUNet the same kernels, for a like-for-like ratio.
"""

from __future__ import annotations

import argparse

import torch
from _timing import paired_seconds, with_onednn_convs
from monai.networks.nets import BasicUNet

from neurolink_monai.networks import NeuroLinkNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--features", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--kernel-size", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    x = torch.randn(1, 1, args.size, args.size, args.size, device=device)
    f = args.features
    basic = (f[0], *(list(f) + [f[-1] * 2] * 4)[:4], f[0])  # BasicUNet: 5 levels + the output width
    nets = {
        f"BasicUNet{basic}": BasicUNet(3, 1, 1, features=basic),
        f"BasicUNet{basic}, oneDNN convs": with_onednn_convs(BasicUNet(3, 1, 1, features=basic)),
        f"NeuroLinkNet plain {tuple(f)}": NeuroLinkNet(features=f, dsconv=False),
        f"NeuroLinkNet K={args.kernel_size} {tuple(f)}": NeuroLinkNet(features=f, kernel_size=args.kernel_size),
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
