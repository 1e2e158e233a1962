"""Registry of candidate operations: name -> factory(c_in, c_out, stride) -> nn.Module.

Every op maps a clip tensor (B, c_in, T, H, W) to (B, c_out, ceil(T/st), ceil(H/sh), ceil(W/sw))
where ``stride = (st, sh, sw)``. Cells rely on this rule to sum edge outputs.

A multi-branch edge (NSE) names two or more distinct registered ops joined by ``+``
(``"conv3d_3x3x3+p3d_c"``): ``create_op`` builds a ``MultiBranch`` of them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hybridnas.ops.layers import Activation, Norm, swap_layers

BRANCH_SEP = "+"

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
    BatchNorm3d and ReLU layers become ``norm(channels)`` and ``activation()``. A multi-branch
    name (``a+b``) builds a ``MultiBranch`` of its ops."""
    if is_multi_branch(name):
        if not is_edge_op(name):
            raise ValueError(f"multi-branch op {name!r}: needs 2+ distinct registered ops, no none")
        parts = name.split(BRANCH_SEP)
        return MultiBranch([create_op(p, c_in, c_out, stride, norm, activation) for p in parts])
    if name not in _OPS:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(list_ops())}")
    return swap_layers(_OPS[name](c_in, c_out, normalize_stride(stride)), norm, activation)


def list_ops() -> list[str]:
    """All registered op names, sorted."""
    return sorted(_OPS)


def is_op(name: str) -> bool:
    return name in _OPS


def is_multi_branch(name: str) -> bool:
    return BRANCH_SEP in name


def is_edge_op(name: str) -> bool:
    """A registered op, or 2+ distinct registered ops other than ``none`` joined by ``+``."""
    if not is_multi_branch(name):
        return is_op(name)
    parts = name.split(BRANCH_SEP)
    return len(set(parts)) == len(parts) and all(is_op(p) and p != "none" for p in parts)


class MultiBranch(nn.Module):
    """Several ops on one edge mixed by learned, softmax-normalised weights (NSE's multi-branch
    edge): (B, c_in, T, H, W) -> sum_k softmax(logits)_k * op_k(x), the shape every op gives.
    The logits start at 0 (equal weights)."""

    def __init__(self, ops: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(ops)
        self.logits = nn.Parameter(torch.zeros(len(ops)))

    def branch_weights(self) -> torch.Tensor:
        """(num_branches,) the normalised weights, summing to 1."""
        return torch.softmax(self.logits, dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.branch_weights()
        out = weights[0] * self.branches[0](x)
        for w, op in zip(weights[1:], self.branches[1:], strict=True):
            out = out + w * op(x)
        return out
