"""How the evolutionary stage scores candidates, and how scores become comparable fitness.

Two tiers (``FitnessConfig``): every candidate gets the cheap ``scorer``; at the end the best
``rerank_top`` of them get the expensive ``rerank_scorer`` (rerank.py), and only those decide
the final genotype. Scores are compared only at equal budget:

- ``proxy`` (the EcoNAS-style trained proxy) scores every candidate after stage 1 of
  ``evolution.proxy.stage_clips``, never later: tournaments, the best and the Pareto front all
  see stage-1 accuracies. Later stages run only in the proxy rerank, where they rank among the
  candidates promoted to them (successive halving, ``proxy_stages``).
- a scorer of ``hybridnas.search.scorers`` (synflow, naswot, ..., oneshot) scores every
  candidate with the same context (``score_context``); ``ensemble:a+b`` combines several.

Each history entry keeps ``scores`` (raw value per component scorer), ``scorer`` and
``budget`` (what produced them), ``score`` and ``fitness``:

- ``score``: a proxy or oneshot score alone is an accuracy, and stays as it is. Any other
  scorer (zero-cost scores have arbitrary scales and signs) or an ensemble becomes its mean
  rank over the whole history divided by the history's size, in (0, 1], so it changes as the
  history grows (``refit`` recomputes it after each batch; deterministic, so resumes agree).
- ``fitness``: ``score`` under the latency budget (MnasNet penalty, or ``REJECTED``), which
  needs a positive quality in (0, 1]: an accuracy or a normalised rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from hybridnas.config import ConfigError, FitnessConfig, ProxyConfig, choices
from hybridnas.config.search import LatencyMode
from hybridnas.engine.distributed import DistContext, all_gather_object
from hybridnas.search.scorers.proxy import ProxyData, build_proxy, train_stage
from hybridnas.search.scorers.proxy_variants import TRAINED as TRAINED_SCORERS
from hybridnas.search.scorers.proxy_variants import preset_for, seed_mean_of
from hybridnas.search.scorers.registry import ScoreContext, get_scorer, list_scorers
from hybridnas.space.genotype import Genotype
from hybridnas.space.network import read_connection_weights

REJECTED = -1.0  # fitness of an over-budget candidate in "reject" mode: never wins a tournament


def check_scorers(cfg: FitnessConfig) -> None:
    """Refuse, in one line, a scorer name the registry does not know."""
    known = {"proxy", *list_scorers()}
    bad = [n for n in cfg.components if n not in known]
    if bad:
        raise ConfigError(
            f"evolution.fitness.scorer={cfg.scorer!r}: unknown {bad}; known: {sorted(known)} "
            "or ensemble:<a>+<b>"
        )


@dataclass
class Scoring:
    """Everything scoring needs: the two configs, the proxy data, the run seed, the ranks,
    the supernet (state, steps, op names) if one was trained, and the latency budget."""

    cfg: FitnessConfig
    proxy: ProxyConfig
    data: ProxyData
    seed: int
    dist: DistContext
    supernet: tuple | None = None
    budget: LatencyBudget | None = None
    base_size: int = 0  # the data's clip side the proxy clips were resized from (0: unknown)

    @cached_property
    def context(self) -> ScoreContext:
        """Registered scorers see stage 1's training clips at proxy resolution, the fixed
        search_val subset as held-out clips and the supernet, if any (for ``oneshot``); the
        trained scorers (``proxy_1cycle``) may cycle through every proxy training clip."""
        n = self.proxy.stage_clips[0]
        state, steps, ops = self.supernet if self.supernet is not None else (None, 3, ())
        return ScoreContext(
            x=self.data.train_x[:n],
            y=self.data.train_y[:n],
            batch_size=self.proxy.batch_size,
            val_x=self.data.val_x,
            val_y=self.data.val_y,
            supernet_state=state,
            supernet_steps=steps,
            supernet_ops=tuple(ops),
            seed=self.seed,
            train_x=self.data.train_x,
            train_y=self.data.train_y,
        )


def shard(n: int, dist: DistContext) -> list[int]:
    """The indices of ``n`` items this rank works on."""
    return [k for k in range(n) if k % dist.world_size == dist.rank]


def gather(local: dict[int, Any], dist: DistContext) -> dict[int, Any]:
    """Every rank's {index: result}, merged (the same on every rank)."""
    merged: dict[int, Any] = {}
    for part in all_gather_object(local, dist):
        merged.update(part)
    return merged


def budget_label(name: str, s: Scoring, stages: int = 1) -> str:
    """What one score of scorer ``name`` costs, for the history (``stages``: proxy stages)."""
    if name == "proxy":
        clips = sum(s.proxy.stage_clips[:stages])
        return f"proxy stage {stages} ({clips} clips, width x{s.proxy.width_scale})"
    if name == "oneshot":
        return f"oneshot (supernet path, BN on {len(s.context.x)} clips)"
    if name in TRAINED_SCORERS:
        variant, _ = preset_for(name, len(s.context.val_x))
        seeds = seed_mean_of(name)[1]
        return (
            f"{name} (trained{f' x{seeds} seeds' if seeds > 1 else ''}: {variant.clips} clips "
            f"cycling {len(s.data.train_x)}, "
            f"width x{variant.width_scale:g}, loss on {variant.val_clips[0]} val clips)"
        )
    if name.startswith("ensemble:"):
        return " + ".join(budget_label(n, s) for n in FitnessConfig(name, None).components)
    return f"{name} (untrained, {len(s.context.x)} clips available)"


# ---------------------------------------------------------------- measuring


def clip_view(data: ProxyData, genotype: Genotype, base_size: int, proxy_size: int) -> ProxyData:
    """The proxy clips as ``genotype``'s clip sees them: every ``frame_stride``-th frame, the
    first ``frames`` of those, and the side scaled by ``genotype.size / base_size`` (clips
    held at ``proxy_size`` px). Clips already of that shape come back as they are."""
    side = round(proxy_size * genotype.size / base_size) if base_size else proxy_size
    span = data.train_x.shape[2]
    if genotype.frames * genotype.frame_stride > span:
        raise ValueError(
            f"a clip of {genotype.frames} frames at stride {genotype.frame_stride} needs "
            f"{genotype.frames * genotype.frame_stride} frames; the evolution's clips hold {span}"
        )

    def view(x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: genotype.frame_stride][:, :, : genotype.frames]
        if x.shape[-1] != side:
            x = F.interpolate(x, size=(x.shape[2], side, side), mode="trilinear",
                              align_corners=False)  # fmt: skip
        return x.contiguous()

    if span == genotype.frames and genotype.frame_stride == 1 and side == data.train_x.shape[-1]:
        return data
    return ProxyData(view(data.train_x), data.train_y, view(data.val_x), data.val_y)


def proxy_stages(
    genotypes: Sequence[Genotype],
    s: Scoring,
    stages: int,
    learned: dict[int, dict] | None = None,
) -> dict[int, list]:
    """Successive halving on the trained proxy: every genotype trains stage 1; the best
    ``promote_fraction`` (by the accuracy all of them have, ties to the lower index) of those
    still in go on to each next stage, up to ``stages``. Ranks split the work and exchange
    accuracies after each stage. Returns {index: [accuracy after stage 1, 2, ...]}; with
    ``evolution.proxy.connection_weights`` each candidate's learned connection weights (after
    its last stage) are put in ``learned`` by index."""
    mine = set(shard(len(genotypes), s.dist))
    models: dict[int, Any] = {}
    acc: dict[int, list[float]] = {k: [] for k in range(len(genotypes))}
    alive = list(range(len(genotypes)))
    for stage in range(stages):
        if stage > 0:
            keep = max(1, int(np.ceil(len(alive) * s.proxy.promote_fraction)))
            alive = sorted(alive, key=lambda k: (-acc[k][-1], k))[:keep]
        local = {}
        for k in (k for k in alive if k in mine):
            if k not in models:
                models[k] = build_proxy(genotypes[k], s.proxy, s.seed, s.supernet, s.dist.device)
            data = clip_view(s.data, genotypes[k], s.base_size, s.proxy.size)
            accuracy = train_stage(models[k], data, s.proxy)
            local[k] = (accuracy, read_connection_weights(models[k].model))
        for k, (a, connections) in gather(local, s.dist).items():
            acc[k].append(a)
            if learned is not None and connections is not None:
                learned[k] = connections
    return acc


def registered_scores(name: str, genotypes: Sequence[Genotype], s: Scoring) -> list[float]:
    """Raw scores of a registered scorer, split over ranks."""
    fn = get_scorer(name)
    local = {k: float(fn(genotypes[k], s.context)) for k in shard(len(genotypes), s.dist)}
    merged = gather(local, s.dist)
    return [merged[k] for k in range(len(genotypes))]


def cheap_scores(
    genotypes: Sequence[Genotype], s: Scoring, learned: dict[int, dict] | None = None
) -> list[dict[str, float]]:
    """{component scorer: raw score} of each genotype, at the selection budget (proxy: stage
    1 only, so every candidate is compared at the same budget); ``learned``: see
    ``proxy_stages``."""
    out: list[dict[str, float]] = [{} for _ in genotypes]
    for name in s.cfg.components:
        if name == "proxy":
            acc = proxy_stages(genotypes, s, 1, learned)
            values = [acc[k][0] for k in range(len(genotypes))]
        else:
            values = registered_scores(name, genotypes, s)
        for d, v in zip(out, values, strict=True):
            d[name] = v
    return out


# ---------------------------------------------------------------- comparable fitness


@dataclass(frozen=True)
class LatencyBudget:
    """Runtime-constrained fitness: accuracy kept within budget_ms, else rejected or penalised.

    mode "reject": over budget -> None. mode "penalty": over budget -> accuracy *
    (budget_ms / latency_ms) ** weight (the MnasNet soft constraint, applied only above budget).
    """

    budget_ms: float
    mode: LatencyMode
    weight: float

    def __post_init__(self) -> None:
        if self.mode not in choices(LatencyMode):
            raise ValueError(f"LatencyBudget.mode must be one of {choices(LatencyMode)}")
        if self.budget_ms <= 0:
            raise ValueError(f"LatencyBudget.budget_ms must be > 0, got {self.budget_ms}")

    def apply_budget(self, accuracy: float, latency_ms: float) -> float | None:
        """Fitness of a candidate with this accuracy and time per clip; None when rejected."""
        if latency_ms <= self.budget_ms:
            return accuracy
        if self.mode == "reject":
            return None
        return accuracy * (self.budget_ms / latency_ms) ** self.weight


def apply_budget(quality: float, latency_ms: float, budget: LatencyBudget | None) -> float:
    """Fitness of a quality in (0, 1] (an accuracy or a normalised rank) under the budget."""
    if budget is None:
        return quality
    fit = budget.apply_budget(quality, latency_ms)
    return REJECTED if fit is None else fit


def normalised_ranks(columns: Sequence[Sequence[float]]) -> list[float]:
    """Mean rank over several score columns divided by the number of items: (0, 1], 1 for the
    best; ties share their average rank. A NaN score (a scorer that failed on a candidate)
    ranks last rather than poisoning every rank."""
    ranks = [
        stats.rankdata(np.nan_to_num(np.asarray(c, float), nan=-np.inf, neginf=-np.inf))
        for c in columns
    ]
    n = max(len(columns[0]), 1) if columns else 1
    return [float(r) / n for r in np.mean(ranks, axis=0)] if columns else []


def refit(history: list[dict], others: Sequence[list[dict]], s: Scoring) -> None:
    """Set ``score`` and ``fitness`` of every history entry (see the module docstring), and
    copy them to the entries of ``others`` (e.g. the population) with the same key."""
    if not history:
        return
    names = s.cfg.components
    if s.cfg.rank_based:
        quality = normalised_ranks([[h["scores"][n] for h in history] for n in names])
    else:
        quality = [h["scores"][names[0]] for h in history]
    by_key = {}
    for h, q in zip(history, quality, strict=True):
        h["score"] = q
        h["fitness"] = apply_budget(q, h["latency_ms"], s.budget)
        by_key[h["key"]] = (h["score"], h["fitness"])
    for group in others:
        for p in group:
            p["score"], p["fitness"] = by_key[p["key"]]
