# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""Dynamic Snake Convolution in 3D (Qi et al., ICCV 2023), the tubular-structure convolution of NeuroLink.

References:
    Qi Y. et al., "Dynamic Snake Convolution based on Topological Geometric Constraints for Tubular Structure
    Segmentation", ICCV 2023.
    Yan H. et al., "Bridging Weak Signals in Neuronal Imaging with Morphology Learning", MICCAI 2024.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Act, Norm
from monai.networks.layers.utils import get_act_layer
from torch import nn
from torch.autograd.function import once_differentiable

from ..utils import as_positive_int
from .conv import Conv3d, channel_product
from .norm import fold_norm, make_norm

__all__ = ["DSConv3D", "check_snake_args", "snake_accumulation_matrix"]


def check_snake_args(kernel_size: int, extend_scope: float, **channels: int) -> None:
    """Raise ``ValueError`` naming the argument unless ``kernel_size`` is an odd int >= 3, ``extend_scope`` a finite
    number and every keyword in ``channels`` a positive int."""
    for name, value in channels.items():
        as_positive_int(value, name)
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd int >= 3, got {kernel_size!r}.")
    if isinstance(extend_scope, bool) or not isinstance(extend_scope, (int, float)) or not math.isfinite(extend_scope):
        raise ValueError(f"extend_scope must be a finite number, got {extend_scope!r}.")


def snake_accumulation_matrix(kernel_size: int) -> torch.Tensor:
    """Matrix ``M`` (K, K - 1) that turns per-point offsets ``o`` into snake offsets ``M @ o``.

    ``o`` holds one offset per non-centre kernel point, in kernel order with the centre ``c = K // 2`` left out
    (the paper's centre offset never moves anything, so it is not predicted). Row ``c`` of ``M`` is zero: the centre
    stays on the voxel. For ``k > c`` row ``k`` sums the offsets of points ``c + 1 .. k``; for ``k < c`` it sums those
    of points ``k .. c - 1``. Each kernel point therefore sits at the accumulated offset of the points between it and
    the centre, so the kernel bends continuously like a snake.
    """
    c = kernel_size // 2
    full = torch.zeros(kernel_size, kernel_size)
    for k in range(kernel_size):
        if k > c:
            full[k, c + 1 : k + 1] = 1.0
        elif k < c:
            full[k, k:c] = 1.0
    return torch.cat([full[:, :c], full[:, c + 1 :]], dim=1)


class DSConv3D(nn.Module):
    """Dynamic snake convolution along one spatial axis of a ``(B, C, D, H, W)`` volume.

    A 3x3x3 convolution predicts the offsets (``K = kernel_size``) for the two axes perpendicular to ``axis``:
    ``2 (K - 1)`` channels, one per non-centre kernel point and axis (the centre offset of the paper's ``2K`` is never
    used, so it is not computed). They are normalised and squashed by ``tanh``, accumulated outwards from the kernel
    centre (:func:`snake_accumulation_matrix`) and scaled by ``extend_scope``. Kernel point ``k`` of the output
    voxel ``p`` samples the input at ``p + (k - K // 2)`` along ``axis`` (an exact integer step) and at
    ``p + offset_k`` across it, by bilinear interpolation in the perpendicular plane. A convolution of size ``K`` and
    stride ``K`` along
    ``axis`` (held in ``self.fusion``) fuses the ``K`` samples, followed by ``norm`` and ``act``.

    Gradients reach the offset branch through the interpolation weights.

    Border rule: the volume is zero-extended. A kernel point outside the volume along ``axis`` reads 0, and a
    sample across the border in the perpendicular plane is interpolated against zeros, exactly as the zero padding
    of a standard convolution. With all offsets zero the layer is a 1D convolution of size ``K`` along ``axis`` with
    zero padding ``K // 2``.

    Implementation (:meth:`_fuse_samples`): the centre kernel point never moves, so its term is a pointwise
    product. The other ``K - 1`` points are looped over; each is one 2D :func:`torch.nn.functional.grid_sample` over
    the planes of the input shifted by an integer step along ``axis`` (a slice of the input seen axis-first: a view
    of the input or of one copy of it, never ``K`` copies) and is fused into the output by a matrix
    product right away, so only one kernel point's samples are alive at a time. When a gradient is needed, that
    sampling and fusion is one autograd function with its backward written out (:meth:`_snake_fusion_backward`):
    it samples each kernel point again instead of keeping all ``K - 1`` points' samples, and writes each gradient
    into one buffer (same values; a training step of the bundle's network 1.11 -> 0.93 s, peak memory 653 -> 497 MB:
    ``python benchmarks/bench_network.py --backward-ab``). In eval mode the offset BatchNorm is folded into the
    offset convolution (:meth:`offset_parameters`). Index arithmetic stays inside ``grid_sample`` (int64), so
    volumes beyond 2^24 voxels are handled correctly. Plain PyTorch operators throughout: TorchScript and autocast
    run them through autograd unchanged.

    Args:
        in_channels: number of input channels ``C``.
        out_channels: number of output channels.
        kernel_size: number of kernel points ``K`` along ``axis``; odd and >= 3.
        axis: spatial axis the kernel follows: 0 for D, 1 for H, 2 for W.
        extend_scope: scale of the accumulated offsets, in voxels per unit ``tanh`` output.
        offset_norm: normalisation of the offset branch before ``tanh`` (MONAI norm name or ``(name, args)``).
        norm: normalisation after the fusion convolution, or ``None``.
        act: activation after the normalisation, or ``None``.
        bias: whether the fusion convolution has a bias.

    Shapes:
        input ``(B, C, D, H, W)`` -> output ``(B, out_channels, D, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 9,
        axis: int = 0,
        extend_scope: float = 1.0,
        offset_norm: tuple | str | None = Norm.BATCH,
        norm: tuple | str | None = Norm.INSTANCE,
        act: tuple | str | None = Act.RELU,
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_snake_args(
            in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, extend_scope=extend_scope
        )
        if isinstance(axis, bool) or axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0 (D), 1 (H) or 2 (W), got {axis!r}.")

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.axis = axis
        self.extend_scope = float(extend_scope)
        # Permutation bringing `axis` right after the channel dim; the perpendicular axes keep their order.
        perp = [a for a in (0, 1, 2) if a != axis]
        self.to_axis_first = [0, 1, 2 + axis, 2 + perp[0], 2 + perp[1]]
        self.from_axis_first = [self.to_axis_first.index(i) for i in range(5)]

        self.offset_conv = Conv3d(in_channels, 2 * (kernel_size - 1), kernel_size=3, padding=1)
        self.offset_norm = make_norm(offset_norm, 2 * (kernel_size - 1)) if offset_norm is not None else nn.Identity()
        # Stored as the conv of size K and stride K along the kernel axis described by the paper;
        # applied as one matrix product over the (C, K) samples of each voxel.
        self.fusion = nn.Conv3d(
            in_channels, out_channels, kernel_size=(kernel_size, 1, 1), stride=(kernel_size, 1, 1), bias=bias
        )
        self.norm = make_norm(norm, out_channels) if norm is not None else nn.Identity()
        self.act = get_act_layer(act) if act is not None else nn.Identity()
        if type(self.act) in (nn.ReLU, nn.LeakyReLU):
            # its input is the fresh output of the norm or the fusion, which no backward needs: one volume less
            # alive at the layer's memory peak
            self.act.inplace = True
        self.register_buffer("accumulate", snake_accumulation_matrix(kernel_size), persistent=False)

    def snake_offsets(self, x: torch.Tensor) -> torch.Tensor:
        """Accumulated snake offsets ``(B, 2, K, D, H, W)`` in voxels; index 1 selects the perpendicular axis."""
        return self.offsets_from_logits(self.offset_conv(x))

    def offsets_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """:meth:`snake_offsets` from the offset convolution's output ``(B, 2 (K - 1), D, H, W)``, for a caller that
        computed that convolution itself (:class:`~neurolink_monai.networks.MultiViewBlock` runs it together with
        its other convolutions of the same input)."""
        points = self._accumulated(self._point_steps(logits, normalised=False)) * self.extend_scope
        c = self.kernel_size // 2
        return torch.cat((points[:, :, :c], torch.zeros_like(points[:, :, :1]), points[:, :, c:]), dim=2)

    def _point_steps(self, logits: torch.Tensor, normalised: bool) -> torch.Tensor:
        """Each non-centre kernel point's own offset (the ``tanh`` of the normalised logits), ``(B, 2, K - 1, D, H,
        W)``, before :meth:`_accumulated` sums them outwards from the centre."""
        raw = torch.tanh(logits if normalised else self.offset_norm(logits))
        return raw.reshape(logits.shape[0], 2, self.kernel_size - 1, logits.shape[2], logits.shape[3], logits.shape[4])

    def _accumulated(self, steps: torch.Tensor) -> torch.Tensor:
        """The snake offsets of :meth:`_point_steps`' per-point ``steps`` (:func:`snake_accumulation_matrix`
        without its centre row); for ``K = 3`` each point's offset is its own step."""
        if self.kernel_size == 3:
            return steps
        c = self.kernel_size // 2
        rows = torch.cat((self.accumulate[:c], self.accumulate[c + 1 :]), dim=0).to(steps.dtype)
        return torch.einsum("kj,bpjdhw->bpkdhw", rows, steps)

    def offset_parameters(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """The offset convolution's ``(weight, bias)`` and whether ``offset_norm`` is folded into them.

        In eval mode a BatchNorm with running statistics is an affine map per channel, folded exactly into the
        convolution (``w * s``, ``(b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``), so the offsets
        cost one pass less over the volume; without a norm there is nothing to fold. Otherwise (training, batch
        statistics, other norms) the plain parameters come back with ``False``.
        """
        conv = self.offset_conv
        bias = conv.bias if conv.bias is not None else torch.zeros_like(conv.weight[:, 0, 0, 0, 0])
        if isinstance(self.offset_norm, nn.Identity):
            return conv.weight, bias, True
        folded = fold_norm(conv.weight, bias, self.offset_norm)
        if folded is None:
            return conv.weight, bias, False
        return folded[0], folded[1], True

    def _grids(self, cum: torch.Tensor, scale: float) -> torch.Tensor:
        """``grid_sample`` grids ``(N, B, A, P0, P1, 2)`` (``align_corners=False``) of ``N`` kernel points whose
        accumulated offsets ``cum`` are ``(B, 2, N, D, H, W)`` in units of ``scale`` voxels.

        Kernel point ``k`` of the output voxel ``(a, i0, i1)`` (axis-first layout) samples its plane at
        ``(i0 + o0, i1 + o1)``; the grid holds it normalised as ``(2 (i + o) + 1) / P - 1`` in ``(P1, P0)`` order,
        computed as ``(2 i + 1) / P - 1 + o (2 / P)`` in one pass per coordinate (two ``out=`` writes when no
        gradient is needed, one stack otherwise).
        """
        spatial = [self.to_axis_first[i] + 1 for i in (2, 3, 4)]
        oa = cum.permute([2, 0] + spatial + [1])  # (N, B, A, P0, P1, 2) in (P0, P1) order: a view
        p0, p1 = oa.shape[3], oa.shape[4]
        base0 = ((2.0 * torch.arange(p0, device=cum.device, dtype=cum.dtype) + 1.0) / p0 - 1.0).reshape(p0, 1)
        base1 = (2.0 * torch.arange(p1, device=cum.device, dtype=cum.dtype) + 1.0) / p1 - 1.0
        s0, s1 = 2.0 * scale / p0, 2.0 * scale / p1
        if torch.is_grad_enabled() and cum.requires_grad:
            return torch.stack((torch.add(base1, oa[..., 1], alpha=s1), torch.add(base0, oa[..., 0], alpha=s0)), -1)
        grid = torch.empty(oa.shape, device=cum.device, dtype=cum.dtype)
        torch.add(base1, oa[..., 1], alpha=s1, out=grid[..., 0])
        torch.add(base0, oa[..., 0], alpha=s0, out=grid[..., 1])
        return grid

    def sample(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Snake samples of ``x`` in the axis-first layout (materialises all ``K`` samples: for inspection and
        tests; :meth:`forward` fuses each kernel point as soon as it is sampled).

        Args:
            x: input ``(B, C, D, H, W)``.
            offsets: accumulated offsets ``(B, 2, K, D, H, W)``.

        Returns:
            samples ``(B, A, K, C, P0, P1)``: ``A`` the kernel axis, ``P0``/``P1`` the perpendicular axes.
        """
        c = self.kernel_size // 2
        xa = F.pad(x.permute(self.to_axis_first), [0, 0, 0, 0, c, c])  # (B, C, A + 2c, P0, P1)
        b, ch, _, p0, p1 = xa.shape
        a = xa.shape[2] - 2 * c
        grids = self._grids(offsets, 1.0)
        samples = []
        for k in range(self.kernel_size):
            plane_k = xa[:, :, k : k + a].transpose(1, 2).reshape(b * a, ch, p0, p1)
            grid = grids[k].reshape(b * a, p0, p1, 2).to(plane_k.dtype)
            samples.append(F.grid_sample(plane_k, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
        return torch.stack(samples, dim=1).reshape(b, a, self.kernel_size, ch, p0, p1)

    def snake_conv(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """The snake convolution before ``norm``/``act``: ``(B, C, D, H, W)`` -> ``(B, out_channels, D, H, W)``,
        for accumulated ``offsets`` ``(B, 2, K, D, H, W)`` (:meth:`snake_offsets`); see :meth:`_fuse_samples`."""
        c = self.kernel_size // 2
        points = torch.cat((offsets[:, :, :c], offsets[:, :, c + 1 :]), dim=2)  # the centre never moves
        return self._fuse_samples(x, points, 1.0, False)

    def _offset_grids(self, offsets: torch.Tensor, scale: float, steps: bool) -> torch.Tensor:
        """The :meth:`_grids` of the non-centre kernel points' ``offsets`` ``(B, 2, K - 1, D, H, W)`` in units of
        ``scale`` voxels: accumulated offsets, or, when ``steps``, the per-point steps of :meth:`_point_steps`, which
        are accumulated first."""
        return self._grids(self._accumulated(offsets) if steps else offsets, scale)

    def _kernel_points(self, a: int) -> list[tuple[int, int, int, int]]:
        """``(k, point, lo, hi)`` of each non-centre kernel point ``k`` (``point``: its index among them, in
        :meth:`_grids`) along a kernel axis of ``a`` planes: output planes ``lo:hi`` read a plane of the volume
        (plane ``a + k - K // 2``); the others read the zero padding. Points that reach no plane are left out."""
        c = self.kernel_size // 2
        out: list[tuple[int, int, int, int]] = []
        point = 0
        for k in range(self.kernel_size):
            if k == c:
                continue
            lo, hi = max(0, c - k), a - max(0, k - c)
            if hi > lo:
                out.append((k, point, lo, hi))
            point += 1
        return out

    def _fuse_samples(
        self,
        x: torch.Tensor,
        offsets: torch.Tensor,
        scale: float,
        steps: bool,
        fusion: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """The snake convolution of ``x`` ``(B, C, D, H, W)`` before ``norm``/``act``, given the ``offsets``
        ``(B, 2, K - 1, D, H, W)`` of the non-centre kernel points in units of ``scale`` voxels, accumulated or, when
        ``steps``, per point (:meth:`_offset_grids` turns them into sampling grids).

        Kernel point ``k``'s planes are a slice along the kernel axis ``A`` of the input seen axis-first,
        ``(B, C, A, P0, P1)``: output plane ``a`` reads plane ``a + k - K // 2``, and output planes whose input
        plane lies outside the volume get nothing (zero padding), so no padded copy is made. Along D these planes
        are views of ``x``, and along H too when at most 8 channels are sampled (rows along W stay contiguous);
        along W (strided in both plane axes) and along H with more channels (sampling slower than a copy,
        ``benchmarks/bench_dsconv.py``) the input is copied to the axis-first layout once and the output back
        once. The centre kernel point has no offset: its term is one matrix product with the input (with the
        bias), which starts the ``(B, out_channels, ...)`` accumulator in the input's layout. Each other point is
        sampled by one 2D ``grid_sample`` over its planes and added right away (through the accumulator's
        axis-first view), so at most one kernel point's samples are alive at a time. When ``out_channels < C`` the
        points' slices of the fusion weight are applied before sampling (sampling is linear and the same for every
        channel), so fewer channels are interpolated: all ``K`` of them, the centre's included, as one matrix
        product ``(K O, C) @ (C, D H W)``, one pass over the input instead of ``K``; otherwise the samples are fused
        by a matrix product per plane. A one-channel input takes :meth:`_fuse_one_channel`. When a gradient is
        needed (outside autocast), the multi-channel fusion runs as :class:`_SnakeFusion`, whose backward is
        :meth:`_snake_fusion_backward`, and which keeps the ``offsets`` for the backward instead of the grids (the
        per-point steps are the ``tanh`` output that autograd keeps anyway). ``fusion``: the ``(weight, bias)`` to
        fuse with instead of ``self.fusion``'s (with ``norm`` folded in, :meth:`forward_with_offset_logits`).
        """
        weight, bias = (self.fusion.weight, self.fusion.bias) if fusion is None else fusion
        if x.shape[1] == 1:
            return self._fuse_one_channel(x, self._offset_grids(offsets, scale, steps), weight, bias)
        if not torch.jit.is_scripting():  # a branch TorchScript does not compile
            if not torch.jit.is_tracing() and self._takes_snake_function(x, offsets):
                return _SnakeFusion.apply(self, x, offsets, weight, bias, scale, steps)
        return self._snake_fusion(x, self._offset_grids(offsets, scale, steps), weight, bias)

    @torch.jit.unused
    def _takes_snake_function(self, x: torch.Tensor, offsets: torch.Tensor) -> bool:
        """Whether :meth:`_fuse_samples` runs as :class:`_SnakeFusion` (its own backward): when a gradient is needed,
        outside autocast (whose per-operator casts the plain operators keep)."""
        params = (self.fusion.weight, self.fusion.bias)
        needs_grad = x.requires_grad or offsets.requires_grad or any(p is not None and p.requires_grad for p in params)
        return torch.is_grad_enabled() and needs_grad and not torch.is_autocast_enabled(x.device.type)

    def _snake_fusion(
        self, x: torch.Tensor, grids: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """:meth:`_fuse_samples` of a multi-channel ``x`` with the fusion ``weight`` ``(O, C, K, 1, 1)`` and
        ``bias`` given, by plain operators (autograd differentiates them when :class:`_SnakeFusion` does not run)."""
        k_n = self.kernel_size
        c = k_n // 2
        o = self.out_channels
        weight = weight.to(x.dtype)[:, :, :, 0, 0]  # (O, C, K)
        copy = self._copies_axis_first(x.shape[1])
        xs = x.permute(self.to_axis_first).contiguous() if copy else x  # the layout of the products
        b, ch = xs.shape[0], xs.shape[1]
        flat = xs.reshape(b, ch, -1)
        fuse_first = o < ch
        if fuse_first:  # every kernel point's slice of the weight applied to the input: one product, one pass
            products = channel_product(weight.permute(2, 0, 1).reshape(k_n * o, ch), flat)
            products = products.reshape((b, k_n, o) + xs.shape[2:])  # (B, K, O, ...) in the layout of xs
            acc = products[:, c].clone() if bias is None else products[:, c] + bias.to(x.dtype).reshape(1, o, 1, 1, 1)
        else:
            acc = channel_product(weight[:, :, c], flat, None if bias is None else bias.to(x.dtype))
            acc = acc.reshape((b, o) + xs.shape[2:])
            products = acc.unsqueeze(1)  # not read: TorchScript wants the name bound on both branches
        xa = xs if copy else xs.permute(self.to_axis_first)  # (B, C, A, P0, P1)
        acc_planes = acc if copy else acc.permute(self.to_axis_first)  # (B, O, A, P0, P1)
        a, p0, p1 = xa.shape[2], xa.shape[3], xa.shape[4]
        for i in range(b):
            for k, point, lo, hi in self._kernel_points(a):
                shift = k - c
                grid = grids[point, i, lo:hi]
                target = acc_planes[i, :, lo:hi]  # (O, A', P0, P1)
                if fuse_first:
                    fused = products[i, k] if copy else products[i, k][None].permute(self.to_axis_first)[0]
                    fused = fused[:, lo + shift : hi + shift]  # (O, A', P0, P1)
                    sampled = F.grid_sample(
                        fused.transpose(0, 1), grid.to(fused.dtype), "bilinear", "zeros", align_corners=False
                    )
                    target.add_(sampled.transpose(0, 1))
                else:
                    src = xa[i, :, lo + shift : hi + shift]  # (C, A', P0, P1)
                    sampled = F.grid_sample(
                        src.transpose(0, 1), grid.to(src.dtype), "bilinear", "zeros", align_corners=False
                    )
                    fused = channel_product(weight[:, :, k], sampled.reshape(hi - lo, ch, p0 * p1))  # (A', O, P)
                    target.add_(fused.reshape(hi - lo, o, p0, p1).transpose(0, 1))
        return acc.permute(self.from_axis_first).contiguous() if copy else acc

    def _copies_axis_first(self, channels: int) -> bool:
        """Whether the fusion copies a ``channels``-channel input to the axis-first layout. Planes across W are
        strided in both plane axes, and planes across H whose sampled channels (the fewer of C and O) are many
        have their W-rows spread over the whole volume: those are copied."""
        return self.axis == 2 or (self.axis == 1 and min(channels, self.out_channels) > 8)

    @torch.jit.unused
    def _snake_fusion_backward(
        self, grad: torch.Tensor, x: torch.Tensor, grids: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gradients of :meth:`_snake_fusion` for the output gradient ``grad`` ``(B, O, D, H, W)``: those of ``x``,
        ``grids``, ``weight`` ``(O, C, K, 1, 1)`` and the bias.

        The same walk over kernel points and planes as the forward pass, with each point's samples (or, when the
        input was fused first, its products) computed again instead of kept from the forward pass, and every
        gradient written into one buffer per tensor: autograd through the forward pass instead keeps all ``K - 1``
        points' samples and, for each point, fills a zero tensor of the whole input and of all grids to receive
        one slice's gradient.
        """
        k_n, c, o = self.kernel_size, self.kernel_size // 2, self.out_channels
        # products of strided views by channel_product and bmm, which read them in place: torch.matmul would copy the
        # transposed operand of every kernel point and plane
        w = weight[:, :, :, 0, 0]  # (O, C, K)
        copy = self._copies_axis_first(x.shape[1])
        xs = x.permute(self.to_axis_first).contiguous() if copy else x
        gs = grad.permute(self.to_axis_first).contiguous() if copy else grad.contiguous()
        b, ch = xs.shape[0], xs.shape[1]
        flat, gflat = xs.reshape(b, ch, -1), gs.reshape(b, o, -1)
        grad_bias = gflat.sum(dim=(0, 2))
        grad_grids = torch.zeros_like(grids)
        xa = xs if copy else xs.permute(self.to_axis_first)  # (B, C, A, P0, P1)
        ga = gs if copy else gs.permute(self.to_axis_first)  # (B, O, A, P0, P1)
        a, p0, p1 = xa.shape[2], xa.shape[3], xa.shape[4]
        if o < ch:  # fused first: gradients of the per-point products (B, K, O, ...), then one product back
            products = channel_product(w.permute(2, 0, 1).reshape(k_n * o, ch), flat).reshape(
                (b, k_n, o) + xs.shape[2:]
            )
            grad_products = torch.zeros_like(products)
            grad_products[:, c] = gs
            for i in range(b):
                for k, point, lo, hi in self._kernel_points(a):
                    shift = k - c
                    fused = products[i, k] if copy else products[i, k][None].permute(self.to_axis_first)[0]
                    target = grad_products[i, k] if copy else grad_products[i, k][None].permute(self.to_axis_first)[0]
                    gi, gg = torch.ops.aten.grid_sampler_2d_backward(
                        ga[i, :, lo:hi].transpose(0, 1), fused[:, lo + shift : hi + shift].transpose(0, 1),
                        grids[point, i, lo:hi], 0, 0, False, [True, True],
                    )  # fmt: skip
                    target[:, lo + shift : hi + shift] = gi.transpose(0, 1)
                    grad_grids[point, i, lo:hi] = gg
            gp = grad_products.reshape(b, k_n * o, -1)
            grad_flat = channel_product(w.permute(2, 0, 1).reshape(k_n * o, ch).t(), gp)
            grad_w = torch.bmm(gp, flat.transpose(1, 2)).sum(0).reshape(k_n, o, ch).permute(1, 2, 0)
        else:  # sampled first: each point's samples again, their gradient through the fusion, then the sampling
            grad_flat = channel_product(w[:, :, c].t(), gflat)  # the centre point
            grad_w = torch.empty_like(w)
            grad_w[:, :, c] = torch.bmm(gflat, flat.transpose(1, 2)).sum(0)
            gxa = grad_flat.reshape(xs.shape) if copy else grad_flat.reshape(xs.shape).permute(self.to_axis_first)
            grad_w_points = torch.zeros_like(w)
            for i in range(b):
                for k, point, lo, hi in self._kernel_points(a):
                    shift = k - c
                    src = xa[i, :, lo + shift : hi + shift].transpose(0, 1)  # (A', C, P0, P1)
                    grid = grids[point, i, lo:hi]
                    sampled = F.grid_sample(src, grid, "bilinear", "zeros", align_corners=False).reshape(
                        hi - lo, ch, -1
                    )
                    g_out = ga[i, :, lo:hi].transpose(0, 1).reshape(hi - lo, o, p0 * p1)  # (A', O, P)
                    grad_w_points[:, :, k] += torch.bmm(g_out, sampled.transpose(1, 2)).sum(0)
                    grad_sampled = channel_product(w[:, :, k].t(), g_out).reshape(hi - lo, ch, p0, p1)
                    gi, gg = torch.ops.aten.grid_sampler_2d_backward(grad_sampled, src, grid, 0, 0, False, [True, True])
                    gxa[i, :, lo + shift : hi + shift] += gi.transpose(0, 1)
                    grad_grids[point, i, lo:hi] = gg
            moving = [k for k in range(k_n) if k != c]
            grad_w[:, :, moving] = grad_w_points[:, :, moving]
        grad_x = grad_flat.reshape(xs.shape)
        grad_x = grad_x.permute(self.from_axis_first).contiguous() if copy else grad_x
        return grad_x, grad_grids, grad_w.reshape(weight.shape), grad_bias

    def _fuse_one_channel(
        self, x: torch.Tensor, grids: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
    ) -> torch.Tensor:
        """:meth:`_fuse_samples` of a one-channel input ``(B, 1, D, H, W)`` (the image, in the first block), with the
        fusion ``weight`` ``(O, 1, K, 1, 1)`` and ``bias``: the
        ``K`` samples of every voxel are gathered as ``K`` channels in the axis-first layout (the centre's is the
        input; planes outside the volume stay 0), brought back to the input's layout and fused by one
        ``(O, K)`` matrix product, so the ``out_channels`` output is written once."""
        k_n = self.kernel_size
        c = k_n // 2
        b = x.shape[0]
        xa = x.permute(self.to_axis_first)  # (B, 1, A, P0, P1)
        a, p0, p1 = xa.shape[2], xa.shape[3], xa.shape[4]
        samples = torch.zeros((b, k_n, a, p0, p1), dtype=x.dtype, device=x.device)
        samples[:, c] = xa[:, 0]
        for i in range(b):
            for k, point, lo, hi in self._kernel_points(a):
                shift = k - c
                grid = grids[point, i, lo:hi]
                src = xa[i, :, lo + shift : hi + shift].transpose(0, 1)  # (A', 1, P0, P1)
                sampled = F.grid_sample(src, grid.to(src.dtype), "bilinear", "zeros", align_corners=False)
                samples[i, k, lo:hi] = sampled[:, 0]
        samples = samples.permute(self.from_axis_first).reshape(b, k_n, -1)  # one copy back, K channels
        points = weight.to(x.dtype)[:, 0, :, 0, 0]  # (O, K)
        out = channel_product(points, samples, None if bias is None else bias.to(x.dtype))
        return out.reshape((b, self.out_channels) + x.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the snake convolution to ``x`` of shape ``(B, C, D, H, W)``."""
        if x.dim() != 5:
            raise ValueError(f"DSConv3D expects a (B, C, D, H, W) input, got shape {list(x.shape)}.")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"DSConv3D expects {self.in_channels} input channels, got shape {list(x.shape)}.")
        if torch.jit.is_scripting() or torch.jit.is_tracing():
            return self.forward_with_offset_logits(x, self.offset_conv(x))
        weight, bias, normalised = self.offset_parameters()
        return self.forward_with_offset_logits(x, self.offset_conv._conv_forward(x, weight, bias), normalised)

    def forward_with_offset_logits(
        self, x: torch.Tensor, logits: torch.Tensor, normalised: bool = False
    ) -> torch.Tensor:
        """:meth:`forward` with the offset convolution's output ``logits`` ``(B, 2 (K - 1), D, H, W)`` given;
        ``normalised``: ``offset_norm`` is already applied (folded into the convolution by
        :meth:`offset_parameters`). At inference (eval mode, no gradients) a batch norm ``norm`` is folded into the
        fusion (:func:`~neurolink_monai.networks.norm.fold_norm`): one pass over the output fewer, same values to
        float32 rounding."""
        steps = self._point_steps(logits, normalised)
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            folded = self._folded_fusion()
            if folded is not None:
                return self.act(self._fuse_samples(x, steps, self.extend_scope, True, folded))
        return self.act(self.norm(self._fuse_samples(x, steps, self.extend_scope, True)))

    @torch.jit.unused
    def _folded_fusion(self) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """The fusion's ``(weight, bias)`` with ``norm`` folded in, or ``None`` when ``norm`` is not an eval-mode
        batch norm or a gradient may be needed (the in-place activation must then not follow the fusion directly)."""
        return None if torch.is_grad_enabled() else fold_norm(self.fusion.weight, self.fusion.bias, self.norm)


class _SnakeFusion(torch.autograd.Function):
    """:meth:`DSConv3D._snake_fusion` of the offsets' grids (:meth:`DSConv3D._offset_grids`) with its backward
    written out (:meth:`DSConv3D._snake_fusion_backward`): the same values as autograd through the plain operators,
    in less time and memory (``python benchmarks/bench_network.py --backward-ab``). The grids are built again in the
    backward rather than kept: the offsets it keeps instead are, in :meth:`DSConv3D.forward`, the ``tanh`` output that
    autograd keeps anyway. Differentiable once."""

    @staticmethod
    def forward(ctx, layer: DSConv3D, x, offsets, weight, bias, scale: float, steps: bool):  # type: ignore[override]
        ctx.layer, ctx.scale, ctx.steps = layer, scale, steps
        ctx.has_bias = bias is not None
        ctx.save_for_backward(x, offsets, weight)
        return layer._snake_fusion(x, layer._offset_grids(offsets, scale, steps), weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        x, offsets, weight = ctx.saved_tensors
        with torch.enable_grad():
            leaf = offsets.detach().requires_grad_(True)
            grids = ctx.layer._offset_grids(leaf, ctx.scale, ctx.steps)
        grad_x, grad_grids, grad_w, grad_b = ctx.layer._snake_fusion_backward(grad, x, grids.detach(), weight)
        (grad_offsets,) = torch.autograd.grad(grids, leaf, grad_grids)
        return None, grad_x, grad_offsets, grad_w, grad_b if ctx.has_bias else None, None, None
