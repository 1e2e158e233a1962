"""Dilated temporal convs: a 1x3x3 spatial conv, then a (3,1,1) conv dilated (d,1,1) in time."""

from __future__ import annotations

from torch import nn

from hybridnas.ops.layers import Triple, conv_bn
from hybridnas.ops.registry import register_op


class DilatedTemporalConv(nn.Sequential):
    """Spatial conv then a dilated temporal conv reaching d frames either side.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw))::

        x -> ReLU -> conv 1x3x3, stride (1,sh,sw) -> BN
          -> ReLU -> conv 3x1x1, dilation (d,1,1), padding (d,0,0), stride (st,1,1) -> BN
    """

    def __init__(self, c_in: int, c_out: int, stride: Triple, dilation: int) -> None:
        st, sh, sw = stride
        super().__init__(
            conv_bn(c_in, c_out, (1, 3, 3), (1, sh, sw)),
            conv_bn(c_out, c_out, (3, 1, 1), (st, 1, 1), dilation=(dilation, 1, 1)),
        )


@register_op("dil_temporal_d2")
def dil_temporal_d2(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return DilatedTemporalConv(c_in, c_out, stride, dilation=2)


@register_op("dil_temporal_d4")
def dil_temporal_d4(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return DilatedTemporalConv(c_in, c_out, stride, dilation=4)
