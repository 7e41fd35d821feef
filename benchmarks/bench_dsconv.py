# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""DSConv3D cost next to a plain 3x3x3 convolution, measured side by side in one run.

    python benchmarks/bench_dsconv.py [--threads 2] [--device cpu] [--repeats 5] [--kernel-sizes 9 3]

For input (1, 16, 32, 64, 64), 16 output channels and K = 9 and K = 3 along each axis, prints the median forward and
forward+backward times of ``DSConv3D`` and of ``nn.Conv3d(16, 16, 3, padding=1)`` timed alternately (pairs), the
median of the per-pair ratios (the figure to compare with the goal: K = 9 <= 2x, K = 3 <= 1.5x) and the peak memory
of one forward+backward with its ratio to the convolution's (goal <= 4x).
"""

from __future__ import annotations

import argparse

import torch
from _timing import paired_seconds, peak_memory_mb

from neurolink_monai.networks import DSConv3D


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shape", type=int, nargs=5, default=(1, 16, 32, 64, 64))
    parser.add_argument("--kernel-sizes", type=int, nargs="+", default=(9, 3))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    channels = args.shape[1]
    x = torch.randn(*args.shape, device=device, requires_grad=True)
    conv = torch.nn.Conv3d(channels, channels, 3, padding=1).to(device).train()

    def passes(layer: torch.nn.Module):
        def forward() -> None:
            with torch.no_grad():
                layer(x)

        def forward_backward() -> None:
            layer(x).sum().backward()

        return forward, forward_backward

    conv_f, conv_fb = passes(conv)
    conv_mem = peak_memory_mb(conv_fb, device)
    print(f"device={device} threads={torch.get_num_threads()} input={tuple(args.shape)} out_channels={channels}")
    print(f"Conv3d(16, 16, 3, padding=1) peak memory of forward+backward: {conv_mem:.0f} MB")
    header = ["layer", "conv fwd ms", "fwd ms", "fwd x", "conv f+b ms", "f+b ms", "f+b x", "peak MB", "mem x"]
    print(f"{header[0]:<24}" + "".join(f"{h:>12}" for h in header[1:]))
    for k in args.kernel_sizes:
        for axis, name in enumerate("DHW"):
            layer = DSConv3D(channels, channels, kernel_size=k, axis=axis).to(device).train()
            f, fb = passes(layer)
            cf, lf, rf = paired_seconds(conv_f, f, args.repeats)
            cfb, lfb, rfb = paired_seconds(conv_fb, fb, args.repeats)
            mem = peak_memory_mb(fb, device)
            cols = [cf * 1e3, lf * 1e3, rf, cfb * 1e3, lfb * 1e3, rfb, mem, mem / conv_mem]
            fmt = ["{:.1f}", "{:.1f}", "{:.2f}", "{:.1f}", "{:.1f}", "{:.2f}", "{:.0f}", "{:.2f}"]
            label = f"DSConv3D K={k} axis={name}"
            print(f"{label:<24}" + "".join(f"{s.format(v):>12}" for s, v in zip(fmt, cols)), flush=True)


if __name__ == "__main__":
    main()
