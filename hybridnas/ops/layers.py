"""Building blocks shared by the op families: conv + BN units and a fast temporal conv."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

Triple = tuple[int, int, int]
Stride3 = int | Triple
Norm = Callable[[int], nn.Module]  # channels -> a normalisation layer (default BatchNorm3d)
Activation = Callable[[], nn.Module]  # () -> an activation layer (default ReLU)


def out_size(size: int, stride: int) -> int:
    """Length of an axis of ``size`` after a stride of ``stride``: ceil(size / stride)."""
    return -(-size // stride)


def same_padding(kernel: Triple, dilation: Triple = (1, 1, 1)) -> Triple:
    """Padding that makes an odd kernel give ceil(n / stride) outputs on every axis."""
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"kernel sizes must be odd to keep the shape rule, got {kernel}")
    return tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation, strict=True))  # type: ignore[return-value]


class TemporalConv3d(nn.Conv3d):
    """A (k, 1, 1) Conv3d computed as a (k, 1) Conv2d on a (B, C, T, H*W) view.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)).

    The weight keeps the Conv3d shape (C_out, C_in/groups, k, 1, 1), so state dicts, parameter
    counts and ``isinstance(m, nn.Conv3d)`` are unchanged; only the kernel call differs, because
    PyTorch's CPU Conv3d runs temporal-only kernels several times below its FLOP rate. A spatial
    stride is applied by subsampling first, which is exact for a 1x1 spatial kernel.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel_size: int = 3,
        stride: Triple = (1, 1, 1),
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        kernel = (kernel_size, 1, 1)
        dil = (dilation, 1, 1)
        super().__init__(
            c_in, c_out, kernel, stride, same_padding(kernel, dil), dil, groups, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        st, sh, sw = self.stride
        if sh > 1 or sw > 1:
            x = x[:, :, :, ::sh, ::sw]
        b, c, t, h, w = x.shape
        y = F.conv2d(
            x.reshape(b, c, t, h * w),
            self.weight.squeeze(-1),
            self.bias,
            stride=(st, 1),
            padding=(self.padding[0], 0),
            dilation=(self.dilation[0], 1),
            groups=self.groups,
        )
        return y.view(b, y.shape[1], y.shape[2], h, w)


def conv_bn(
    c_in: int,
    c_out: int,
    kernel: Triple,
    stride: Triple = (1, 1, 1),
    dilation: Triple = (1, 1, 1),
    groups: int = 1,
    relu_first: bool = True,
    norm: Norm = nn.BatchNorm3d,
    activation: Activation = nn.ReLU,
) -> nn.Sequential:
    """DARTS unit ReLU -> Conv3d (no bias) -> BN; temporal-only kernels use TemporalConv3d.
    ``norm(channels)`` and ``activation()`` replace BN and ReLU (as pytorchvideo's builders).

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)) for odd kernels.
    """
    if kernel[1:] == (1, 1) and kernel[0] > 1 and dilation[1:] == (1, 1):
        conv: nn.Module = TemporalConv3d(c_in, c_out, kernel[0], stride, dilation[0], groups)
    else:
        conv = nn.Conv3d(
            c_in,
            c_out,
            kernel,
            stride,
            same_padding(kernel, dilation),
            dilation,
            groups,
            bias=False,
        )
    layers = [activation()] if relu_first else []
    return nn.Sequential(*layers, conv, norm(c_out))


def swap_layers(module: nn.Module, norm: Norm, activation: Activation) -> nn.Module:
    """``module`` with every BatchNorm3d replaced by ``norm(channels)`` and every ReLU by
    ``activation()``, in place; the defaults leave it untouched (no module is rebuilt)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm3d) and norm is not nn.BatchNorm3d:
            setattr(module, name, norm(child.num_features))
        elif isinstance(child, nn.ReLU) and activation is not nn.ReLU:
            setattr(module, name, activation())
        else:
            swap_layers(child, norm, activation)
    return module
