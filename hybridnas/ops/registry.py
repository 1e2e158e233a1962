"""Registry of candidate operations: name -> factory(c_in, c_out, stride) -> nn.Module.

Every op maps a clip tensor (B, c_in, T, H, W) to (B, c_out, ceil(T/st), ceil(H/sh), ceil(W/sw))
where ``stride = (st, sh, sw)``. Cells rely on this rule to sum edge outputs.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from hybridnas.ops.layers import Activation, Norm, swap_layers

Stride = int | tuple[int, int, int]
OpFactory = Callable[[int, int, tuple[int, int, int]], nn.Module]

_OPS: dict[str, OpFactory] = {}


def normalize_stride(stride: Stride) -> tuple[int, int, int]:
    """Turn an int or a (t, h, w) sequence into a (t, h, w) tuple of positive ints."""
    if isinstance(stride, int):
        stride = (stride, stride, stride)
    stride = tuple(int(s) for s in stride)
    if len(stride) != 3 or any(s < 1 for s in stride):
        raise ValueError(f"stride must be a positive int or (t, h, w), got {stride!r}")
    return stride  # type: ignore[return-value]


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Decorator: register ``factory(c_in, c_out, stride)`` under ``name``."""

    def wrap(factory: OpFactory) -> OpFactory:
        if name in _OPS:
            raise ValueError(f"op {name!r} is already registered")
        _OPS[name] = factory
        return factory

    return wrap


def create_op(
    name: str,
    c_in: int,
    c_out: int,
    stride: Stride = 1,
    norm: Norm = nn.BatchNorm3d,
    activation: Activation = nn.ReLU,
) -> nn.Module:
    """Build the op ``name`` mapping c_in to c_out channels with the given stride; its
    BatchNorm3d and ReLU layers become ``norm(channels)`` and ``activation()``."""
    if name not in _OPS:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(list_ops())}")
    return swap_layers(_OPS[name](c_in, c_out, normalize_stride(stride)), norm, activation)


def list_ops() -> list[str]:
    """All registered op names, sorted."""
    return sorted(_OPS)


def is_op(name: str) -> bool:
    return name in _OPS
