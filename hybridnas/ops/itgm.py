"""EvaNet's iTGM conv: a 2D spatial kernel inflated in time by a learned mixture of Cauchy bumps."""

from __future__ import annotations

import math

import torch
from torch import nn

from hybridnas.ops.layers import ConvBN, Stride3, fast_conv, rebuilt_on_change, same_padding
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
        # Random centres keep the bumps distinct: identical ones would leave the mixing logits
        # without a gradient.
        nn.init.kaiming_uniform_(self.spatial_weight, a=math.sqrt(5))
        # EvaNet: mixing logits ~ truncated N(0, 1), cut at 2 std (TF's truncated_normal default).
        nn.init.trunc_normal_(self.mix_logits, 0.0, 1.0, a=-2.0, b=2.0)
        nn.init.normal_(self.centre_raw, 0.0, 0.5)
        # EvaNet draws raw widths from N(0, 0.1), not 0.5: every bump starts wide (g ~ e^1.5).
        nn.init.normal_(self.width_raw, 0.0, 0.1)

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

    def kernel(self) -> torch.Tensor:
        """``weight()``, built once and reused while no gradient is wanted and no parameter
        has changed (evaluation builds it once, not once a forward pass)."""
        if torch.is_grad_enabled():
            return self.weight()
        return rebuilt_on_change(self, (self,), self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.kernel(), None)

    def _conv_forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        return fast_conv(x, weight, bias, self.stride, self.padding)


class ITGMOp(ConvBN):
    """ReLU -> ITGMConv3d -> BN.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)).
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: Stride3,
        kernel_size: int = 3,
        temporal_length: int = 3,
        num_bumps: int = 4,
    ) -> None:
        super().__init__(
            nn.ReLU(),
            ITGMConv3d(
                c_in,
                c_out,
                kernel_size=kernel_size,
                temporal_length=temporal_length,
                num_bumps=num_bumps,
                stride=stride,
            ),
            nn.BatchNorm3d(c_out, affine=True),
        )


# Long temporal kernels are iTGM's point: parameters stay k^2 Ci Co + N Ci Co + 2N whatever L is.
LONG_LENGTHS: tuple[int, ...] = (5, 7, 11)
LONG_BUMPS: tuple[int, ...] = (2, 4)


def itgm_op_name(kernel_size: int, temporal_length: int, num_bumps: int) -> str:
    """Registry name of an iTGM op, e.g. ``itgm_3x3_l7_n4`` (k x k spatial, L taps, N bumps)."""
    return f"itgm_{kernel_size}x{kernel_size}_l{temporal_length}_n{num_bumps}"


def register_itgm(temporal_length: int, num_bumps: int, kernel_size: int = 3) -> str:
    """Register ``ITGMOp(c_in, c_out, stride)`` at L taps and N bumps; return its op name."""
    name = itgm_op_name(kernel_size, temporal_length, num_bumps)

    def factory(c_in: int, c_out: int, stride: Stride3) -> nn.Module:
        return ITGMOp(c_in, c_out, stride, kernel_size, temporal_length, num_bumps)

    register_op(name)(factory)
    return name


@register_op("itgm_3x3")
def itgm_3x3(c_in: int, c_out: int, stride: Stride3) -> nn.Module:
    """The original short op (L=3, N=4), kept under its old name for saved genotypes."""
    return ITGMOp(c_in, c_out, stride, kernel_size=3, temporal_length=3, num_bumps=4)


LONG_ITGM_OPS: list[str] = [register_itgm(t, n) for t in LONG_LENGTHS for n in LONG_BUMPS]
