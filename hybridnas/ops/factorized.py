"""Space-time factorised convolutions: (2+1)D, the three Pseudo-3D blocks, and their two
halves alone (a spatial-only 1x3x3 and a temporal-only 3x1x1 conv)."""

from __future__ import annotations

import torch
from torch import nn

from hybridnas.ops.layers import Triple, conv_bn
from hybridnas.ops.registry import register_op


def conv2plus1d_mid_channels(c_in: int, c_out: int, kernel_size: int = 3) -> int:
    """R(2+1)D middle width M = floor(k^3 Ci Co / (k^2 Ci + k Co)): the weights of a k^3 conv."""
    k = kernel_size
    return max(1, (k**3 * c_in * c_out) // (k * k * c_in + k * c_out))


class Conv2Plus1d(nn.Sequential):
    """(2+1)D conv with the parameter budget of a full kxkxk conv.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw))::

        x -> ReLU -> conv 1xkxk, stride (1,sh,sw) -> BN -> [M channels]
          -> ReLU -> conv kx1x1, stride (st,1,1) -> BN -> [C_out channels]
    """

    def __init__(self, c_in: int, c_out: int, stride: Triple, kernel_size: int = 3) -> None:
        k = kernel_size
        mid = conv2plus1d_mid_channels(c_in, c_out, k)
        st, sh, sw = stride
        super().__init__(
            conv_bn(c_in, mid, (1, k, k), (1, sh, sw)),
            conv_bn(mid, c_out, (k, 1, 1), (st, 1, 1)),
        )


class P3DBlock(nn.Module):
    """Pseudo-3D block with S = ReLU -> conv 1x3x3 -> BN and T = ReLU -> conv 3x1x1 -> BN.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw))::

        A:  x -> S (spatial stride) -> T (temporal stride)              T(S(x))
        B:  x -+-> S (full stride) --+-> +                              S(x) + T(x)
               +-> T (full stride) --+
        C:  x -> S (full stride) -+------------> +                      S(x) + T(S(x))
                                  +-> T -------->+

    In A each stride goes to the conv that sees its axis; in B and C both summed paths must
    carry the full stride, so S takes it (a 1x3x3 conv striding time just skips frames).
    """

    def __init__(self, c_in: int, c_out: int, stride: Triple, variant: str) -> None:
        super().__init__()
        if variant not in ("a", "b", "c"):
            raise ValueError(f"P3D variant must be 'a', 'b' or 'c', got {variant!r}")
        self.variant = variant
        st, sh, sw = stride
        s_stride, t_stride = {
            "a": ((1, sh, sw), (st, 1, 1)),
            "b": (stride, stride),
            "c": (stride, (1, 1, 1)),
        }[variant]
        self.spatial = conv_bn(c_in, c_out, (1, 3, 3), s_stride)
        self.temporal = conv_bn(c_in if variant == "b" else c_out, c_out, (3, 1, 1), t_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.variant == "b":
            return self.spatial(x) + self.temporal(x)
        s = self.spatial(x)
        t = self.temporal(s)
        return t if self.variant == "a" else s + t


@register_op("conv2plus1d_3x3x3")
def conv2plus1d_3x3x3(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return Conv2Plus1d(c_in, c_out, stride, kernel_size=3)


@register_op("p3d_a")
def p3d_a(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return P3DBlock(c_in, c_out, stride, "a")


@register_op("p3d_b")
def p3d_b(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return P3DBlock(c_in, c_out, stride, "b")


@register_op("p3d_c")
def p3d_c(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return P3DBlock(c_in, c_out, stride, "c")


@register_op("conv2d_1x3x3")
def conv2d_1x3x3(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    """Spatial only: ReLU -> conv 1x3x3 -> BN (a temporal stride keeps every st-th frame)."""
    return conv_bn(c_in, c_out, (1, 3, 3), stride)


@register_op("conv_t3")
def conv_t3(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    """Temporal only: ReLU -> conv 3x1x1 -> BN (a spatial stride keeps every s-th pixel)."""
    return conv_bn(c_in, c_out, (3, 1, 1), stride)
