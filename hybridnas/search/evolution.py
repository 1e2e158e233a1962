"""The evolutionary stage: aging evolution of connectivity, ops and widths under a latency budget.

Read top to bottom: ``EvolutionState`` is the population (FIFO, oldest first), every evaluated
candidate (``history``, which doubles as a cache: a genotype seen before is never retrained),
the CONet scaler and the cycle counter; ``evaluate`` scores a batch of genotypes on the staged
proxy (``proxy.py``), sharded over ranks and gathered so every rank holds the same results;
``seed_population`` and ``cycle`` are the evolution proper; ``write_outputs`` (in
evolution_outputs.py) saves the Pareto front, the history and the best genotype.
``run_evolution`` strings them together.

Each cycle draws from ``np.random.default_rng([seed, cycle])`` and each candidate trains from a
seed fixed by its genotype, so a run resumed from the per-cycle checkpoint ends exactly where an
uninterrupted one does (latency aside, which is measured; with a budget it can move fitness).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau

from hybridnas.data import build_dataset
from hybridnas.engine.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from hybridnas.engine.distributed import DistContext, all_gather_object, barrier
from hybridnas.engine.tracking import Tracker
from hybridnas.search.channels import ChannelScaler
from hybridnas.search.evolution_outputs import last_step, log_cycle, write_outputs
from hybridnas.search.latency import LatencyBudget, count_flops, count_params, measure_latency
from hybridnas.search.mutations import Guidance, load_guidance, mutate, sample_genotype
from hybridnas.search.proxy import (
    ProxyConfig,
    ProxyData,
    Trained,
    build_proxy,
    conet_step,
    load_proxy_data,
    train_stage,
)
from hybridnas.space.genotype import CellSpec, Genotype
from hybridnas.space.macro import MacroSpec
from hybridnas.space.network import build_network

CHECKPOINT = "checkpoints/evolution_last.pt"
REJECTED = -1.0  # fitness of an over-budget candidate in "reject" mode: never wins a tournament


@dataclass
class EvolutionState:
    """Everything a cycle changes. Individuals are plain dicts (checkpoint-friendly)."""

    population: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    cycle: int = 0
    scaler: dict = field(default_factory=dict)
    cycle_times: list[float] = field(default_factory=list)
    base_step: int = 0

    def seen(self) -> dict[str, dict]:
        return {h["key"]: h for h in self.history}

    def best(self) -> dict:
        """Best of everything evaluated (first one wins a tie)."""
        return max(self.history, key=lambda h: h["fitness"])

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Context:
    """What every step needs and nothing changes: config, data, guidance, supernet weights."""

    cfg: Any
    ctx: DistContext
    run_dir: Path
    proxy: ProxyConfig
    data: ProxyData
    guidance: Guidance
    supernet: tuple | None
    budget: LatencyBudget | None


# ---------------------------------------------------------------- evaluation


def _shard(n: int, ctx: DistContext) -> list[int]:
    return [k for k in range(n) if k % ctx.world_size == ctx.rank]


def _gather(local: dict[int, Any], ctx: DistContext) -> dict[int, Any]:
    merged: dict[int, Any] = {}
    for part in all_gather_object(local, ctx):
        merged.update(part)
    return merged


def _cost(genotype: Genotype, c: Context) -> dict[str, float]:
    """Time per clip (ms), FLOPs and parameters of the full-width network on the run's device."""
    e = c.cfg.evolution
    torch.manual_seed(0)
    net = build_network(genotype)
    shape = (genotype.in_channels, genotype.frames, genotype.size, genotype.size)
    lat = measure_latency(
        net, shape, device=c.ctx.device, min_run_time=e.latency_min_run_s, warmup=1
    )
    return {
        "latency_ms": lat.median_ms,
        "flops": count_flops(net, shape),
        "params": count_params(net),
    }


def _fitness(accuracy: float, latency_ms: float, budget: LatencyBudget | None) -> float:
    if budget is None:
        return accuracy
    fit = budget.apply_budget(accuracy, latency_ms)
    return REJECTED if fit is None else fit


def evaluate(genotypes: list[Genotype], c: Context) -> list[dict]:
    """Score genotypes on the staged proxy: every one trains stage 1, then the best
    ``promote_fraction`` of those still in go on to each next stage. Ranks split the work and
    exchange accuracies after each stage. Returns one result dict per genotype, same order."""
    mine = _shard(len(genotypes), c.ctx)
    models: dict[int, Trained] = {}
    acc: dict[int, float] = {}
    stages: dict[int, int] = {}
    alive = list(range(len(genotypes)))
    for stage in range(len(c.proxy.stage_clips)):
        if stage > 0:
            keep = max(1, math.ceil(len(alive) * c.proxy.promote_fraction))
            alive = sorted(alive, key=lambda k: (-acc[k], k))[:keep]
        local = {}
        for k in (k for k in alive if k in mine):
            if k not in models:
                models[k] = build_proxy(genotypes[k], c.proxy, c.cfg.seed, c.supernet, c.ctx.device)
            local[k] = train_stage(models[k], c.data, c.proxy)
        for k, a in _gather(local, c.ctx).items():
            acc[k], stages[k] = a, stage + 1
    costs = _gather({k: _cost(genotypes[k], c) for k in mine}, c.ctx)
    return [
        {
            "key": g.key(),
            "genotype": g.to_json(),
            "accuracy": acc[k],
            "stages": stages[k],
            **costs[k],
            "fitness": _fitness(acc[k], costs[k]["latency_ms"], c.budget),
        }
        for k, g in enumerate(genotypes)
    ]


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


def _mutate(parent: Genotype, rng: np.random.Generator, c: Context) -> tuple[Genotype, dict]:
    e = c.cfg.evolution
    return mutate(
        parent,
        rng,
        c.guidance,
        probs=tuple(e.mutation_probs),
        explore=e.explore,
        width_step=e.width_step,
        min_width=e.min_width,
        max_width=e.max_width,
    )


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
        child, report = conet_step(
            _parse(best), c.data, c.proxy, scaler, c.cfg.seed, e.conet_trial_stages, c.ctx.device
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
        child, info = _mutate(_parse(parent), rng, c)
        children.append((child, {"mutation": info, "parent": parent["key"]}))
    if e.conet_every and st.cycle % e.conet_every == 0:
        children.append(_conet_child(st, c))
    results = evaluate_new(children, st, c)
    for r in results:
        st.population.append(r)
        st.population.pop(0)
        if not r["reused"]:
            st.history.append(r)
    return results


# ---------------------------------------------------------------- checkpoints and outputs


def save_state(st: EvolutionState, c: Context) -> None:
    if c.ctx.is_main:
        save_checkpoint(c.run_dir / CHECKPOINT, {**st.to_dict(), "rng": capture_rng_state()})
    barrier(c.ctx)


def load_state(path: Path) -> EvolutionState:
    ckpt = load_checkpoint(path)
    restore_rng_state(ckpt.pop("rng"))
    return EvolutionState(**ckpt)


def faithfulness(st: EvolutionState, c: Context) -> dict[str, Any]:
    """Kendall's tau between proxy accuracy and a longer, wider training (``faithfulness_*``)
    on up to ``faithfulness_samples`` candidates spread over the proxy ranking."""
    e = c.cfg.evolution
    ranked = sorted(st.history, key=lambda h: h["accuracy"])
    n = min(e.faithfulness_samples, len(ranked))
    if n < 2:
        return {}
    picks = [ranked[int(round(i))] for i in np.linspace(0, len(ranked) - 1, n)]
    ref = ProxyConfig(
        **{
            **c.proxy.__dict__,
            "width_scale": e.faithfulness_width_scale,
            "stage_clips": (e.faithfulness_clips,),
            "inherit": False,
        }
    )
    local = {}
    for k in _shard(n, c.ctx):
        t = build_proxy(_parse(picks[k]), ref, c.cfg.seed, None, c.ctx.device)
        local[k] = train_stage(t, c.data, ref)
    full = _gather(local, c.ctx)
    proxy_acc = [p["accuracy"] for p in picks]
    full_acc = [full[k] for k in range(n)]
    tau, p_value = kendalltau(proxy_acc, full_acc)
    # NaN (all proxy or all reference accuracies tied) means uncomputable, not "uncorrelated".
    tau, p_value = (None, None) if np.isnan(tau) else (float(tau), float(p_value))
    return {"tau": tau, "p_value": p_value, "proxy": proxy_acc, "reference": full_acc}


# ---------------------------------------------------------------- the stage


def _guidance_dirs(cfg: Any, run_dir: Path) -> list[Path]:
    dirs = [run_dir]
    if cfg.genotype:
        src = Path(cfg.genotype)
        dirs.append(src if src.is_dir() else src.parent)
    return dirs


def _supernet_weights(cfg: Any, dirs: list[Path]) -> tuple | None:
    """(state dict, steps, op names) of the supernet, for weight inheritance, if one is saved."""
    for d in dirs:
        path = d / "checkpoints" / "search_last.pt"
        if path.is_file():
            state = load_checkpoint(path)["weights"]["model"]
            return state, int(cfg.model.steps), list(cfg.model.op_names)
    return None


def make_context(cfg: Any, ctx: DistContext, run_dir: Path) -> Context:
    """Data at proxy resolution, guidance from the supernet's alphas, budget from the recipe."""
    e = cfg.evolution
    pcfg = ProxyConfig.from_cfg(dict(e.proxy))
    splits = [build_dataset(cfg.data, split) for split in ("train", "search_val")]
    data = load_proxy_data(*splits, pcfg, cfg.seed)
    dirs = _guidance_dirs(cfg, run_dir)
    guidance = next(
        (load_guidance(d, cfg.model.op_names) for d in dirs if (d / "alphas.json").is_file()),
        Guidance.uniform(cfg.model.op_names),
    )
    supernet = _supernet_weights(cfg, dirs) if pcfg.inherit else None
    budget = (
        LatencyBudget(e.latency_budget_ms, e.latency_mode, e.latency_weight)
        if e.latency_budget_ms > 0
        else None
    )
    return Context(cfg, ctx, run_dir, pcfg, data, guidance, supernet, budget)


def new_state(cfg: Any, run_dir: Path) -> EvolutionState:
    e = cfg.evolution
    scaler = ChannelScaler(min_width=e.min_width, max_width=e.max_width)
    return EvolutionState(scaler=scaler.to_dict(), base_step=last_step(run_dir) + 1)


def chain_genotype(cfg: Any) -> Genotype:
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
    macro = MacroSpec.from_config(cfg.model, cfg.data, num_classes=MacroSpec.num_classes)
    return Genotype(normal=cell, reduce=cell, macro=macro)


def run_evolution(
    cfg: Any, ctx: DistContext, run_dir: Path, tracker: Tracker, genotype: Genotype
) -> Genotype:
    """Evolve from ``genotype`` (the differentiable stage's); write and return the best one."""
    run_dir = Path(run_dir)
    c = make_context(cfg, ctx, run_dir)
    ckpt = run_dir / CHECKPOINT
    if cfg.resume and ckpt.is_file():
        st = load_state(ckpt)
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
    faith = faithfulness(st, c) if cfg.evolution.faithfulness_samples else {}
    if faith and ctx.is_main:
        tau = "uncomputable (tied accuracies)" if faith["tau"] is None else f"{faith['tau']:.3f}"
        print(
            f"[hybridnas] proxy faithfulness: Kendall tau {tau} on {len(faith['proxy'])} candidates"
        )
    best = write_outputs(st, c, tracker, faith)
    barrier(ctx)
    return best
