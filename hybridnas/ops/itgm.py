"""EvaNet's iTGM conv: a 2D spatial kernel inflated in time by a learned mixture of Cauchy bumps."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.ops.layers import Stride3, same_padding
from hybridnas.ops.registry import normalize_stride, register_op


class ITGMConv3d(nn.Module):
    """3D conv whose L x k x k kernel is a k x k spatial kernel times a temporal profile.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw))

    For N bumps with raw centres ĉ and widths ĝ (shared by all channel pairs)::

        c_n = (L-1)(tanh(ĉ_n)+1)/2,   g_n = exp(1.5 - 2|tanh(ĝ_n)|)
        K_n[t] ∝ 1 / (pi g_n ((t - c_n)/g_n)^2 + 1),   sum_t K_n[t] = 1
        profile[o,i,t] = sum_n softmax(a[o,i])_n K_n[t]
        weight[o,i,t,y,x] = profile[o,i,t] * spatial[o,i,y,x]

    Parameters: k^2 Ci Co + N Ci Co + 2N, whatever L is; no bias.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        kernel_size: int = 3,
        temporal_length: int = 3,
        num_bumps: int = 4,
        stride: Stride3 = 1,
    ) -> None:
        super().__init__()
        self.stride = normalize_stride(stride)
        self.padding = same_padding((temporal_length, kernel_size, kernel_size))
        self.temporal_length = temporal_length
        self.spatial_weight = nn.Parameter(torch.empty(c_out, c_in, kernel_size, kernel_size))
        self.mix_logits = nn.Parameter(torch.empty(c_out, c_in, num_bumps))
        self.centre_raw = nn.Parameter(torch.empty(num_bumps))
        self.width_raw = nn.Parameter(torch.empty(num_bumps))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Distinct random bumps: identical ones would leave the mixing logits without a gradient.
        nn.init.kaiming_uniform_(self.spatial_weight, a=math.sqrt(5))
        nn.init.normal_(self.mix_logits, 0.0, 1.0)
        nn.init.normal_(self.centre_raw, 0.0, 0.5)
        nn.init.normal_(self.width_raw, 0.0, 0.5)

    def bumps(self) -> torch.Tensor:
        """The N normalised Cauchy bumps, shape (N, L)."""
        raw = self.centre_raw
        t = torch.arange(self.temporal_length, dtype=raw.dtype, device=raw.device)
        centre = (self.temporal_length - 1) * (torch.tanh(raw) + 1) / 2
        width = torch.exp(1.5 - 2 * torch.tanh(self.width_raw).abs())
        z = (t - centre[:, None]) / width[:, None]
        k = 1 / (math.pi * width[:, None] * z**2 + 1)
        return k / k.sum(dim=1, keepdim=True)

    def temporal_profile(self) -> torch.Tensor:
        """Per channel pair temporal profile, shape (C_out, C_in, L); each row sums to 1."""
        return torch.softmax(self.mix_logits, dim=-1) @ self.bumps()

    def weight(self) -> torch.Tensor:
        """The inflated kernel, shape (C_out, C_in, L, k, k)."""
        return self.temporal_profile()[..., None, None] * self.spatial_weight[:, :, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, self.weight(), stride=self.stride, padding=self.padding)


class ITGMOp(nn.Sequential):
    """ReLU -> ITGMConv3d -> BN.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)).
    """

    def __init__(
        self, c_in: int, c_out: int, stride: Stride3, kernel_size: int = 3, temporal_length: int = 3
    ) -> None:
        super().__init__(
            nn.ReLU(),
            ITGMConv3d(
                c_in,
                c_out,
                kernel_size=kernel_size,
                temporal_length=temporal_length,
                stride=stride,
            ),
            nn.BatchNorm3d(c_out, affine=True),
        )


@register_op("itgm_3x3")
def itgm_3x3(c_in: int, c_out: int, stride: Stride3) -> nn.Module:
    return ITGMOp(c_in, c_out, stride, kernel_size=3, temporal_length=3)
