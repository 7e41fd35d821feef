# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""NeuroLinkNet next to MONAI's BasicUNet of similar width: parameters and forward+backward time, one run.

python benchmarks/bench_network.py [--threads 2] [--size 64] [--features 16 32 64 128] [--kernel-size 5]
"""

from __future__ import annotations

import argparse

import torch
from _timing import median_seconds
from monai.networks.nets import BasicUNet

from neurolink_monai.networks import NeuroLinkNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--features", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--kernel-size", type=int, default=5)
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
        f"NeuroLinkNet plain {tuple(f)}": NeuroLinkNet(features=f, dsconv=False),
        f"NeuroLinkNet K={args.kernel_size} {tuple(f)}": NeuroLinkNet(features=f, kernel_size=args.kernel_size),
    }
    print(f"device={device} threads={torch.get_num_threads()} input={tuple(x.shape)}")
    print(f"{'network':<44}{'params':>12}{'fwd+bwd s':>12}{'ratio':>8}")
    base = None
    for name, net in nets.items():
        net = net.to(device).train()
        seconds = median_seconds(lambda: net(x).float().sum().backward(), args.repeats)
        base = base or seconds
        params = sum(p.numel() for p in net.parameters())
        print(f"{name:<44}{params:>12,}{seconds:>12.3f}{seconds / base:>8.2f}")


if __name__ == "__main__":
    main()
