"""Parameter-light ops: none, skip (identity or factorized reduce) and 1x3x3 / 3x3x3 pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.ops.layers import Triple, conv_bn, out_size
from hybridnas.ops.registry import register_op


class Zero3d(nn.Module):
    """Op ``none``: (B, C_in, T, H, W) -> zeros (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)).

    The zeros carry no graph, so the edge costs nothing in the backward pass; they are one
    scalar expanded to the shape (stride 0), so the op allocates nothing either. Read-only:
    write into a clone.
    """

    def __init__(self, c_out: int, stride: Triple) -> None:
        super().__init__()
        self.c_out = c_out
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        size = [out_size(n, s) for n, s in zip((t, h, w), self.stride, strict=True)]
        return x.new_zeros(()).expand(b, self.c_out, *size)


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
        return self.bn(
            torch.cat(
                [self._pointwise(self.conv_a, x), self._pointwise(self.conv_b, shifted)], dim=1
            )
        )

    @staticmethod
    def _pointwise(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
        """A strided 1x1x1 conv as subsampling, then an unstrided one: the same products,
        without the strided conv's unfold copy (PyTorch's reference path at small sizes)."""
        st, sh, sw = conv.stride
        return F.conv3d(x[:, :, ::st, ::sh, ::sw], conv.weight, conv.bias)


def _every(x: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """A view of every ``step``-th entry along ``dim``."""
    return x[(slice(None),) * dim + (slice(None, None, step),)]


def _window_reduce(
    x: torch.Tensor, dim: int, stride: int, reduce: str, fill: float
) -> torch.Tensor:
    """Max or sum of each 3-wide window along ``dim`` (padded by one ``fill`` value either
    side), keeping every ``stride``-th window: the axis becomes ceil(n / stride) long."""
    n = x.shape[dim]
    pad = [0, 0] * (x.dim() - 1 - dim) + [1, 1]
    padded = F.pad(x, pad, value=fill)
    left, mid, right = (padded.narrow(dim, i, n) for i in range(3))
    if stride > 1:
        left, mid, right = (_every(v, dim, stride) for v in (left, mid, right))
    if reduce == "max":
        return torch.maximum(torch.maximum(left, mid), right)
    return left + mid + right


class WindowPool3d(nn.Module):
    """Max or average pooling over 1x3x3 or 3x3x3 windows (padding 1 on each pooled axis),
    any input size: (B, C, T, H, W) -> (B, C, ceil(T/st), ceil(H/sh), ceil(W/sw)).

    Written as one 3-wide reduction per axis (a max or mean over a box is the same reduction
    applied axis by axis) over shifted views, which measured 10-30x faster than PyTorch's CPU
    ``max_pool3d`` at the default shapes (``python tools/bench.py ops``). Max pads with -inf,
    so padding never wins (as nn.MaxPool3d); average divides by the in-bounds voxel count
    (``count_include_pad=False``), which nn.AvgPool3d cannot do for inputs smaller than the
    kernel. A max that needs a gradient takes a 2D max pool for its spatial window instead
    (``_max_with_cheap_backward``): the same values, a faster backward. Where several inputs
    tie for a temporal max, the gradient is shared between them (nn.MaxPool3d gives it to one).
    """

    def __init__(self, kind: str, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        if kind not in ("max", "avg") or any(k not in (1, 3) for k in kernel):
            raise ValueError(f"pool kind max|avg with kernel sides 1|3, got {kind}, {kernel}")
        self.kind = kind
        self.kernel = kernel
        self.stride = stride

    def _reduce(self, x: torch.Tensor, fill: float, reduce: str) -> torch.Tensor:
        for dim, k, s in zip((2, 3, 4), self.kernel, self.stride, strict=True):
            if k == 3:
                x = _window_reduce(x, dim, s, reduce, fill)
            elif s > 1:
                x = _every(x, dim, s)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "max" and torch.is_grad_enabled() and x.requires_grad:
            return self._max_with_cheap_backward(x)
        if self.kind == "max":
            return self._reduce(x, float("-inf"), "max")
        ones = x.new_ones(1, 1, *x.shape[2:])
        return self._reduce(x, 0.0, "sum") / self._reduce(ones, 0.0, "sum")

    def _max_with_cheap_backward(self, x: torch.Tensor) -> torch.Tensor:
        """The max for training: the spatial 3x3 window as a 2D max pool over a channels-last
        (B, C*T, H, W) view, whose backward routes each gradient to one index (as
        nn.MaxPool3d) and measured 5x faster than the backward of the shifted-view maxima;
        then the temporal window, if any, over shifted views."""
        b, c, t, h, w = x.shape
        _, sh, sw = self.stride
        frames = x.reshape(b, c * t, h, w).contiguous(memory_format=torch.channels_last)
        y = F.max_pool2d(frames, 3, (sh, sw), 1).contiguous()
        y = y.view(b, c, t, *y.shape[2:])
        if self.kernel[0] == 3:
            return _window_reduce(y, 2, self.stride[0], "max", float("-inf"))
        return _every(y, 2, self.stride[0])

    def extra_repr(self) -> str:
        return f"kind={self.kind}, kernel={self.kernel}, stride={self.stride}"


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
    layer = WindowPool3d(kind, kernel, stride)
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
