# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""DSConv3D cost next to a plain 3x3x3 convolution, measured side by side in one run.

    python benchmarks/bench_dsconv.py [--threads 2] [--device cpu] [--repeats 5] [--kernel-sizes 9 3] [--breakdown]

For input (1, 16, 32, 64, 64), 16 output channels and K = 9 and K = 3 along each axis, prints the median forward and
forward+backward times of ``DSConv3D`` and of ``nn.Conv3d(16, 16, 3, padding=1)`` timed alternately (pairs), the
median of the per-pair ratios (the figure to compare with the goal: K = 9 <= 2x, K = 3 <= 1.5x) and the peak memory
of one forward+backward with its ratio to the convolution's (goal <= 4x).

``--breakdown`` then times the three parts of the layer along D, forward+backward, each paired with the convolution:
the offset branch (offset convolution, its BatchNorm and ``tanh``: the per-point steps), the sampling and fusion of
the ``K`` points given those steps, and the output ``norm`` and ``act``. The first and the last are the same for any
implementation of the layer; the middle is what a faster sampling can remove.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

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
    parser.add_argument("--breakdown", action="store_true", help="also time the layer's parts along D (see above)")
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
    if args.breakdown:
        for k in args.kernel_sizes:
            print_breakdown(DSConv3D(channels, channels, kernel_size=k, axis=0).to(device).train(), x, conv_fb, args)


def layer_parts(layer: DSConv3D, x: torch.Tensor) -> dict[str, Callable[[], None]]:
    """Forward+backward of each part of ``layer`` on ``x``, the later parts starting from leaves of the earlier
    parts' outputs, so each backward stops at its own part."""
    with torch.no_grad():
        steps = layer._point_steps(layer.offset_conv(x), normalised=False)
        fused = layer._fuse_samples(x, steps, layer.extend_scope, True)
    steps.requires_grad_(True)
    fused.requires_grad_(True)

    def offsets() -> None:
        layer._point_steps(layer.offset_conv(x), normalised=False).sum().backward()

    def sampling() -> None:
        layer._fuse_samples(x, steps, layer.extend_scope, True).sum().backward()

    def norm_act() -> None:
        layer.act(layer.norm(fused)).sum().backward()

    return {"offset conv + norm + tanh": offsets, "sampling + fusion": sampling, "norm + act": norm_act}


def print_breakdown(layer: DSConv3D, x: torch.Tensor, conv_fb: Callable[[], None], args: argparse.Namespace) -> None:
    print(f"DSConv3D K={layer.kernel_size} axis=D, forward+backward by part (x the convolution's, paired)")
    for name, part in layer_parts(layer, x).items():
        conv_s, part_s, ratio = paired_seconds(conv_fb, part, args.repeats)
        print(f"  {name:<26}{part_s * 1e3:>10.1f} ms{ratio:>8.2f}x   (conv {conv_s * 1e3:.1f} ms)", flush=True)


if __name__ == "__main__":
    main()
