"""The evolutionary stage: aging evolution of connectivity, ops and widths under a latency budget.

Read top to bottom: ``EvolutionState`` is the population (FIFO, oldest first), every evaluated
candidate (``history``, which doubles as a cache: a genotype seen before is never rescored),
the CONet scaler and the cycle counter; ``evaluate`` scores a batch of genotypes with the cheap
scorer (``evolution.fitness.scorer``, fitness.py: the stage-1 proxy by default), sharded over
ranks and gathered so every rank holds the same results (with ``rewire_guidance=connections``
each result also keeps the connection weights its proxy learned, which guide its children's
rewiring);
``seed_population`` and ``cycle`` are the evolution proper; ``rerank.choose`` picks the final
genotype with the expensive scorer (``evolution.fitness.rerank_scorer``) among the best
candidates only;
``write_outputs`` (in outputs.py) saves the Pareto front, the history and the best
genotype.
``run_evolution`` strings them together.

Each cycle draws from ``np.random.default_rng([seed, cycle])`` and each candidate trains from a
seed fixed by its genotype, so a run resumed from the per-cycle checkpoint ends exactly where an
uninterrupted one does. Latency is the frozen latency table's prediction by default
(``evolution.latency_source=table``; measure/latency_table.py), so a run is deterministic with the
budget on; rank 0 measures any part the table lacks before a batch is scored and every rank
reads the same numbers. ``evolution.latency_source=measured`` times each network instead.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from hybridnas.config import SearchRun
from hybridnas.data import build_dataset
from hybridnas.engine.checkpoint import load_checkpoint
from hybridnas.engine.distributed import DistContext, all_gather_object, barrier
from hybridnas.engine.resume import restore_resumable, save_resumable
from hybridnas.engine.tracking import Tracker
from hybridnas.measure.counts import count_flops, count_params, measure_latency
from hybridnas.measure.latency_parts import genotype_parts
from hybridnas.measure.latency_table import LatencyTable, open_table, read_table
from hybridnas.search.evolution.faithfulness import check_faithfulness
from hybridnas.search.evolution.fitness import (
    LatencyBudget,
    Scoring,
    budget_label,
    cheap_scores,
    check_scorers,
    clip_view,
    gather,
    refit,
    shard,
)
from hybridnas.search.evolution.macro_mutations import macro_ranges
from hybridnas.search.evolution.mutations import Guidance, load_guidance, mutate, sample_genotype
from hybridnas.search.evolution.outputs import last_step, log_cycle, write_outputs
from hybridnas.search.evolution.rerank import choose
from hybridnas.search.evolution.state import Context, EvolutionState
from hybridnas.search.scorers.channels import ChannelScaler
from hybridnas.search.scorers.proxy import conet_step, load_proxy_data
from hybridnas.space.genotype import CellSpec, Genotype
from hybridnas.space.macro import MacroSpec
from hybridnas.space.network import build_network

CHECKPOINT = "checkpoints/evolution_last.pt"


# ---------------------------------------------------------------- evaluation


def _cost(genotype: Genotype, c: Context) -> dict[str, float]:
    """Time per clip (ms: the table's prediction, or measured on the run's device), FLOPs and
    parameters of the full-width network."""
    e = c.cfg.evolution
    torch.manual_seed(0)
    net = build_network(genotype)
    shape = (genotype.in_channels, genotype.frames, genotype.size, genotype.size)
    if c.table is not None:
        latency = c.table.predict_ms(genotype)
    else:
        latency = measure_latency(
            net, shape, device=c.ctx.device, min_run_time=e.latency_min_run_s, warmup=1
        ).median_ms
    return {
        "latency_ms": latency,
        "flops": count_flops(net, shape),
        "params": count_params(net),
    }


def _ensure_parts(genotypes: list[Genotype], c: Context) -> None:
    """Rank 0 measures the parts of ``genotypes`` the table lacks (new widths, say) into the
    table file; the other ranks then read that file, so every rank predicts alike."""
    if c.table is None:
        return
    if c.ctx.is_main:
        c.table.ensure(part for g in genotypes for part in genotype_parts(g))
    if c.ctx.world_size > 1:
        barrier(c.ctx)
        if not c.ctx.is_main:
            c.table.entries = read_table(c.table.path).entries


def evaluate(genotypes: list[Genotype], c: Context) -> list[dict]:
    """Score genotypes with the cheap scorer (fitness.py) and measure their costs; ranks
    split the work. Returns one result dict per genotype, same order, with ``score`` and
    ``fitness`` relative to this batch alone (``refit`` makes them relative to a history)."""
    learned: dict[int, dict] = {}
    _ensure_parts(genotypes, c)
    scores = cheap_scores(genotypes, c.scoring, learned)
    costs = gather({k: _cost(genotypes[k], c) for k in shard(len(genotypes), c.ctx)}, c.ctx)
    budget = budget_label(c.scoring.cfg.scorer, c.scoring)
    results = [
        {
            "key": g.key(),
            "genotype": g.to_json(),
            **({"accuracy": scores[k]["proxy"]} if "proxy" in scores[k] else {}),
            "scorer": c.scoring.cfg.scorer,
            "budget": budget,
            "scores": scores[k],
            **({"connections": learned[k]} if k in learned else {}),
            **costs[k],
        }
        for k, g in enumerate(genotypes)
    ]
    refit(results, [], c.scoring)
    return results


def evaluate_new(
    candidates: list[tuple[Genotype, dict]], st: EvolutionState, c: Context
) -> list[dict]:
    """Results for (genotype, info) pairs: genotypes seen before reuse their result; the rest are
    evaluated together (duplicates once). Each result gets the info and the cycle."""
    seen = st.seen()
    fresh: dict[str, Genotype] = {}
    for g, _ in candidates:
        if g.key() not in seen:
            fresh.setdefault(g.key(), g)
    results = {r["key"]: r for r in evaluate(list(fresh.values()), c)}
    out, used = [], set()
    for g, info in candidates:
        key = g.key()
        new = key in results and key not in used  # a duplicate within the batch is a reuse
        used.add(key)
        out.append(
            {**(results.get(key) or seen[key]), **info, "cycle": st.cycle, "reused": not new}
        )
    return out


# ---------------------------------------------------------------- evolution


def _parse(ind: dict) -> Genotype:
    return Genotype.from_json(ind["genotype"])


def seed_population(seed_genotype: Genotype, st: EvolutionState, c: Context) -> None:
    """Population = the derived genotype plus distinct genotypes sampled from the alphas."""
    e = c.cfg.evolution
    rng = np.random.default_rng([c.cfg.seed, 0])
    members = {seed_genotype.key(): (seed_genotype, {"origin": "derived"})}
    tries = 0
    while len(members) < e.population and tries < 50 * e.population:
        tries += 1
        g = sample_genotype(seed_genotype, rng, c.guidance, e.seed_temperature)
        if tries > 10 * e.population:  # alphas too peaked to give new samples: mutate instead
            g, _ = _mutate(seed_genotype, rng, c)
        members.setdefault(g.key(), (g, {"origin": "sampled"}))
    results = evaluate_new(list(members.values()), st, c)
    st.population = results
    st.history = list(results)
    refit(st.history, [st.population], c.scoring)


def _mutate(
    parent: Genotype, rng: np.random.Generator, c: Context, guidance: Guidance | None = None
) -> tuple[Genotype, dict]:
    e = c.cfg.evolution
    return mutate(
        parent,
        rng,
        guidance or c.guidance,
        probs=tuple(e.mutation_probs),
        explore=e.explore,
        width_step=e.width_step,
        min_width=e.min_width,
        max_width=e.max_width,
        max_inputs=e.max_inputs,
        macro=c.macro,
    )


def parent_guidance(parent: dict, c: Context) -> Guidance:
    """The guidance a parent's children mutate by: the supernet's alphas, or with
    ``rewire_guidance=connections`` the connection weights this parent learned (AssembleNet)."""
    if c.cfg.evolution.rewire_guidance == "connections":
        return c.guidance.with_connections(parent.get("connections"))
    return c.guidance


def select_parent(population: list[dict], rng: np.random.Generator, sample_size: int) -> dict:
    """Tournament: the fittest of ``sample_size`` members drawn without replacement."""
    idx = rng.choice(len(population), size=min(sample_size, len(population)), replace=False)
    return max((population[int(i)] for i in idx), key=lambda p: p["fitness"])


def _conet_child(st: EvolutionState, c: Context) -> tuple[Genotype, dict]:
    """CONet width trial on the population's best, computed on rank 0 and shared."""
    e = c.cfg.evolution
    best = max(st.population, key=lambda p: p["fitness"])
    out = None
    if c.ctx.is_main:
        scaler = ChannelScaler.from_dict(st.scaler)
        parent = _parse(best)
        data = clip_view(c.data, parent, c.scoring.base_size, c.proxy.size)
        child, report = conet_step(
            parent, data, c.proxy, scaler, c.cfg.seed, e.conet_trial_stages, c.ctx.device
        )
        out = (child.to_json(), report, scaler.to_dict())
    child_json, report, st.scaler = all_gather_object(out, c.ctx)[0]
    return Genotype.from_json(child_json), {
        "mutation": {"kind": "conet", **report},
        "parent": best["key"],
    }


def cycle(st: EvolutionState, c: Context) -> list[dict]:
    """One cycle: ``children_per_cycle`` tournaments, each mutating its winner (plus a CONet
    child every ``conet_every`` cycles); children are evaluated together, each pushed onto the
    population while the oldest member is dropped. Returns the children's results."""
    e = c.cfg.evolution
    rng = np.random.default_rng([c.cfg.seed, st.cycle])
    children = []
    for _ in range(e.children_per_cycle):
        parent = select_parent(st.population, rng, e.sample_size)
        child, info = _mutate(_parse(parent), rng, c, parent_guidance(parent, c))
        children.append((child, {"mutation": info, "parent": parent["key"]}))
    if e.conet_every and st.cycle % e.conet_every == 0:
        children.append(_conet_child(st, c))
    results = evaluate_new(children, st, c)
    for r in results:
        st.population.append(r)
        st.population.pop(0)
        if not r["reused"]:
            st.history.append(r)
    refit(st.history, [st.population, results], c.scoring)
    return results


# ---------------------------------------------------------------- checkpoints and outputs


def save_state(st: EvolutionState, c: Context) -> None:
    """Collective: checkpoint the state after cycle ``st.cycle``."""
    diverged = f"evolution diverged at cycle {st.cycle}"
    save_resumable(
        c.run_dir / CHECKPOINT, st.to_dict(), c.ctx, step=f"c{st.cycle:05d}", diverged=diverged
    )


def load_state(path: Path, ctx: DistContext | None = None) -> EvolutionState:
    """Collective: the state at ``path``, this rank's RNG restored (``ctx`` None: one process)."""
    return EvolutionState(**restore_resumable(path, ctx or DistContext()))


# ---------------------------------------------------------------- the stage


def _guidance_dirs(cfg: SearchRun, run_dir: Path) -> list[Path]:
    dirs = [run_dir]
    if cfg.genotype:
        src = Path(cfg.genotype)
        dirs.append(src if src.is_dir() else src.parent)
    return dirs


def _supernet_weights(cfg: SearchRun, dirs: list[Path]) -> tuple | None:
    """(state dict, steps, op names) of the supernet, for weight inheritance, if one is saved."""
    for d in dirs:
        path = d / "checkpoints" / "search_last.pt"
        if path.is_file():
            state = load_checkpoint(path)["weights"]["model"]
            return state, int(cfg.model.steps), list(cfg.model.op_names)
    return None


def evolution_table(cfg: SearchRun, ctx: DistContext) -> LatencyTable | None:
    """The latency table the evolution predicts with (None: ``latency_source=measured``)."""
    if cfg.evolution.latency_source != "table":
        return None
    s = cfg.search
    return open_table(ctx.device, s.latency_threads, path=s.latency_table)


def make_context(cfg: SearchRun, ctx: DistContext, run_dir: Path) -> Context:
    """Data at proxy resolution (clips of ``macro.span`` frames), guidance from the supernet's
    alphas, budget and latency table from the recipe."""
    e = cfg.evolution
    pcfg = e.scoring_proxy
    macro = macro_ranges(cfg)
    dataset = replace(cfg.data.dataset, frames=macro.span)
    splits = [build_dataset(dataset, split) for split in ("train", "search_val")]
    data = load_proxy_data(*splits, pcfg, cfg.seed)
    dirs = _guidance_dirs(cfg, run_dir)
    guidance = next(
        (load_guidance(d, cfg.model.op_names) for d in dirs if (d / "alphas.json").is_file()),
        Guidance.uniform(cfg.model.op_names),
    )
    guidance = replace(guidance, drop=e.drop_policy)
    fcfg = e.fitness
    check_scorers(fcfg)
    wants = pcfg.inherit or "oneshot" in (*fcfg.components, fcfg.rerank_scorer)
    supernet = _supernet_weights(cfg, dirs) if wants else None
    if supernet is None and "oneshot" in (*fcfg.components, fcfg.rerank_scorer):
        raise ValueError("the oneshot scorer needs a trained supernet (checkpoints/search_last.pt)")
    budget = (
        LatencyBudget(e.latency_budget_ms, e.latency_mode, e.latency_weight)
        if e.latency_budget_ms > 0
        else None
    )
    scoring = Scoring(fcfg, pcfg, data, int(cfg.seed), ctx, supernet, budget, cfg.data.size)
    table = evolution_table(cfg, ctx)
    return Context(cfg, ctx, run_dir, pcfg, data, guidance, supernet, budget, scoring, table, macro)


def new_state(cfg: SearchRun, run_dir: Path) -> EvolutionState:
    e = cfg.evolution
    scaler = ChannelScaler(min_width=e.min_width, max_width=e.max_width)
    return EvolutionState(scaler=scaler.to_dict(), base_step=last_step(run_dir) + 1)


def chain_genotype(cfg: SearchRun) -> Genotype:
    """A plain genotype from the model config when no supernet ran (benchmarks, tests): node j
    takes nodes 0 and j-1 through the first two non-trivial ops, alternating."""
    ops = [o for o in cfg.model.op_names if o not in ("none", "skip")][:2]
    edges = tuple(
        (i, j, ops[k % len(ops)])
        for j in range(2, 2 + cfg.model.steps)
        for k, i in enumerate(sorted({0, j - 1}))
    )
    cell = CellSpec(edges=edges, concat=tuple(range(2, 2 + cfg.model.steps)))
    # no dataset is read here: the class count stays the skeleton's default
    macro = MacroSpec.from_config(vars(cfg.model), cfg.data, num_classes=MacroSpec.num_classes)
    return Genotype(normal=cell, reduce=cell, macro=macro)


def run_evolution(
    cfg: SearchRun, ctx: DistContext, run_dir: Path, tracker: Tracker, genotype: Genotype
) -> Genotype:
    """Evolve from ``genotype`` (the differentiable stage's); write and return the best one."""
    run_dir = Path(run_dir)
    c = make_context(cfg, ctx, run_dir)
    ckpt = run_dir / CHECKPOINT
    if cfg.resume and ckpt.is_file():
        st = load_state(ckpt, ctx)
        if ctx.is_main:
            print(f"[hybridnas] resumed evolution after cycle {st.cycle}")
    else:
        st = new_state(cfg, run_dir)
        if ctx.is_main:
            genotype.save(run_dir / "genotype_differentiable.json")
        start = time.perf_counter()
        seed_population(genotype, st, c)
        st.cycle_times.append(time.perf_counter() - start)
        log_cycle(st, c, tracker, st.cycle_times[-1])
        save_state(st, c)
    while st.cycle < cfg.evolution.cycles:
        st.cycle += 1
        start = time.perf_counter()
        cycle(st, c)
        st.cycle_times.append(time.perf_counter() - start)
        log_cycle(st, c, tracker, st.cycle_times[-1])
        save_state(st, c)
    choice = choose(st.history, c.scoring)
    faith = check_faithfulness(st.history, c.scoring, cfg.evolution.faithfulness)
    if faith and ctx.is_main:
        tau = "uncomputable (tied scores)" if faith["tau"] is None else f"{faith['tau']:+.3f}"
        lo, hi = faith["tau_ci"]
        print(
            f"[hybridnas] {faith['scorer']} faithfulness: Kendall tau {tau} "
            f"(95% interval {lo}, {hi}) on {faith['n']} candidates"
        )
    best = write_outputs(st, c, tracker, faith, choice)
    barrier(ctx)
    return best
