"""Channel attention for clips: 3D squeeze-excitation and context gating, and an SE conv op."""

from __future__ import annotations

import torch
from timm.layers import make_divisible
from torch import nn

from hybridnas.ops.layers import Triple, conv_bn
from hybridnas.ops.registry import register_op


class SqueezeExcite3d(nn.Module):
    """Squeeze-excitation over (T, H, W); (B, C, T, H, W) -> same shape.

        x -> mean over T,H,W -> 1x1x1 conv C->R -> act -> 1x1x1 conv R->C -> sigmoid -> * x

    R = make_divisible(C * rd_ratio, rd_divisor), as in timm's 2D SEModule; a small divisor
    suits the narrow channels of tiny video nets.
    """

    def __init__(
        self,
        channels: int,
        rd_ratio: float = 0.25,
        rd_divisor: int = 4,
        act_layer: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        rd = make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)
        self.fc1 = nn.Conv3d(channels, rd, 1)
        self.act = act_layer()
        self.fc2 = nn.Conv3d(rd, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


class ContextGating3d(nn.Module):
    """Context gating (Miech et al.) on clip-pooled features; (B, C, T, H, W) -> same shape.

        x -> mean over T,H,W -> linear C->C -> sigmoid -> * x

    SE without the bottleneck: each channel's gate sees every channel's clip-level response.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4), keepdim=True)))


@register_op("se_conv1x3x3")
def se_conv1x3x3(c_in: int, c_out: int, stride: Triple) -> nn.Module:
    """ReLU -> conv 1x3x3 -> BN -> SqueezeExcite3d: a cheap spatial conv with clip-level gating."""
    return nn.Sequential(*conv_bn(c_in, c_out, (1, 3, 3), stride), SqueezeExcite3d(c_out))
