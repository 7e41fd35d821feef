# Copyright (c) NeuroLink-MONAI contributors. Licensed under the Apache License, Version 2.0.
"""NeuroLinkNet: a 3D U-Net of multi-view snake-convolution blocks with direction and distance heads.

References:
    Yan H. et al., "Bridging Weak Signals in Neuronal Imaging with Morphology Learning", MICCAI 2024.
    Qi Y. et al., "Dynamic Snake Convolution based on Topological Geometric Constraints for Tubular Structure
    Segmentation", ICCV 2023 (the multi-view DSCNet block).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch
import torch.nn.functional as F
from monai.networks.layers.utils import get_act_layer
from torch import nn

from .contrast import LocalContrast3d
from .conv import Conv3d, channel_product
from .dsconv import DSConv3D, check_snake_args
from .norm import fold_norm, make_norm
from .outputs import DIRECTION_CHANNELS, DISTANCE_CHANNELS

__all__ = ["ConvNormAct", "MultiViewBlock", "NeuroLinkNet"]

DEFAULT_NORM = ("instance", {"affine": True})
DEFAULT_ACT = ("leakyrelu", {"negative_slope": 0.1, "inplace": True})


class ConvNormAct(nn.Sequential):
    """``Conv3d(kernel_size, same padding) -> norm -> act`` on ``(B, C, D, H, W)``.

    At inference (eval mode, no gradients) a batch norm is folded into the convolution (:meth:`folded`): one pass
    over the output fewer, same values to float32 rounding.
    """

    def __init__(self, in_channels: int, out_channels: int, norm, act, kernel_size: int = 3) -> None:
        super().__init__(
            Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            make_norm(norm, out_channels),
            get_act_layer(act),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            folded = self.folded()
            if folded is not None:
                return self[2](self[0]._conv_forward(x, folded[0], folded[1]))
        for layer in self:
            x = layer(x)
        return x

    @torch.jit.unused
    def folded(self) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """The convolution's ``(weight, bias)`` with the norm folded in, or ``None`` when the norm is not an eval-mode
        batch norm (:func:`~neurolink_monai.networks.norm.fold_norm`) or a gradient may be needed (the in-place
        activation must then not follow the convolution directly)."""
        return None if torch.is_grad_enabled() else fold_norm(self[0].weight, self[0].bias, self[1])


class MultiViewBlock(nn.Module):
    """U-Net block that fuses four views of its input, as in DSCNet's 3D network.

    With ``dsconv=True`` the first stage computes a standard 3x3x3 convolution and one :class:`DSConv3D` along each
    of D, H and W, concatenates the four ``(B, out_channels, D, H, W)`` views and fuses them with a 1x1x1
    convolution; a standard 3x3x3 convolution follows. With ``dsconv=False`` the snake views are left out, which
    gives the classic double-convolution U-Net block of the same width: the ablation baseline.

    Shapes: ``(B, in_channels, D, H, W)`` -> ``(B, out_channels, D, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        extend_scope: float,
        dsconv: bool,
        norm,
        act,
    ) -> None:
        super().__init__()
        self.dsconv = dsconv
        self.standard = ConvNormAct(in_channels, out_channels, norm, act)
        if dsconv:
            self.snakes = nn.ModuleList(
                [
                    DSConv3D(
                        in_channels, out_channels, kernel_size, axis=axis, extend_scope=extend_scope, norm=norm, act=act
                    )
                    for axis in (0, 1, 2)
                ]
            )
            self.fuse = ConvNormAct(4 * out_channels, out_channels, norm, act, kernel_size=1)
        else:
            self.snakes = nn.ModuleList()
            self.fuse = nn.Identity()
        self.refine = ConvNormAct(out_channels, out_channels, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.dsconv:
            return self.refine(self.standard(x))
        if torch.jit.is_scripting() or torch.jit.is_tracing():
            views = [self.standard(x)]
            for snake in self.snakes:
                views.append(snake(x))
            return self.refine(self.fuse(torch.cat(views, dim=1)))
        views = self._views_one_convolution(x)
        if torch.is_grad_enabled():
            return self.refine(self.fuse(torch.cat(views, dim=1)))
        return self.refine(self._fuse_views(views))

    @torch.jit.unused
    def _views_one_convolution(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four views, with the standard 3x3x3 convolution and the three snakes' offset convolutions (all of ``x``,
        all 3x3x3) computed as one convolution of stacked weights: one pass over ``x`` instead of four (the offset
        convolutions have only ``2 (K - 1)`` output channels each, which oneDNN runs at about the cost of a wide one;
        ``python benchmarks/bench_conv_paths.py`` times it). In eval mode the snakes' offset BatchNorms are folded
        into their stacked weights (:meth:`DSConv3D.offset_parameters`), and at inference the standard convolution's
        (:meth:`ConvNormAct.folded`). Same parameters, same results to float32 rounding."""
        conv = self.standard[0]
        standard = self.standard.folded()
        offsets = [snake.offset_parameters() for snake in self.snakes]
        first = (conv.weight, conv.bias) if standard is None else standard
        weight = torch.cat([first[0]] + [part[0] for part in offsets], dim=0)
        bias = torch.cat([first[1]] + [part[1] for part in offsets], dim=0)
        sizes = [conv.out_channels] + [snake.offset_conv.out_channels for snake in self.snakes]
        logits = torch.split(conv._conv_forward(x, weight, bias), sizes, dim=1)
        views = [self.standard[2](logits[0] if standard is not None else self.standard[1](logits[0]))]
        for snake, offset_logits, part in zip(self.snakes, logits[1:], offsets):
            views.append(snake.forward_with_offset_logits(x, offset_logits, part[2]))
        return views

    @torch.jit.unused
    def _fuse_views(self, views: list[torch.Tensor]) -> torch.Tensor:
        """``self.fuse`` of the views' concatenation without concatenating, for inference (no gradients): the 1x1x1
        convolution of the four ``(B, out_channels, D, H, W)`` views is the sum of four matrix products with the
        slices of its weight, so the ``(B, 4 out_channels, D, H, W)`` copy is never made
        (``python benchmarks/bench_network.py --inference`` times the forward pass). Same parameters, same results
        to float32 rounding; with gradients :meth:`forward` concatenates, whose gradients match the separate
        convolutions' to the last bit."""
        conv = self.fuse[0]
        b, o = views[0].shape[0], conv.out_channels
        folded = self.fuse.folded()
        weight, bias = (conv.weight, conv.bias) if folded is None else folded
        weight = weight.reshape(o, len(views), -1)
        flat = [view.reshape(b, view.shape[1], -1) for view in views]
        out = channel_product(weight[:, 0], flat[0], bias)
        for i in range(1, len(views)):  # dtypes as `out`'s: autocast does not cast in-place products
            out = out.baddbmm_(weight[:, i].expand(b, o, -1).to(out.dtype), flat[i].to(out.dtype))
        out = out.reshape(views[0].shape[:1] + (o,) + views[0].shape[2:])
        return self.fuse[2](out if folded is not None else self.fuse[1](out))


class NeuroLinkNet(nn.Module):
    """The NeuroLink segmentation network with morphology heads (Yan et al., MICCAI 2024).

    A 3D U-Net with ``len(features)`` levels (max-pool down, transposed-conv up, skip concatenation) whose blocks are
    :class:`MultiViewBlock`. Three 1x1x1 heads read the last decoder features:

    - segmentation logits, ``out_channels`` channels;
    - the neurite direction field, 3 channels ``(dir_z, dir_y, dir_x)`` along (D, H, W), unnormalised and learned
      sign-invariantly (only the axis matters);
    - the distance map, 1 channel, made non-negative by softplus.

    The output is one tensor ``(B, out_channels + 4, D, H, W)`` with channels
    ``[seg..., dir_z, dir_y, dir_x, dist]`` (``multitask=True``) or ``(B, out_channels, D, H, W)``
    (``multitask=False``); :func:`neurolink_monai.networks.split_outputs` splits it. Any spatial size works: the
    input is zero-padded to a multiple of ``2 ** (len(features) - 1)`` inside and the output cropped back.

    Args:
        spatial_dims: must be 3.
        in_channels: image channels.
        out_channels: segmentation channels (1 for a binary neurite mask, logits for sigmoid).
        features: channels per level, e.g. ``(16, 32, 64, 128)``.
        kernel_size: DSConv3D kernel points ``K`` (odd, >= 3).
        extend_scope: DSConv3D offset scale.
        dsconv: use the snake views; ``False`` gives the plain U-Net baseline of the same depth and width.
        multitask: add the direction and distance heads.
        norm: MONAI norm name or ``(name, args)``.
        act: MONAI activation name or ``(name, args)``.
        local_contrast: if given, the ``(D, H, W)`` box radii (voxels) of a :class:`LocalContrast3d` that appends
            each input channel's local contrast before the first block (use with ``norm="batch"`` for a network
            whose output does not depend on the window it sees).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = (16, 32, 64, 128),
        kernel_size: int = 5,
        extend_scope: float = 1.0,
        dsconv: bool = True,
        multitask: bool = True,
        norm: tuple | str = DEFAULT_NORM,
        act: tuple | str = DEFAULT_ACT,
        local_contrast: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims != 3:
            raise ValueError(f"NeuroLinkNet is 3D only: spatial_dims must be 3, got {spatial_dims!r}.")
        check_snake_args(
            in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, extend_scope=extend_scope
        )
        features = tuple(features)
        if len(features) < 2 or any(isinstance(f, bool) or not isinstance(f, int) or f < 1 for f in features):
            raise ValueError(f"features must hold at least two positive ints, got {features!r}.")

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.multitask = multitask
        self.divisor = 2 ** (len(features) - 1)

        def block(cin: int, cout: int) -> MultiViewBlock:
            return MultiViewBlock(cin, cout, kernel_size, extend_scope, dsconv, norm, act)

        self.contrast = LocalContrast3d(local_contrast) if local_contrast is not None else nn.Identity()
        first_channels = 2 * in_channels if local_contrast is not None else in_channels
        self.encoders = nn.ModuleList([block(first_channels, features[0])])
        for cin, cout in zip(features[:-1], features[1:]):
            self.encoders.append(block(cin, cout))
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for cdeep, cskip in zip(features[:0:-1], features[-2::-1]):
            self.ups.append(nn.ConvTranspose3d(cdeep, cskip, kernel_size=2, stride=2))
            self.decoders.append(block(2 * cskip, cskip))
        self.seg_head = Conv3d(features[0], out_channels, kernel_size=1)
        heads = DIRECTION_CHANNELS + DISTANCE_CHANNELS if multitask else 0
        self.morph_head = Conv3d(features[0], heads, kernel_size=1) if multitask else nn.Identity()

    def _downsample(self, y: torch.Tensor) -> torch.Tensor:
        """2x2x2 max pooling of ``(B, C, D, H, W)`` with even ``D, H, W`` (the input is padded to ``divisor``)."""
        if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.is_grad_enabled():
            return F.max_pool3d(y, kernel_size=2)
        return self._downsample_by_maximum(y)

    @torch.jit.unused
    def _downsample_by_maximum(self, y: torch.Tensor) -> torch.Tensor:
        """:meth:`_downsample` as the maximum of the even and odd slices, axis by axis: the same values (a maximum is
        exact), without the indices that ``max_pool3d`` computes on CPU even when not asked for (several times
        faster at full resolution). Without gradients only: on ties ``torch.maximum`` would split the gradient
        that max pooling gives to one voxel."""
        y = torch.maximum(y[:, :, 0::2], y[:, :, 1::2])
        y = torch.maximum(y[:, :, :, 0::2], y[:, :, :, 1::2])
        return torch.maximum(y[..., 0::2], y[..., 1::2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, D, H, W)`` -> ``(B, out_channels [+ 4], D, H, W)``; see the class docstring."""
        if x.dim() != 5:
            raise ValueError(f"NeuroLinkNet expects a (B, C, D, H, W) input, got shape {list(x.shape)}.")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"NeuroLinkNet expects {self.in_channels} input channels, got shape {list(x.shape)}.")
        x = self.contrast(x)
        d, h, w = x.shape[2], x.shape[3], x.shape[4]
        pad_d = (self.divisor - d % self.divisor) % self.divisor
        pad_h = (self.divisor - h % self.divisor) % self.divisor
        pad_w = (self.divisor - w % self.divisor) % self.divisor
        if pad_d + pad_h + pad_w > 0:
            x = F.pad(x, [0, pad_w, 0, pad_h, 0, pad_d])

        skips: list[torch.Tensor] = []
        y = x
        for i, encoder in enumerate(self.encoders):
            if i > 0:
                skips.append(y)
                y = self._downsample(y)
            y = encoder(y)
        for i, (up, decoder) in enumerate(zip(self.ups, self.decoders)):
            y = decoder(torch.cat([skips[len(skips) - 1 - i], up(y)], dim=1))

        seg = self.seg_head(y)
        if self.multitask:
            morph = self.morph_head(y)
            direction = morph[:, :3]
            distance = F.softplus(morph[:, 3:])
            out = torch.cat([seg, direction, distance], dim=1)
        else:
            out = seg
        return out[:, :, :d, :h, :w]
