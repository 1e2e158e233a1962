"""Parameter-light ops: none, skip (identity or factorized reduce) and 1x3x3 / 3x3x3 pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.ops.layers import Triple, conv_bn, out_size
from hybridnas.ops.registry import register_op


class Zero3d(nn.Module):
    """Op ``none``: (B, C_in, T, H, W) -> zeros (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)).

    The zeros carry no graph, so the edge costs nothing in the backward pass.
    """

    def __init__(self, c_out: int, stride: Triple) -> None:
        super().__init__()
        self.c_out = c_out
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        size = [out_size(n, s) for n, s in zip((t, h, w), self.stride, strict=True)]
        return x.new_zeros(b, self.c_out, *size)


class FactorizedReduce3d(nn.Module):
    """Strided skip: two 1x1x1 convs, the second on the input shifted by one voxel.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)), any sizes::

        x -> ReLU -+-> conv 1x1x1 / stride ---------------------> C_out//2       -+
                   +-> pad 1 at the end, drop the first voxel
                       (strided axes) -> conv 1x1x1 / stride ---> C_out - C_out//2 -+-> concat -> BN

    The end padding keeps every axis at its size before the stride, so odd sizes work
    (DARTS' ``x[:, :, 1:, 1:]`` loses a row there).
    """

    def __init__(self, c_in: int, c_out: int, stride: Triple) -> None:
        super().__init__()
        if c_out < 2:
            raise ValueError(f"factorized reduce needs c_out >= 2, got {c_out}")
        self.shift = tuple(int(s > 1) for s in stride)
        self.conv_a = nn.Conv3d(c_in, c_out // 2, 1, stride, bias=False)
        self.conv_b = nn.Conv3d(c_in, c_out - c_out // 2, 1, stride, bias=False)
        self.bn = nn.BatchNorm3d(c_out, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        dt, dh, dw = self.shift
        shifted = F.pad(x, (0, dw, 0, dh, 0, dt))[:, :, dt:, dh:, dw:]
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(shifted)], dim=1))


class AvgPool3dSame(nn.Module):
    """Average pool over the window's in-bounds voxels (``count_include_pad=False``), any size.

    (B, C, T, H, W) -> (B, C, ceil(T/st), ceil(H/sh), ceil(W/sw)) for odd kernels. Computed as
    (mean of the zero-padded window) / (share of the window in bounds), because nn.AvgPool3d
    rejects inputs smaller than the kernel (e.g. H = 1) even when padded.
    """

    def __init__(self, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        self.kernel = kernel
        self.stride = stride
        self.pad = tuple(p for k in reversed(kernel) for p in (k // 2, k // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = F.avg_pool3d(F.pad(x, self.pad), self.kernel, self.stride)
        ones = F.pad(x.new_ones(1, 1, *x.shape[2:]), self.pad)
        return mean / F.avg_pool3d(ones, self.kernel, self.stride)


def skip(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    """Identity when shape-preserving, else factorized reduce (strided) or a 1x1x1 ReLU-conv-BN."""
    if stride != (1, 1, 1):
        return FactorizedReduce3d(c_in, c_out, stride)
    if c_in != c_out:
        return conv_bn(c_in, c_out, (1, 1, 1))
    return nn.Identity()


def pool(kind: str, kernel: Triple, c_in: int, c_out: int, stride: Triple) -> nn.Module:
    """Max or average pool (padding k//2, avg ignores it), then 1x1x1 conv + BN if C changes.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)).
    """
    if kind == "max":
        layer: nn.Module = nn.MaxPool3d(kernel, stride, tuple(k // 2 for k in kernel))
    else:
        layer = AvgPool3dSame(kernel, stride)
    if c_in == c_out:
        return layer
    return nn.Sequential(layer, conv_bn(c_in, c_out, (1, 1, 1), relu_first=False))


@register_op("none")
def none(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return Zero3d(c_out, stride)


register_op("skip")(skip)


@register_op("max_pool_1x3x3")
def max_pool_1x3x3(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return pool("max", (1, 3, 3), c_in, c_out, stride)


@register_op("avg_pool_1x3x3")
def avg_pool_1x3x3(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return pool("avg", (1, 3, 3), c_in, c_out, stride)


@register_op("max_pool_3x3x3")
def max_pool_3x3x3(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return pool("max", (3, 3, 3), c_in, c_out, stride)


@register_op("avg_pool_3x3x3")
def avg_pool_3x3x3(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return pool("avg", (3, 3, 3), c_in, c_out, stride)
