"""Full, depthwise-separable and channel-separated (CSN) 3x3x3 convolutions."""

from __future__ import annotations

from torch import nn

from hybridnas.ops.layers import FastConv3d, Triple, conv_bn, same_padding
from hybridnas.ops.registry import register_op


class SepConv3d(nn.Sequential):
    """Depthwise-separable 3D conv: ``repeats`` x (ReLU -> depthwise kxkxk -> 1x1x1 -> BN).

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)); the first repeat
    carries the stride, the last one maps to C_out.
    """

    def __init__(
        self, c_in: int, c_out: int, stride: Triple, kernel_size: int = 3, repeats: int = 1
    ) -> None:
        k = (kernel_size,) * 3
        layers = []
        for i in range(repeats):
            s = stride if i == 0 else (1, 1, 1)
            mid = c_out if i == repeats - 1 else c_in
            layers += [
                nn.ReLU(),
                FastConv3d(c_in, c_in, k, s, same_padding(k), groups=c_in, bias=False),
                nn.Conv3d(c_in, mid, 1, bias=False),
                nn.BatchNorm3d(mid, affine=True),
            ]
        super().__init__(*layers)


@register_op("conv3d_3x3x3")
def conv3d_3x3x3(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    """ReLU -> Conv3d 3x3x3 -> BN."""
    return conv_bn(c_in, c_out, (3, 3, 3), stride)


@register_op("sep_conv3d_3x3x3")
def sep_conv3d_3x3x3(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    """One ReLU -> depthwise 3x3x3 -> pointwise -> BN (DARTS stacks two; one keeps CPU cost low)."""
    return SepConv3d(c_in, c_out, stride, repeats=1)


class ChannelSeparatedConv3d(nn.Sequential):
    """Channel-separated 3D conv (CSN's interaction-reduced block, X3D's core): channels mix
    only in the 1x1x1 convs, space-time only in the depthwise 3x3x3 one.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw))::

        x -> ReLU -> conv 1x1x1 -> BN                         [C_out channels]
          -> ReLU -> depthwise conv 3x3x3, stride -> BN       [C_out, one filter each]
          -> ReLU -> conv 1x1x1 -> BN                         [C_out]
    """

    def __init__(self, c_in: int, c_out: int, stride: Triple) -> None:
        super().__init__(
            conv_bn(c_in, c_out, (1, 1, 1)),
            conv_bn(c_out, c_out, (3, 3, 3), stride, groups=c_out),
            conv_bn(c_out, c_out, (1, 1, 1)),
        )


@register_op("csn_3x3x3")
def csn_3x3x3(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return ChannelSeparatedConv3d(c_in, c_out, stride)
