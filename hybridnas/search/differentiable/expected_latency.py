"""The differentiable stage's latency term: its table, the supernet's expected latency, and what a
genotype's meta records of it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hybridnas.config import SearchRun
from hybridnas.engine.distributed import DistContext, barrier
from hybridnas.measure.latency_parts import (
    cell_sites,
    edge_input,
    head_part,
    op_key,
    shape_key,
    skeleton_parts,
    space_parts,
    stem_parts,
)
from hybridnas.measure.latency_table import LatencyTable, open_table
from hybridnas.space.cells import PRUNED, edge_list
from hybridnas.space.genotype import CELL_TYPES, Genotype
from hybridnas.space.macro import MacroSpec
from hybridnas.space.supernet import SupernetConfig


def search_latency_table(cfg: SearchRun, ctx: DistContext, sc: SupernetConfig) -> LatencyTable:
    """The run's latency table (``search.latency_table`` or this device's cached one), holding
    every part of the space: rank 0 measures what it lacks (with a progress bar) and every rank
    then reads the same file, so all ranks and every rerun see the same numbers."""
    s = cfg.search
    table = open_table(ctx.device, s.latency_threads, path=s.latency_table)
    if ctx.is_main:
        new = table.ensure(space_parts([sc.macro], sc.op_names, sc.steps), progress=True)
        if new:
            print(f"[hybridnas] latency table: measured {new} parts into {table.path}")
    barrier(ctx)
    return open_table(ctx.device, s.latency_threads, path=table.path)


def latency_meta(st: Any, genotype: Genotype) -> dict:
    """What genotype meta records of the latency term: target, prediction, the table's key
    (``st``: the differentiable stage's ``SearchState``)."""
    table = st.latency_table
    return {
        "target_ms": st.cfg.search.latency_target_ms,
        "predicted_ms": round(table.predict_ms(genotype), 4),
        "table": table.digest,
        "threads": table.key["threads"],
    }


@dataclass(frozen=True)
class ExpectedLatency:
    """Differentiable expected ms per clip of the network a supernet derives (FBNet /
    ProxylessNAS): the fixed parts plus, per edge, softmax(alpha) . (its ops' table ms,
    summed over the cells of its type), each node's edges scaled to the two inputs a derived
    node keeps (x min(2, n) / n for n edges not pruned)."""

    fixed_ms: float
    costs: dict[str, torch.Tensor]  # cell type -> (E, num_ops) ms
    edges: tuple[tuple[int, int], ...]

    @classmethod
    def for_space(
        cls, table: LatencyTable, macro: MacroSpec, op_names: Sequence[str], steps: int
    ) -> ExpectedLatency:
        """Measure what the table lacks of this space (every concat size), then sum it up."""
        table.ensure(space_parts([macro], op_names, steps))
        edges = tuple(edge_list(steps))
        sites = cell_sites(macro, (steps, steps))
        fixed = stem_parts(macro) + [head_part(macro, sites[-1], steps)]
        costs = {t: torch.zeros(len(edges), len(op_names), dtype=torch.float64) for t in CELL_TYPES}
        for site in sites:
            adds = [f"add:{site.c}:{shape_key(site.out)}"] * steps
            fixed += skeleton_parts(macro, site, steps) + adds
            cost = costs["reduce" if site.reduction else "normal"]
            for k, (i, _) in enumerate(edges):
                stride, shape = edge_input(site, i, macro)
                for o, op in enumerate(op_names):
                    cost[k, o] += table.part_ms(op_key(op, site.c, site.c, stride, shape))
        fixed_ms = float(sum(table.part_ms(k) for k in fixed))
        return cls(fixed_ms, {t: c.float() for t, c in costs.items()}, edges)

    def __call__(self, arch: Any) -> torch.Tensor:
        """Expected ms (a 0-dim tensor with a gradient to the free alphas) of ``arch``, a
        ``supernet.Architecture``: fixed edges count their op, pruned edges nothing."""
        total = torch.zeros((), device=arch.edge_state.device)
        for t in CELL_TYPES:
            state = arch.edge_state[CELL_TYPES.index(t)].tolist()
            weights = arch.op_weights(t)
            cost = self.costs[t].to(total.device)
            kept = Counter(j for k, (_, j) in enumerate(self.edges) if state[k] != PRUNED)
            for k, (_, j) in enumerate(self.edges):
                if state[k] == PRUNED:
                    continue
                share = min(2, kept[j]) / kept[j]
                row = cost[k, state[k]] if state[k] >= 0 else weights[k] @ cost[k]
                total = total + share * row
        return total + self.fixed_ms
