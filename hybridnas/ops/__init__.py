"""Candidate spatio-temporal operations. Importing this package registers every op family.

Every op maps (B, C_in, T, H, W) to (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)).
"""

from hybridnas.ops import attention, basic, conv3d, factorized, itgm, shift, temporal  # noqa: F401
from hybridnas.ops.attention import ContextGating3d, SqueezeExcite3d
from hybridnas.ops.basic import FactorizedReduce3d, WindowPool3d, Zero3d
from hybridnas.ops.conv3d import ChannelSeparatedConv3d, SepConv3d
from hybridnas.ops.factorized import Conv2Plus1d, P3DBlock, conv2plus1d_mid_channels
from hybridnas.ops.itgm import LONG_ITGM_OPS, ITGMConv3d, ITGMOp, itgm_op_name, register_itgm
from hybridnas.ops.layers import ConvBN, FastConv3d, TemporalConv3d, conv_bn, fast_conv
from hybridnas.ops.registry import create_op, is_op, list_ops, normalize_stride, register_op
from hybridnas.ops.shift import TemporalShift, TemporalShiftConv
from hybridnas.ops.temporal import DilatedTemporalConv

__all__ = [
    "LONG_ITGM_OPS",
    "ChannelSeparatedConv3d",
    "ContextGating3d",
    "ConvBN",
    "Conv2Plus1d",
    "DilatedTemporalConv",
    "FactorizedReduce3d",
    "FastConv3d",
    "ITGMConv3d",
    "ITGMOp",
    "P3DBlock",
    "SepConv3d",
    "SqueezeExcite3d",
    "TemporalConv3d",
    "TemporalShift",
    "TemporalShiftConv",
    "WindowPool3d",
    "Zero3d",
    "conv2plus1d_mid_channels",
    "conv_bn",
    "create_op",
    "fast_conv",
    "is_op",
    "itgm_op_name",
    "list_ops",
    "normalize_stride",
    "register_itgm",
    "register_op",
]
