"""DARTS-style cells for clips: the mixed search cell and the fixed cell a genotype builds.

Both cell kinds share one skeleton::

    s0 (B, C_pp, T0, H0, W0) --preprocess0--+          s1 (B, C_p, T, H, W) --preprocess1--+
                                            v                                            v
                                          node 0                                      node 1
              node j = sum over incoming edges (i -> j) of op_ij(node i),   j = 2 .. 2 + steps - 1
              output = concat(nodes in ``concat``) on channels -> (B, len(concat) * C, T', H', W')

A reduction cell applies ``reduction_stride`` on the edges leaving nodes 0 and 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.ops import create_op
from hybridnas.ops.layers import Activation, ConvBN, FastConv3d, Norm
from hybridnas.space.genotype import CellSpec

FREE, PRUNED = -1, -2


def edge_list(steps: int) -> list[tuple[int, int]]:
    """DARTS edge order: (from_node, to_node) for every node j >= 2 and every earlier node i."""
    return [(i, j) for j in range(2, 2 + steps) for i in range(j)]


class ReLUConvBN(ConvBN):
    """ReLU -> 1x1x1 Conv3d -> BN: the preprocessing that aligns a cell input to C channels
    (``activation()`` and ``norm(c_out)`` in place of ReLU and BN)."""

    def __init__(
        self, c_in: int, c_out: int, norm: Norm = nn.BatchNorm3d, activation: Activation = nn.ReLU
    ) -> None:
        super().__init__(activation(), FastConv3d(c_in, c_out, 1, bias=False), norm(c_out))


def make_preprocess(
    c_pp: int,
    c_p: int,
    c: int,
    reduction_prev: bool,
    stride: tuple[int, int, int],
    norm: Norm = nn.BatchNorm3d,
    activation: Activation = nn.ReLU,
) -> tuple[nn.Module, nn.Module]:
    """Preprocessing of both cell inputs; s0 is reduced when the previous cell reduced."""
    layers = {"norm": norm, "activation": activation}
    pre0 = (
        create_op("skip", c_pp, c, stride, **layers)
        if reduction_prev
        else ReLUConvBN(c_pp, c, **layers)
    )
    return pre0, ReLUConvBN(c_p, c, **layers)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(B, C, T, H, W) -> same shape with channels interleaved across ``groups`` (PC-DARTS)."""
    b, c, t, h, w = x.shape
    return x.view(b, groups, c // groups, t, h, w).transpose(1, 2).reshape(b, c, t, h, w)


class MixedOp(nn.Module):
    """All candidate ops on one edge, mixed by architecture weights.

    ``forward(x, weights)``: x (B, C, T, H, W), weights (num_ops,) summing to 1 ->
    (B, C, T', H', W'). With partial channels (``partial_k`` > 1) only C / k channels go
    through the ops; the rest bypass (pooled when strided) and a channel shuffle mixes them.
    Once ``fix(k)`` is called only op k runs, with weight 1: the other ops are never called,
    and their parameters get no gradient, so optimizers holding them simply skip them.
    """

    def __init__(
        self,
        channels: int,
        stride: tuple[int, int, int],
        op_names: list[str],
        partial_k: int = 1,
        norm: Norm = nn.BatchNorm3d,
        activation: Activation = nn.ReLU,
    ) -> None:
        super().__init__()
        if channels % partial_k:
            raise ValueError(f"channels {channels} not divisible by partial_channels {partial_k}")
        self.op_names = list(op_names)
        self.stride = stride
        self.partial_k = partial_k
        mixed = channels // partial_k
        self.ops = nn.ModuleList(
            create_op(name, mixed, mixed, stride, norm, activation) for name in op_names
        )
        self.state = FREE

    @property
    def is_free(self) -> bool:
        return self.state == FREE

    def _run_ops(self, x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        if self.state >= 0:
            return self.ops[self.state](x)
        out = None
        for w, name, op in zip(weights, self.op_names, self.ops, strict=True):
            if name == "none":  # contributes exactly zero: skip the work
                continue
            y = w * op(x)
            out = y if out is None else out + y
        if out is None:  # every candidate is "none"
            out = self.ops[0](x)
        return out

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        if self.partial_k == 1:
            return self._run_ops(x, weights)
        mixed = x.shape[1] // self.partial_k
        y = self._run_ops(x[:, :mixed], weights)
        rest = x[:, mixed:]
        if self.stride != (1, 1, 1):
            rest = F.max_pool3d(rest, self.stride, self.stride, ceil_mode=True)
        return channel_shuffle(torch.cat([y, rest], dim=1), self.partial_k)


class SearchCell(nn.Module):
    """A cell whose every edge is a ``MixedOp``.

    ``forward(s0, s1, weights, edge_weights)``: weights (E, num_ops) softmaxed architecture
    weights, edge_weights (E,) or None (edge normalisation) -> (B, steps * C, T', H', W').
    """

    def __init__(
        self,
        *,
        steps: int,
        c_pp: int,
        c_p: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
        reduction_stride: tuple[int, int, int],
        op_names: list[str],
        partial_k: int = 1,
        norm: Norm = nn.BatchNorm3d,
        activation: Activation = nn.ReLU,
    ) -> None:
        super().__init__()
        self.steps, self.reduction = steps, reduction
        layers = {"norm": norm, "activation": activation}
        self.pre0, self.pre1 = make_preprocess(
            c_pp, c_p, c, reduction_prev, reduction_stride, **layers
        )
        self.edges = edge_list(steps)
        self.mixed_ops = nn.ModuleList(
            MixedOp(c, reduction_stride if reduction and i < 2 else (1, 1, 1), op_names, partial_k,
                    **layers)
            for i, _ in self.edges
        )  # fmt: skip

    def forward(
        self,
        s0: torch.Tensor,
        s1: torch.Tensor,
        weights: torch.Tensor,
        edge_weights: torch.Tensor | None = None,
    ) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for j in range(2, 2 + self.steps):
            total = None
            for k, (i, jj) in enumerate(self.edges):
                op = self.mixed_ops[k]
                if jj != j or op.state == PRUNED:
                    continue
                y = op(states[i], weights[k] if op.is_free else None)
                if edge_weights is not None and op.is_free:
                    y = edge_weights[k] * y
                total = y if total is None else total + y
            states.append(total)
        return torch.cat(states[2:], dim=1)


class Cell(nn.Module):
    """A fixed cell built from a ``CellSpec``: one op per edge.

    ``forward(s0, s1)`` -> (B, len(spec.concat) * C, T', H', W'). ``drop_prob`` applies
    DARTS drop-path on non-identity edges during training.

    With ``connection_weights`` (AssembleNet) every edge carries a learned scalar logit and a
    node sums its inputs weighted by their sigmoids: node j = sum_i sigmoid(w_ij) * op_ij(node
    i). The logits start at 0 (weight 0.5 per input); ``connection_strengths()`` reads them.
    """

    def __init__(
        self,
        spec: CellSpec,
        *,
        c_pp: int,
        c_p: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
        reduction_stride: tuple[int, int, int],
        norm: Norm = nn.BatchNorm3d,
        activation: Activation = nn.ReLU,
        connection_weights: bool = False,
    ) -> None:
        super().__init__()
        self.spec = spec
        layers = {"norm": norm, "activation": activation}
        self.pre0, self.pre1 = make_preprocess(
            c_pp, c_p, c, reduction_prev, reduction_stride, **layers
        )
        self.ops = nn.ModuleList(
            create_op(op, c, c, reduction_stride if reduction and i < 2 else (1, 1, 1), **layers)
            for i, _, op in spec.edges
        )
        self.connection_logits = (
            nn.Parameter(torch.zeros(len(spec.edges))) if connection_weights else None
        )
        self.drop_prob = 0.0
        nodes = sorted({j for _, j, _ in spec.edges})
        # per node in order, its incoming edges: (edge index, from node, op name)
        self._schedule = [
            (j, [(k, i, name) for k, (i, jj, name) in enumerate(spec.edges) if jj == j])
            for j in nodes
        ]

    def connection_strengths(self) -> torch.Tensor | None:
        """(E,) sigmoid connection weights in edge order, or None without connection weights."""
        if self.connection_logits is None:
            return None
        return torch.sigmoid(self.connection_logits.detach())

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = {0: self.pre0(s0), 1: self.pre1(s1)}
        gates = None if self.connection_logits is None else torch.sigmoid(self.connection_logits)
        for j, inputs in self._schedule:
            total = None
            for k, i, name in inputs:
                y = self.ops[k](states[i])
                if gates is not None:
                    y = gates[k] * y
                if self.training and self.drop_prob > 0 and name != "skip":
                    y = drop_path(y, self.drop_prob)
                total = y if total is None else total + y
            states[j] = total
        return torch.cat([states[n] for n in self.spec.concat], dim=1)


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and rescale the rest (DARTS)."""
    keep = 1.0 - drop_prob
    mask = x.new_empty(x.shape[0], 1, 1, 1, 1).bernoulli_(keep)
    return x * mask / keep
