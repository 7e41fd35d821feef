# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""DSConv3D cost next to a plain 3x3x3 convolution, measured side by side in one run.

    python benchmarks/bench_dsconv.py [--threads 2] [--device cpu] [--repeats 5]

Prints median forward and forward+backward times and peak memory for input (1, 16, 32, 64, 64), 16 output channels,
K = 9 and K = 3 along each axis, and the ratio to ``nn.Conv3d(16, 16, 3, padding=1)``.
"""

from __future__ import annotations

import argparse

import torch
from _timing import median_seconds, peak_memory_mb

from neurolink_monai.networks import DSConv3D


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", type=int, nargs=5, default=(1, 16, 32, 64, 64))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    channels = args.shape[1]
    x = torch.randn(*args.shape, device=device, requires_grad=True)

    def timings(layer: torch.nn.Module) -> tuple[float, float, float]:
        layer = layer.to(device).train()

        def forward() -> None:
            with torch.no_grad():
                layer(x)

        def forward_backward() -> None:
            layer(x).sum().backward()

        return (
            median_seconds(forward, args.repeats),
            median_seconds(forward_backward, args.repeats),
            peak_memory_mb(forward_backward, device),
        )

    print(f"device={device} threads={torch.get_num_threads()} input={tuple(args.shape)} out_channels={channels}")
    print(f"{'layer':<24}{'fwd ms':>10}{'fwd+bwd ms':>12}{'peak MB':>10}{'fwd x':>8}{'fwd+bwd x':>11}")
    base_f, base_fb, base_mem = timings(torch.nn.Conv3d(channels, channels, 3, padding=1))
    print(f"{'Conv3d 3x3x3':<24}{base_f * 1e3:>10.1f}{base_fb * 1e3:>12.1f}{base_mem:>10.0f}{1.0:>8.2f}{1.0:>11.2f}")
    for k in (9, 3):
        for axis, name in enumerate("DHW"):
            f, fb, mem = timings(DSConv3D(channels, channels, kernel_size=k, axis=axis))
            label = f"DSConv3D K={k} axis={name}"
            print(f"{label:<24}{f * 1e3:>10.1f}{fb * 1e3:>12.1f}{mem:>10.0f}{f / base_f:>8.2f}{fb / base_fb:>11.2f}")


if __name__ == "__main__":
    main()
