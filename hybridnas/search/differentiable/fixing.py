"""When SDAS fixes edges during the differentiable stage, and how their ops are chosen.

``fix_on_schedule`` runs at each epoch end (the schedule's target); ``fix_early`` after each
step when ``search.fix_margin`` is set (confident edges at once). Both pick ops by alpha or,
with ``search.select=perturbation``, by measurement (``selection.py``), whose seconds count as
search time: ``fix_early`` runs inside the timed epoch, and ``end_epoch`` adds
``fix_on_schedule``'s seconds to the epoch's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from hybridnas.search.differentiable.sdas import (
    edge_confidence,
    fix_confident,
    fix_edges,
    num_decided,
)
from hybridnas.search.differentiable.selection import PerturbationChooser, select_batches
from hybridnas.space.genotype import CELL_TYPES

if TYPE_CHECKING:
    from hybridnas.search.differentiable.state import SearchState


def fix_on_schedule(st: SearchState) -> tuple[list[dict], float]:
    """Decide edges up to the schedule's target; the op of each fixed edge by alpha or by
    perturbation (``search.select``). Returns the events and the seconds it took."""
    start = time.perf_counter()
    s, arch = st.cfg.search, st.arch
    target = st.schedule.decided_after(st.epoch, arch.num_edges)
    due = any(num_decided(arch, t) < min(target, arch.num_edges) for t in CELL_TYPES)
    chooser = _perturbation_chooser(st) if due else None
    events = fix_edges(
        arch,
        steps=st.cfg.model.steps,
        target=target,
        confidence=s.confidence,
        max_skips=s.max_skips,
        **({"choose_op": chooser} if chooser else {}),
    )
    seconds = time.perf_counter() - start
    _note_selection(st, chooser, events, seconds, f"epoch {st.epoch}")
    return events, seconds


def fix_early(st: SearchState) -> list[dict]:
    """``search.fix_margin``: after the SDAS warm-up, fix every free edge whose alpha margin
    reached the threshold now, mid-epoch, so it stops running its other ops at once (inside the
    timed epoch, so a perturbation measurement here is counted too)."""
    s, arch, steps = st.cfg.search, st.arch, st.cfg.model.steps
    margin = s.fix_margin
    if not margin or st.schedule.kind == "none" or st.epoch < st.schedule.warmup_epochs:
        return []
    if not any(
        free and float(score) >= margin
        for t in CELL_TYPES
        for free, score in zip(
            arch.free_mask(t), edge_confidence(arch, t, steps, "margin"), strict=True
        )
    ):
        return []
    start = time.perf_counter()
    chooser = _perturbation_chooser(st)
    events = fix_confident(
        arch,
        steps=steps,
        margin=margin,
        max_skips=s.max_skips,
        **({"choose_op": chooser} if chooser else {}),
    )
    for e in events:
        e["epoch"], e["step"] = st.epoch, st.batch_in_epoch
    st.fix_events += events
    where = f"epoch {st.epoch} step {st.batch_in_epoch}"
    _note_selection(st, chooser, events, time.perf_counter() - start, where)
    if st.ctx.is_main:
        fixed = [f"{e['cell']} {e['from']}->{e['to']} {e['op']}" for e in events]
        print(f"[hybridnas] {where}: margin >= {margin} fixed {', '.join(fixed)}", flush=True)
    return events


def _perturbation_chooser(st: SearchState) -> PerturbationChooser | None:
    if st.cfg.search.select != "perturbation":
        return None
    return PerturbationChooser(st.supernet, _select_batches(st), st.ctx)


def _note_selection(st, chooser, events, seconds, where) -> None:
    """Attach each fixed edge's measurement to its event and say what the measurement cost."""
    if chooser is None:
        return
    for e in events:
        if (e["cell"], e["edge"]) in chooser.records:
            e["masked_acc"] = chooser.records[(e["cell"], e["edge"])]
    if st.ctx.is_main:
        print(
            f"[hybridnas] {where}: perturbation selection fixed {len(chooser.records)} edge(s) "
            f"in {seconds:.1f} s ({chooser.forwards} supernet forwards over "
            f"{len(chooser.batches)} batch(es) per rank)",
            flush=True,
        )


def _select_batches(st: SearchState) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``search.select_batches`` batches of the alpha split on the device, new each epoch."""
    cfg = st.cfg
    batches = select_batches(
        st.val_loader.dataset,
        cfg.search.select_batches,
        batch_size=cfg.data.batch_size,
        seed=cfg.seed + 2,
        epoch=st.epoch,
        ctx=st.ctx,
        channels_last=cfg.search.channels_last,
    )
    return batches
