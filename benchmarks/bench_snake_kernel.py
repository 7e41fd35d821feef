# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""How fast could DSConv3D's sampling and fusion be? A compiled probe next to the layer's own (issue 14).

    python benchmarks/bench_snake_kernel.py [--threads 2] [--repeats 7] [--kernel-sizes 9 3]

Issue 14 asks DSConv3D forward+backward to cost at most 2x (K = 9) and 1.5x (K = 3) a ``Conv3d(16, 16, 3)``.
``bench_dsconv.py --breakdown`` shows the parts any implementation keeps (the offset branch, the output norm and
activation) already cost about 1.4x and 1.2x, which leaves the sampling and fusion of the K kernel points about
0.6x and 0.3x of the convolution, forward and backward together. This script measures what a compiled kernel does in
the forward pass alone: a C++ loop (built on first use with ``torch.utils.cpp_extension``, which needs a C++
compiler and ``ninja``, ``pip install ninja``; nothing in the package uses it) that gathers the four bilinear taps of every kernel point from a
channels-last copy of the input, one plane of the volume at a time, and fuses the ``K`` samples with one matrix
product per plane. It prints, on input (1, 16, 32, 64, 64) along D, each timed alternately with the convolution's
forward: the probe, the layer's own sampling and fusion (``DSConv3D._fuse_samples``), and the fusion's matrix
product alone over the whole volume at once (``(D H W, K C) @ (K C, O)`` by the library's GEMM; its backward takes
two more of the same size), with the largest difference between the probe's output and the layer's.
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import paired_seconds

from neurolink_monai.networks import DSConv3D

SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstring>

// xc (B, A, P0, P1, C) channels-last; off (B, 2, K - 1, A, P0, P1) in voxels; s: (P0 P1, K C) samples of plane a.
static void sample_plane(const float* xc, const float* off, float* s, int64_t A, int64_t P0, int64_t P1, int64_t C,
                         int64_t K, int64_t b, int64_t a) {
  const int64_t c0 = K / 2, N = K - 1, HW = P0 * P1, KC = K * C;
  for (int64_t k = 0; k < K; ++k) {
    const int64_t src = a + k - c0;
    if (k == c0 || src < 0 || src >= A) {
      const float* xp = xc + (b * A + a) * HW * C;
      for (int64_t v = 0; v < HW; ++v) {
        if (k == c0) std::memcpy(s + v * KC + k * C, xp + v * C, C * sizeof(float));
        else std::memset(s + v * KC + k * C, 0, C * sizeof(float));
      }
      continue;
    }
    const int64_t n = k < c0 ? k : k - 1;
    const float* o0 = off + (((b * 2 + 0) * N + n) * A + a) * HW;
    const float* o1 = off + (((b * 2 + 1) * N + n) * A + a) * HW;
    const float* xp = xc + (b * A + src) * HW * C;
    for (int64_t i = 0; i < P0; ++i) {
      for (int64_t j = 0; j < P1; ++j) {
        const int64_t v = i * P1 + j;
        const float y = i + o0[v], x = j + o1[v];
        const float yf = std::floor(y), xf = std::floor(x);
        const int64_t y0 = (int64_t)yf, x0 = (int64_t)xf;
        const float wy = y - yf, wx = x - xf;
        const float w[4] = {(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx};
        const int64_t ys[4] = {y0, y0, y0 + 1, y0 + 1}, xs[4] = {x0, x0 + 1, x0, x0 + 1};
        float* sv = s + v * KC + k * C;
        for (int64_t c = 0; c < C; ++c) sv[c] = 0.f;
        for (int t = 0; t < 4; ++t) {
          if (ys[t] < 0 || ys[t] >= P0 || xs[t] < 0 || xs[t] >= P1) continue;
          const float* p = xp + (ys[t] * P1 + xs[t]) * C;
          const float wt = w[t];
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) sv[c] += wt * p[c];
        }
      }
    }
  }
}

// x (B, C, A, P0, P1); off (B, 2, K - 1, A, P0, P1); wt (K C, O), kernel point major; bias (O) -> (B, A, P0, P1, O)
torch::Tensor snake_forward(torch::Tensor x, torch::Tensor off, torch::Tensor wt, torch::Tensor bias, int64_t K) {
  const int64_t B = x.size(0), C = x.size(1), A = x.size(2), P0 = x.size(3), P1 = x.size(4), O = wt.size(1);
  auto xc = x.permute({0, 2, 3, 4, 1}).contiguous();
  auto offc = off.contiguous();
  auto out = torch::empty({B, A, P0, P1, O}, x.options());
  const int64_t HW = P0 * P1;
  at::parallel_for(0, B * A, 1, [&](int64_t begin, int64_t end) {
    auto s = torch::empty({HW, K * C}, x.options());
    for (int64_t ba = begin; ba < end; ++ba) {
      const int64_t b = ba / A, a = ba % A;
      sample_plane(xc.data_ptr<float>(), offc.data_ptr<float>(), s.data_ptr<float>(), A, P0, P1, C, K, b, a);
      auto o = out.select(0, b).select(0, a).view({HW, O});
      at::addmm_out(o, bias, s, wt);
    }
  });
  return out;
}
"""


def build() -> object:
    from torch.utils.cpp_extension import load_inline

    start = time.perf_counter()
    module = load_inline(
        "neurolink_snake_probe",
        cpp_sources=SOURCE,
        functions=["snake_forward"],
        extra_cflags=["-O3", "-march=native", "-fopenmp"],
        extra_ldflags=["-fopenmp"],
    )
    print(f"probe built in {time.perf_counter() - start:.1f} s (cached after the first build)")
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--kernel-sizes", type=int, nargs="+", default=(9, 3))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    probe = build()
    x = torch.randn(1, 16, 32, 64, 64)
    conv = torch.nn.Conv3d(16, 16, 3, padding=1)

    def conv_forward() -> None:
        with torch.no_grad():
            conv(x)

    print(f"threads={torch.get_num_threads()} input={tuple(x.shape)}, forward only, x the convolution's forward")
    for k in args.kernel_sizes:
        layer = DSConv3D(16, 16, kernel_size=k, axis=0).eval()
        with torch.no_grad():
            steps = layer._point_steps(layer.offset_conv(x), normalised=False)
            offsets = (layer._accumulated(steps) * layer.extend_scope).contiguous()
            weight = layer.fusion.weight[:, :, :, 0, 0].permute(2, 1, 0).reshape(k * 16, 16).contiguous()
            bias = layer.fusion.bias.detach()
            samples = torch.randn(x[0, 0].numel(), k * 16)
            reference = layer._fuse_samples(x, steps, layer.extend_scope, True)
            probed = probe.snake_forward(x, offsets, weight, bias, k).permute(0, 4, 1, 2, 3)
        parts = {
            "compiled probe": lambda: probe.snake_forward(x, offsets, weight, bias, k),
            "DSConv3D._fuse_samples": lambda: layer._fuse_samples(x, steps, layer.extend_scope, True),
            "fusion matmul alone": lambda: torch.addmm(bias, samples, weight),
        }
        print(f"K={k}: probe against the layer, largest difference {(probed - reference).abs().max().item():.1e}")
        for name, part in parts.items():
            with torch.no_grad():
                conv_s, part_s, ratio = paired_seconds(conv_forward, part, args.repeats)
            print(f"  {name:<24}{part_s * 1e3:>8.1f} ms{ratio:>7.2f}x   (conv {conv_s * 1e3:.1f} ms)", flush=True)


if __name__ == "__main__":
    main()
