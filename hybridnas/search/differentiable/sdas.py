"""SDAS: fix edges one by one on a schedule while the supernet trains.

After a warm-up with nothing decided, the number of decided edges per cell type rises to all
edges one epoch before the last (so the last epoch trains the chosen ops alone, when there is
room for that; see ``FixSchedule.fraction_after``). At each epoch end the most confident free
edges are fixed to their best op (keeping its trained weights); once a node has two fixed
inputs its other free edges are pruned. Decided edges no longer run their other ops, which is
where the speed-up over DARTS comes from, and once every edge is decided the architecture step
stops too.

The published papers do not give the exact schedule. This one is sound by construction: an
edge is only fixed to an op other than ``none``, a node never keeps more than two inputs, at
most ``max_skips`` skips are fixed per cell type, and the schedule's shape (linear, cosine,
step, or none for plain DARTS) is selectable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hybridnas.config.search import Schedule
from hybridnas.space.cells import edge_list
from hybridnas.space.genotype import CELL_TYPES
from hybridnas.space.supernet import Architecture, best_op

# (arch, cell_type, edge, banned op names) -> index of the op to fix the edge to
OpChooser = Callable[[Architecture, str, int, set[str]], int]


@dataclass
class FixSchedule:
    """How many edges (per cell type) are decided after each epoch.

    ``kind``: linear, cosine (slow start, fast end), step (half at the midpoint, all at the
    end), or none (plain DARTS: nothing fixed during the search). ``decide_at``: the share of
    the epochs between the warm-up and the last one over which fixing is spread: 1.0 decides
    every edge one epoch before the last, 0.5 halfway there (a cheaper search, on alphas
    trained for less).
    """

    epochs: int
    warmup_epochs: int
    kind: Schedule
    decide_at: float

    @classmethod
    def from_config(cls, s: Any) -> FixSchedule:
        """The schedule ``search.*`` (a SearchConfig) asks for; ValueError when impossible."""
        return cls(
            epochs=s.epochs,
            warmup_epochs=s.warmup_epochs,
            kind=s.schedule if s.method == "sdas" else "none",
            decide_at=s.decide_at,
        )

    def __post_init__(self) -> None:
        if self.warmup_epochs < 0 or self.warmup_epochs >= max(self.epochs, 1):
            raise ValueError(
                f"search.warmup_epochs={self.warmup_epochs} must be in [0, search.epochs="
                f"{self.epochs})"
            )
        if not 0.0 < self.decide_at <= 1.0:
            raise ValueError(f"search.decide_at={self.decide_at} must be in (0, 1]")

    def fraction_after(self, epoch: int) -> float:
        """Share of edges decided once epoch ``epoch`` (0-based) has ended."""
        if self.kind == "none" or epoch < self.warmup_epochs:
            return 0.0
        # At decide_at=1 everything is decided one epoch before the end, so the last epoch
        # trains the chosen ops alone (when there is room for that).
        span = max(1, math.ceil(self.decide_at * (self.epochs - 1 - self.warmup_epochs)))
        progress = min(1.0, (epoch - self.warmup_epochs + 1) / span)
        if self.kind == "linear":
            return progress
        if self.kind == "cosine":
            return 0.5 * (1 - math.cos(math.pi * progress))
        return 0.5 if progress < 1.0 else 1.0

    def decided_after(self, epoch: int, num_edges: int) -> int:
        return math.ceil(round(self.fraction_after(epoch) * num_edges, 6))


def edge_confidence(arch: Architecture, cell_type: str, steps: int, kind: str) -> torch.Tensor:
    """(E,) confidence of every edge: top-1 weight (excluding none) or top-1 minus top-2 margin,
    times the edge-normalisation weight when betas are on."""
    weights = arch.alpha_matrix(cell_type).clone()
    if "none" in arch.op_names:
        weights[:, arch.op_names.index("none")] = 0.0
    top = weights.topk(2, dim=1).values
    score = top[:, 0] if kind == "top1" else top[:, 0] - top[:, 1]
    return score * arch.beta_vector(cell_type, steps)


def num_decided(arch: Architecture, cell_type: str) -> int:
    return arch.num_edges - sum(arch.is_free(cell_type, k) for k in range(arch.num_edges))


def fix_edges(
    arch: Architecture,
    *,
    steps: int,
    target: int,
    confidence: str = "top1",
    max_skips: int | None = 2,
    choose_op: OpChooser = best_op,
) -> list[dict]:
    """Decide edges of both cell types until ``target`` are decided in each.

    The edge to decide next is the most confident free one (``confidence`` on the alphas);
    ``choose_op`` picks its op (default: the largest alpha; see ``selection.py`` for the
    perturbation-based choice). Returns one event per decision: ``{"cell", "edge", "from",
    "to", "op", "action"}`` with action "fixed" or "pruned".
    """
    events: list[dict] = []
    edges = edge_list(steps)
    for cell_type in CELL_TYPES:
        while num_decided(arch, cell_type) < min(target, arch.num_edges):
            score = edge_confidence(arch, cell_type, steps, confidence)
            free = [k for k in range(arch.num_edges) if arch.is_free(cell_type, k)]
            k = max(free, key=lambda e: (float(score[e]), -e))
            events += _fix_one(arch, cell_type, edges, k, max_skips, choose_op)
    return events


def fix_confident(
    arch: Architecture,
    *,
    steps: int,
    margin: float,
    max_skips: int | None = 2,
    choose_op: OpChooser = best_op,
) -> list[dict]:
    """Fix, in each cell type, every free edge whose top-1 minus top-2 alpha margin (excluding
    ``none``) is at least ``margin``, most confident first; events as :func:`fix_edges`.

    Called mid-epoch, this lets a confident edge stop running its other ops at once instead of
    waiting for the next epoch end; the schedule still decides the rest.
    """
    events: list[dict] = []
    edges = edge_list(steps)
    for cell_type in CELL_TYPES:
        while True:
            score = edge_confidence(arch, cell_type, steps, "margin")
            free = arch.free_mask(cell_type)
            ready = [k for k in range(arch.num_edges) if free[k] and float(score[k]) >= margin]
            if not ready:
                break
            k = max(ready, key=lambda e: (float(score[e]), -e))
            events += _fix_one(arch, cell_type, edges, k, max_skips, choose_op)
    return events


def _fix_one(arch, cell_type, edges, k, max_skips, choose_op) -> list[dict]:
    banned = {"skip"} if _skip_cap_reached(arch, cell_type, max_skips) else set()
    arch.fix(cell_type, k, choose_op(arch, cell_type, k, banned))
    return [
        _event(arch, cell_type, edges, k, "fixed"),
        *_prune_full_node(arch, cell_type, edges, edges[k][1]),
    ]


def _skip_cap_reached(arch: Architecture, cell_type: str, max_skips: int | None) -> bool:
    if max_skips is None or "skip" not in arch.op_names:
        return False
    skip = arch.op_names.index("skip")
    return sum(arch.state(cell_type, k) == skip for k in range(arch.num_edges)) >= max_skips


def _prune_full_node(arch, cell_type, edges, node) -> list[dict]:
    incoming = [k for k, (_, j) in enumerate(edges) if j == node]
    if sum(arch.state(cell_type, k) >= 0 for k in incoming) < 2:
        return []
    events = []
    for k in incoming:
        if arch.is_free(cell_type, k):
            arch.prune(cell_type, k)
            events.append(_event(arch, cell_type, edges, k, "pruned"))
    return events


def _event(arch, cell_type, edges, k, action) -> dict:
    state = arch.state(cell_type, k)
    return {
        "cell": cell_type,
        "edge": k,
        "from": edges[k][0],
        "to": edges[k][1],
        "op": arch.op_names[state] if state >= 0 else "none",
        "action": action,
    }
