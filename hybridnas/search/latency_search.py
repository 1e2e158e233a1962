"""The differentiable stage's latency table and what a genotype's meta records of it."""

from __future__ import annotations

from typing import Any

from hybridnas.config import SearchRun
from hybridnas.engine.distributed import DistContext, barrier
from hybridnas.search.latency_table import LatencyTable, open_table, space_parts
from hybridnas.space.genotype import Genotype
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
