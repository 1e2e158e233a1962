"""Building blocks shared by the op families: conv + BN units and a fast temporal conv."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.ops.choice import may_choose, run_fastest

T = TypeVar("T")
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


def _plain_conv(x, weight, bias, stride, padding, dilation, groups) -> torch.Tensor:
    conv = F.conv3d if x.dim() == 5 else F.conv2d
    return conv(x, weight, bias, stride, padding, dilation, groups)


def _onednn_conv(x, weight, bias, stride, padding, dilation, groups) -> torch.Tensor:
    return _MKLDNN_CONV(x.contiguous(), weight, bias, padding, stride, dilation, groups)


# the overload itself: calling it skips the ~2 us overload resolution of torch.ops.aten.<op>
_MKLDNN_CONV = torch.ops.aten.mkldnn_convolution.default


def _pointwise_matmul(x, weight, bias, stride, padding, dilation, groups) -> torch.Tensor:
    """An unstrided 1x1(x1) conv of one clip as one matrix product (C_out, C_in) @ (C_in, N)."""
    flat = x.reshape(x.shape[1], -1)
    w = weight.reshape(weight.shape[0], -1)
    y = w @ flat if bias is None else torch.addmm(bias[:, None], w, flat)
    return y.view(1, -1, *x.shape[2:])


def _conv_candidates(weight: torch.Tensor, stride, padding, groups) -> tuple:
    candidates: tuple = (_plain_conv,)
    if torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
        candidates += (_onednn_conv,)
    pointwise = weight.shape[2:].numel() == 1 and groups == 1
    if pointwise and all(s == 1 for s in stride) and not any(padding):
        candidates += (_pointwise_matmul,)
    return candidates


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
    one clip (``choice.may_choose``) the first calls of each shape try the reference kernel,
    oneDNN and, for a pointwise conv, the one matrix product it is, and the fastest is kept.
    Outputs agree to float rounding (<= 1e-5); training and batches take PyTorch's choice.
    """
    if not may_choose(x):  # training and batches: straight to PyTorch, nothing built
        return _plain_conv(x, weight, bias, stride, padding, dilation, groups)
    args = (x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups)
    key = ("conv", x.shape, weight.shape, *args[3:])
    return run_fastest(key, lambda: _conv_candidates(weight, args[3], args[4], groups), *args)


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
    """A (k, 1, 1) Conv3d computed on a (B, C, T, H*W) view: as a (k, 1) Conv2d or, for one
    clip in inference, as one matrix product (``temporal_matmul``) where that is faster.

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
        return self._conv_forward(x, self.weight, self.bias)

    def _conv_forward(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        st, sh, sw = self.stride
        if sh > 1 or sw > 1:
            x = x[:, :, :, ::sh, ::sw]
        args = (x, weight, bias, st, self.dilation[0], self.groups)
        if st == 1 and self.groups == 1 and may_choose(x):
            key = ("temporal", x.shape, weight.shape, self.dilation[0])
            return run_fastest(key, lambda: (temporal_conv2d, temporal_matmul), *args)
        return temporal_conv2d(*args)


def temporal_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    dilation: int,
    groups: int,
) -> torch.Tensor:
    """A (k, 1, 1) conv with 'same' padding as a (k, 1) Conv2d over (B, C, T, H*W).

    (B, C_in, T, H, W), weight (C_out, C_in/groups, k, 1, 1) -> (B, C_out, ceil(T/stride), H, W).

    A dilation d with stride 1 folds time into phases: frame t = d*t' + p, and the taps
    t - d, t, t + d are t' - 1, t', t' + 1 of phase p. So the clip, zero-padded to a multiple
    of d frames, is viewed (no copy) as (B, C, T/d, d*H*W) and convolved without dilation,
    which PyTorch runs on its fast path (a dilated one falls to ``slow_conv_dilated2d``, 4.5x
    slower at the default shapes).
    """
    b, c, t, h, w = x.shape
    pad = dilation * (weight.shape[2] - 1) // 2
    w2d = weight.squeeze(-1)
    if dilation > 1 and stride == 1:
        extra = -t % dilation
        if extra:
            x = F.pad(x, (0, 0, 0, 0, 0, extra))
        folded = x.reshape(b, c, (t + extra) // dilation, dilation * h * w)
        y = fast_conv(folded, w2d, bias, (1, 1), (pad // dilation, 0), (1, 1), groups)
        return y.view(b, y.shape[1], t + extra, h, w)[:, :, :t]
    flat = x.reshape(b, c, t, h * w)
    y = fast_conv(flat, w2d, bias, (stride, 1), (pad, 0), (dilation, 1), groups)
    return y.view(b, y.shape[1], y.shape[2], h, w)


def temporal_matmul(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int,
    dilation: int,
    groups: int,
) -> torch.Tensor:
    """``temporal_conv2d`` for one clip, stride 1, groups 1, as one matrix product: every
    tap's (C_out, C_in) matrix stacked, times the clip's (C_in, T*H*W) frames, then the taps'
    outputs summed at their frame offsets (tap i reads frame f + (i - k//2) * d for output
    frame f). (1, C_in, T, H, W) -> (1, C_out, T, H, W)."""
    if x.shape[0] != 1 or stride != 1 or groups != 1:
        raise ValueError("temporal_matmul takes one clip, stride 1, groups 1")
    _, c, t, h, w = x.shape
    c_out, k = weight.shape[0], weight.shape[2]
    taps = weight.reshape(c_out, c, k).permute(2, 0, 1).reshape(k * c_out, c)
    y = (taps @ x.reshape(c, t * h * w)).view(k, c_out, t, h * w)
    out = y[k // 2]
    for i in range(k):
        offset = (i - k // 2) * dilation
        if offset < 0 and -offset < t:
            out[:, -offset:] += y[i, :, : t + offset]
        elif 0 < offset < t:
            out[:, : t - offset] += y[i, :, offset:]
    if bias is not None:
        out += bias[:, None, None]
    return out.view(1, c_out, t, h, w)


class ConvBN(nn.Sequential):
    """[activation ->] conv -> norm, as an ``nn.Sequential`` (so state dicts keep their keys).

    (B, C_in, T, H, W) -> (B, C_out, T', H', W'). In inference (eval mode, no gradient) a
    BatchNorm3d is folded into the conv: weight * gamma / sigma, bias beta - mu * gamma /
    sigma, built once while no parameter or statistic changes. One conv call then does the
    work of two, the same math up to float rounding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled():
            return super().forward(x)
        *first, conv, norm = self._modules.values()
        if not foldable_norm(norm):
            return super().forward(x)
        for layer in first:
            x = torch.relu(x) if _bare_relu(layer) else layer(x)
        return conv._conv_forward(x, *self._folded(conv, norm))

    def _folded(self, conv: nn.Module, norm: nn.BatchNorm3d) -> tuple[torch.Tensor, torch.Tensor]:
        def fold() -> tuple[torch.Tensor, torch.Tensor]:
            kernel = conv.kernel() if hasattr(conv, "kernel") else conv.weight  # iTGM builds one
            return fold_norm(kernel, getattr(conv, "bias", None), norm)

        return rebuilt_on_change(self, (conv, norm), fold)


def _bare_relu(layer: nn.Module) -> bool:
    """A ReLU without hooks, which can be applied without the module call (whose hooks
    machinery costs as much as a small ReLU itself)."""
    return type(layer) is nn.ReLU and not (layer._forward_hooks or layer._forward_pre_hooks)


def rebuilt_on_change(
    owner: nn.Module, sources: tuple[nn.Module, ...], build: Callable[[], T]
) -> T:
    """``build()``, kept on ``owner`` and reused while no parameter or buffer of ``sources``
    is replaced or written in place (``state_key``): what inference derives from weights
    (a BN-folded conv, iTGM's inflated kernel) is built once, not once a forward pass."""
    key = state_key(*sources)
    cached = getattr(owner, "_state_cache", None)
    if cached is None or cached[0] != key:
        cached = owner._state_cache = (key, build())
    return cached[1]


def state_key(*modules: nn.Module) -> tuple:
    """Where and at which version every parameter and buffer of ``modules`` is: it changes
    whenever one is replaced or written in place (optimizer step, load_state_dict)."""
    return tuple(
        (t.data_ptr(), t._version)
        for m in modules
        for t in (*m._parameters.values(), *m._buffers.values())
        if t is not None
    )


def fold_norm(
    weight: torch.Tensor, bias: torch.Tensor | None, norm: nn.BatchNorm3d
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a conv followed by ``norm`` in eval mode, as one conv: weight *
    gamma / sigma, bias (b - mu) * gamma / sigma + beta. weight (C_out, ...) -> same shape."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    folded = weight * scale.view(-1, *[1] * (weight.dim() - 1))
    shift = norm.bias - norm.running_mean * scale
    return folded, shift if bias is None else shift + bias * scale


def foldable_norm(norm: nn.Module) -> bool:
    """Whether ``norm`` is a BatchNorm3d with an affine map and running statistics."""
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
