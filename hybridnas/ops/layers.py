"""Building blocks shared by the op families: conv + BN units and a fast temporal conv."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

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


#: Per call signature, whether oneDNN beat PyTorch's reference kernel on this machine.
_ONEDNN_WINS: dict[tuple, bool] = {}


def _plain_conv(x, weight, bias, stride, padding, dilation, groups) -> torch.Tensor:
    conv = F.conv3d if x.dim() == 5 else F.conv2d
    return conv(x, weight, bias, stride, padding, dilation, groups)


def _onednn_conv(x, weight, bias, stride, padding, dilation, groups) -> torch.Tensor:
    return torch.ops.aten.mkldnn_convolution(
        x.contiguous(), weight, bias, padding, stride, dilation, groups
    )


def _onednn_may_pay(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether oneDNN is worth trying for this call: a batch of one clip (PyTorch picks oneDNN
    itself for larger batches), float32 on the CPU, a kernel of more than one tap (pointwise
    kernels are fastest on the reference path), no gradient wanted, and no dispatch mode
    (FLOP counting, fake tensors) or tracing (torch.export, ONNX) that must see
    ``aten.convolution``."""
    return (
        x.shape[0] == 1
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.shape[2:].numel() > 1
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and _get_current_dispatch_mode() is None
    )


def _onednn_wins(args: tuple) -> bool:
    """Time both kernels on this call (interleaved, 5 rounds of 2 calls, the best round of
    each: the minimum is what load noise inflates least) and remember the winner for its
    signature, as cuDNN's benchmark mode does."""
    x, weight = args[0], args[1]
    key = (tuple(x.shape), tuple(weight.shape), *args[3:], torch.get_num_threads())
    if key not in _ONEDNN_WINS:
        best = {_plain_conv: math.inf, _onednn_conv: math.inf}
        for _ in range(5):
            for conv in best:
                start = time.perf_counter()
                conv(*args)
                conv(*args)
                best[conv] = min(best[conv], time.perf_counter() - start)
        _ONEDNN_WINS[key] = best[_onednn_conv] < best[_plain_conv]
    return _ONEDNN_WINS[key]


def fast_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: tuple[int, ...] = (1, 1, 1),
    padding: tuple[int, ...] = (0, 0, 0),
    dilation: tuple[int, ...] = (1, 1, 1),
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv3d`` / ``F.conv2d`` (chosen by ``x.dim()``), the same math on the faster kernel.

    PyTorch's CPU dispatcher sends a batch of one clip with a <= 3-tap kernel and fewer than
    20480 N*C*T*H elements to its reference kernels (``slow_conv3d_forward``), which measured
    2-6x slower than oneDNN on some shapes of the default space and faster on others (oneDNN
    costs ~40 us a call before any work; ``python tools/bench.py ops``). So in inference on
    one clip, the first call of each shape times both and keeps the faster one. Outputs agree
    to float rounding (<= 1e-5); training and larger batches take PyTorch's own choice.
    """
    args = (x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups)
    if _onednn_may_pay(x, weight) and _onednn_wins(args):
        return _onednn_conv(*args)
    return _plain_conv(*args)


class FastConv3d(nn.Conv3d):
    """``nn.Conv3d`` computed through ``fast_conv``: same parameters, state dict and outputs.

    (B, C_in, T, H, W) -> (B, C_out, T', H', W') with nn.Conv3d's shape rule.
    """

    def _conv_forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        if self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super()._conv_forward(x, weight, bias)
        return fast_conv(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


class TemporalConv3d(nn.Conv3d):
    """A (k, 1, 1) Conv3d computed as a (k, 1) Conv2d on a (B, C, T, H*W) view.

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)).

    The weight keeps the Conv3d shape (C_out, C_in/groups, k, 1, 1), so state dicts, parameter
    counts and ``isinstance(m, nn.Conv3d)`` are unchanged; only the kernel call differs, because
    PyTorch's CPU Conv3d runs temporal-only kernels several times below its FLOP rate. A spatial
    stride is applied by subsampling first, which is exact for a 1x1 spatial kernel.

    A dilation d with temporal stride 1 folds time into phases: frame t = d*t' + p, and the
    taps t - d, t, t + d are t' - 1, t', t' + 1 of phase p. So the clip, zero-padded to a
    multiple of d frames, is viewed (no copy) as (B, C, T/d, d*H*W) and convolved without
    dilation, which PyTorch runs on its fast path (a dilated one falls to
    ``slow_conv_dilated2d``, 4.5x slower at the default shapes).
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
        return self._conv_forward(x, self.weight, self.bias)

    def _conv_forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        st, sh, sw = self.stride
        if sh > 1 or sw > 1:
            x = x[:, :, :, ::sh, ::sw]
        b, c, t, h, w = x.shape
        d = self.dilation[0]
        if d > 1 and st == 1:
            return self._phase_folded(x, weight, bias, d)
        y = F.conv2d(
            x.reshape(b, c, t, h * w),
            weight.squeeze(-1),
            bias,
            stride=(st, 1),
            padding=(self.padding[0], 0),
            dilation=(d, 1),
            groups=self.groups,
        )
        return y.view(b, y.shape[1], y.shape[2], h, w)

    def _phase_folded(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, d: int
    ) -> torch.Tensor:
        b, c, t, h, w = x.shape
        extra = -t % d
        if extra:
            x = F.pad(x, (0, 0, 0, 0, 0, extra))
        folded = x.reshape(b, c, (t + extra) // d, d * h * w)
        y = F.conv2d(
            folded,
            weight.squeeze(-1),
            bias,
            padding=(self.padding[0] // d, 0),
            groups=self.groups,
        )
        return y.view(b, y.shape[1], t + extra, h, w)[:, :, :t]


class ConvBN(nn.Sequential):
    """[activation ->] conv -> norm, as an ``nn.Sequential`` (so state dicts keep their keys).

    (B, C_in, T, H, W) -> (B, C_out, T', H', W'). In inference (eval mode, no gradient) a
    BatchNorm3d is folded into the conv: weight * gamma / sigma, bias beta - mu * gamma /
    sigma, built once while no parameter or statistic changes. One conv call then does the
    work of two, the same math up to float rounding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, norm = self[-2], self[-1]
        if self.training or torch.is_grad_enabled() or not _foldable(norm):
            return super().forward(x)
        if len(self) == 3:
            x = self[0](x)
        return conv._conv_forward(x, *self._folded(conv, norm))

    def _folded(self, conv: nn.Module, norm: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
        tensors = (*conv.parameters(), norm.running_mean, norm.running_var, *norm.parameters())
        key = tuple((t.data_ptr(), t._version) for t in tensors)
        cached = getattr(self, "_folded_cache", None)
        if cached is None or cached[0] != key:
            kernel = conv.kernel() if hasattr(conv, "kernel") else conv.weight  # iTGM builds one
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
            weight = kernel * scale.view(-1, *[1] * (kernel.dim() - 1))
            bias = norm.bias - norm.running_mean * scale
            if getattr(conv, "bias", None) is not None:
                bias = bias + conv.bias * scale
            self._folded_cache = cached = (key, (weight, bias))
        return cached[1]


def _foldable(norm: nn.Module) -> bool:
    return type(norm) is nn.BatchNorm3d and norm.affine and norm.running_var is not None


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
) -> ConvBN:
    """DARTS unit ReLU -> Conv3d (no bias) -> BN; temporal-only kernels use TemporalConv3d.
    ``norm(channels)`` and ``activation()`` replace BN and ReLU (as pytorchvideo's builders).

    (B, C_in, T, H, W) -> (B, C_out, ceil(T/st), ceil(H/sh), ceil(W/sw)) for odd kernels.
    """
    if kernel[1:] == (1, 1) and kernel[0] > 1 and dilation[1:] == (1, 1):
        conv: nn.Module = TemporalConv3d(c_in, c_out, kernel[0], stride, dilation[0], groups)
    else:
        conv = FastConv3d(
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
    return ConvBN(*layers, conv, norm(c_out))


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
