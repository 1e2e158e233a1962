"""Temporal shift (TSM, Lin et al. 2019): time mixed by moving channels, not by a kernel."""

from __future__ import annotations

import torch
from torch import nn

from hybridnas.ops.layers import Triple, conv_bn
from hybridnas.ops.registry import register_op


def shift_fold(channels: int, share: int = 8) -> int:
    """Channels shifted each way: ``channels // share``, at least 1 once there are 2 channels
    (the default space's 4-channel cells would otherwise shift nothing)."""
    return 0 if channels < 2 else max(1, channels // share)


class TemporalShift(nn.Module):
    """Shift ``fold`` channels one frame forward and the next ``fold`` one frame back,
    zero-filled at the clip's ends; the rest pass unchanged. No FLOPs; one output buffer.

    (B, C, T, H, W) -> (B, C, T, H, W)::

        out[:, :f, t]   = x[:, :f, t - 1]    (0 at t = 0)
        out[:, f:2f, t] = x[:, f:2f, t + 1]  (0 at t = T - 1)
        out[:, 2f:]     = x[:, 2f:]
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fold = shift_fold(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.fold
        out = torch.empty_like(x)
        out[:, :f, 1:] = x[:, :f, :-1]
        out[:, :f, :1] = 0
        out[:, f : 2 * f, :-1] = x[:, f : 2 * f, 1:]
        out[:, f : 2 * f, -1:] = 0
        out[:, 2 * f :] = x[:, 2 * f :]
        return out

    def extra_repr(self) -> str:
        return f"fold={self.fold}"


class TemporalShiftConv(nn.Sequential):
    """TSM's residual-branch op: shift, then a spatial conv that mixes the shifted channels.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw))::

        x -> shift (1/8 forward, 1/8 back) -> ReLU -> conv 1x3x3, stride -> BN
    """

    def __init__(self, c_in: int, c_out: int, stride: Triple) -> None:
        super().__init__(TemporalShift(c_in), conv_bn(c_in, c_out, (1, 3, 3), stride))


@register_op("tsm")
def tsm(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    return TemporalShiftConv(c_in, c_out, stride)
