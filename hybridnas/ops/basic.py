"""Parameter-light ops: none, skip (identity or factorized reduce) and 1x3x3 / 3x3x3 pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.ops.choice import may_choose, run_fastest
from hybridnas.ops.layers import (
    Triple,
    conv_bn,
    fast_conv,
    fold_norm,
    foldable_norm,
    out_size,
    rebuilt_on_change,
)
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
    (DARTS' ``x[:, :, 1:, 1:]`` loses a row there). In inference the BatchNorm is folded into
    the two convs.
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
        halves = (self._every_stride(x, (0, 0, 0)), self._every_stride(x, self.shift))
        convs = (self.conv_a, self.conv_b)
        if self.training or torch.is_grad_enabled() or not foldable_norm(self.bn):
            outs = [fast_conv(h, conv.weight) for h, conv in zip(halves, convs, strict=True)]
            return self.bn(torch.cat(outs, dim=1))
        folded = self._folded()
        return torch.cat([fast_conv(h, *wb) for h, wb in zip(halves, folded, strict=True)], 1)

    def _every_stride(self, x: torch.Tensor, start: Triple) -> torch.Tensor:
        """Every stride-th voxel from ``start`` on each axis, a zero voxel appended where that
        reading runs past the end (n % s == 1). A strided 1x1x1 conv is then an unstrided one
        on this: the same products without the strided conv's unfold copy."""
        (dt, dh, dw), stride = start, self.conv_a.stride
        y = x[:, :, dt :: stride[0], dh :: stride[1], dw :: stride[2]]
        sizes = zip(x.shape[2:], stride, y.shape[2:], strict=True)
        short = [out_size(n, s) - m for n, s, m in sizes]
        return F.pad(y, (0, short[2], 0, short[1], 0, short[0])) if any(short) else y

    def _folded(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """Each half's (weight, bias) with the BatchNorm after the concat folded in: it
        scales channels one by one, so each half takes its own channels' share."""

        def fold() -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
            weight = torch.cat([self.conv_a.weight, self.conv_b.weight])
            w, b = fold_norm(weight, None, self.bn)
            half = self.conv_a.out_channels
            return (w[:half], b[:half]), (w[half:], b[half:])

        return rebuilt_on_change(self, (self.conv_a, self.conv_b, self.bn), fold)


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

    Two formulations of the same math, both measured faster than PyTorch's CPU
    ``max_pool3d`` at the default shapes (``python tools/bench.py ops``):
    ``pool_shifted_views`` (one 3-wide reduction per axis over shifted views: a max or mean
    over a box is the same reduction applied axis by axis) and ``pool_channels_last`` (the
    3x3 spatial window as a 2D pool over a channels-last (B, C*T, H, W) view, then the
    temporal window over shifted views). In inference the faster for the shape is timed and
    kept (``choice.run_fastest``; an average only on one clip, since the two round
    differently, a max at any batch); a max that needs a gradient takes the
    channels-last one, whose backward routes each gradient to one index (as nn.MaxPool3d)
    and measured 5x faster; an average with a gradient takes the shifted views. Max pads
    with -inf, so padding never wins (as nn.MaxPool3d); average divides by the in-bounds
    voxel count (``count_include_pad=False``), which nn.AvgPool3d cannot do for inputs
    smaller than the kernel. Where several inputs tie for a temporal max, the gradient is
    shared between them (nn.MaxPool3d gives it to one).
    """

    def __init__(self, kind: str, kernel: Triple, stride: Triple) -> None:
        super().__init__()
        if kind not in ("max", "avg") or any(k not in (1, 3) for k in kernel):
            raise ValueError(f"pool kind max|avg with kernel sides 1|3, got {kind}, {kernel}")
        self.kind = kind
        self.kernel = kernel
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = (x, self.kind, self.kernel, self.stride)
        if may_choose(x, exact=self.kind == "max"):
            key = ("pool", x.shape, *args[1:])
            return run_fastest(key, lambda: _POOLS, *args)
        if self.kind == "max" and torch.is_grad_enabled() and x.requires_grad:
            return pool_channels_last(*args)
        return pool_shifted_views(*args)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, kernel={self.kernel}, stride={self.stride}"


def pool_shifted_views(x: torch.Tensor, kind: str, kernel: Triple, stride: Triple) -> torch.Tensor:
    """``WindowPool3d``'s pooling as one 3-wide reduction per pooled axis over shifted views."""
    if kind == "max":
        return _reduce_axes(x, kernel, stride, float("-inf"), "max")
    ones = x.new_ones(1, 1, *x.shape[2:])
    return _reduce_axes(x, kernel, stride, 0.0, "sum") / _reduce_axes(
        ones, kernel, stride, 0.0, "sum"
    )


def pool_channels_last(x: torch.Tensor, kind: str, kernel: Triple, stride: Triple) -> torch.Tensor:
    """``WindowPool3d``'s pooling with the 3x3 spatial window as a 2D pool over a
    channels-last (B, C*T, H, W) view, then the temporal window, if any, over shifted views."""
    b, c, t, h, w = x.shape
    _, sh, sw = stride
    frames = x.reshape(b, c * t, h, w).contiguous(memory_format=torch.channels_last)
    if kind == "max":
        y = F.max_pool2d(frames, 3, (sh, sw), 1)
    else:
        y = F.avg_pool2d(frames, 3, (sh, sw), 1, count_include_pad=False)
    y = y.contiguous().view(b, c, t, *y.shape[2:])
    if kernel[0] == 1:
        return _every(y, 2, stride[0])
    if kind == "max":
        return _window_reduce(y, 2, stride[0], "max", float("-inf"))
    # a box mean excluding padding is the mean over frames of the in-frame means
    ones = y.new_ones(1, 1, t, 1, 1)
    return _window_reduce(y, 2, stride[0], "sum", 0.0) / _window_reduce(
        ones, 2, stride[0], "sum", 0.0
    )


_POOLS = (pool_shifted_views, pool_channels_last)


def _reduce_axes(
    x: torch.Tensor, kernel: Triple, stride: Triple, fill: float, reduce: str
) -> torch.Tensor:
    for dim, k, s in zip((2, 3, 4), kernel, stride, strict=True):
        if k == 3:
            x = _window_reduce(x, dim, s, reduce, fill)
        elif s > 1:
            x = _every(x, dim, s)
    return x


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
