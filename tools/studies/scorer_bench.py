"""Scorers against the ground truth: per-genotype scores, cost, and rank agreement.

::

    scores = score_table(names, gt, ctx)        # {scorer: {arch: score}}, {scorer: ms/candidate}
    rows = agreement_rows(scores, cost, gt)     # tau / rho with 95% intervals, evaluation half
    best = choose_ensemble(scores, gt)          # mean-rank ensemble picked on calibration only

The context is the ground-truth recipe's own data: a few minibatches of its training clips,
and (for ``oneshot``) held-out clips from ``search_val`` plus a supernet trained on the space.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hybridnas.groundtruth.table import GroundTruth
from hybridnas.search.scorers.registry import ScoreContext, get_scorer, rank_many
from hybridnas.space.genotype import Genotype

ZERO_COST = (
    "params",
    "flops",
    "synflow",
    "snip",
    "grad_norm",
    "naswot",
    "zico",
    "st_entropy",
    "temporal_sensitivity",
    "naswot_motion",
)


def table_genotypes(n_archs: int) -> dict[str, Genotype]:
    """{arch id: genotype} of the table's architectures, drawn as the build draws them (so
    scores can be computed before the table has finished training)."""
    from hybridnas.groundtruth.recipe import GroundTruthRecipe, arch_id
    from studies import build

    return {arch_id(g): g for g in build.table_genotypes(GroundTruthRecipe(), n_archs)}


def score_context(n_clips: int = 64, batch_size: int = 32) -> ScoreContext:
    """The scorers' context: the first ``n_clips`` training clips of the ground-truth recipe
    (two minibatches of ``batch_size``), all of them for the trained scorers (``proxy_1cycle``)
    and its search_val clips as held-out data."""
    from hybridnas.groundtruth.recipe import GroundTruthRecipe, load_clips

    clips = load_clips(GroundTruthRecipe())
    train, val = clips["train"], clips["search_val"]
    return ScoreContext(
        x=train.x[:n_clips],
        y=train.y[:n_clips],
        batch_size=batch_size,
        val_x=val.x,
        val_y=val.y,
        train_x=train.x,
        train_y=train.y,
    )


def score_table(
    names: Sequence[str], genotypes: Mapping[str, Genotype], ctx: ScoreContext
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Score every genotype ({arch id: genotype}) with every scorer (one process, this thread
    count). Returns ({scorer: {arch: score}}, {scorer: median ms per candidate})."""
    scores: dict[str, dict[str, float]] = {}
    cost: dict[str, float] = {}
    for name in names:
        fn, times = get_scorer(name), []
        scores[name] = {}
        for arch, g in genotypes.items():
            start = time.perf_counter()
            scores[name][arch] = float(fn(g, ctx))
            times.append(1000 * (time.perf_counter() - start))
        cost[name] = float(np.median(times))
        print(f"[bench] scorer {name}: {cost[name]:.0f} ms per candidate", flush=True)
    return scores, cost


def trained_proxy_scores(
    genotypes: Mapping[str, Genotype], ctx: ScoreContext, stage_clips: int = 512
) -> tuple[dict[str, float], float]:
    """The evolution's default score, EcoNAS-style: the candidate at half width trained on
    ``stage_clips`` training clips (one stage, seeded by the genotype), accuracy on 256 held-out
    clips. Returns ({arch: accuracy}, median ms per candidate)."""
    from hybridnas.groundtruth.recipe import GroundTruthRecipe, load_clips
    from hybridnas.search.scorers.proxy import ProxyConfig, ProxyData, build_proxy, train_stage

    train = load_clips(GroundTruthRecipe())["train"]
    cfg = ProxyConfig(stage_clips=(stage_clips,), val_clips=256, inherit=False)
    data = ProxyData(train.x[:stage_clips], train.y[:stage_clips], ctx.val_x[:256], ctx.val_y[:256])
    scores, times = {}, []
    for arch, g in genotypes.items():
        start = time.perf_counter()
        scores[arch] = train_stage(build_proxy(g, cfg, 0), data, cfg)
        times.append(1000 * (time.perf_counter() - start))
    return scores, float(np.median(times))


def ensemble_scores(members: Sequence[str], scores: Mapping[str, Mapping[str, float]]) -> dict:
    """{arch: mean rank over ``members``} for the archs every member scored."""
    archs = sorted(set.intersection(*(set(scores[m]) for m in members)))
    ranks = rank_many([[scores[m][a] for a in archs] for m in members])
    return dict(zip(archs, ranks, strict=True))


def choose_ensemble(
    scores: Mapping[str, Mapping[str, float]],
    gt: GroundTruth,
    max_size: int = 3,
    baselines: bool = False,
) -> tuple[list[str], float]:
    """The subset of scorers (2..max_size members) whose mean rank has the best Kendall tau
    on the calibration half; ``params`` and ``flops`` may be members only with ``baselines``.
    Returns (members, calibration tau)."""
    best: tuple[list[str], float] = ([], -2.0)
    names = [n for n in scores if baselines or n not in ("params", "flops")]
    for k in range(2, max_size + 1):
        for members in itertools.combinations(names, k):
            tau = gt.tau(ensemble_scores(members, scores), "calibration", resamples=0).tau
            if np.isfinite(tau) and tau > best[1]:
                best = (list(members), tau)
    return best


def agreement_rows(
    scores: Mapping[str, Mapping[str, float]], cost: Mapping[str, float], gt: GroundTruth
) -> list[dict[str, Any]]:
    """Per scorer: tau and rho on the evaluation half (all and top quartile), the
    calibration half's tau, and the cost per candidate."""
    rows = []
    for name, s in scores.items():
        ev = gt.tau(s, "evaluation")
        top = gt.tau(s, "evaluation", top_quartile=True)
        rows.append(
            {
                "scorer": name,
                **ev.to_dict(),
                "top_quartile_tau": top.tau,
                "top_quartile_tau_ci": list(top.tau_ci),
                "calibration_tau": gt.tau(s, "calibration", resamples=0).tau,
                "ms_per_candidate": cost.get(name, float("nan")),
            }
        )
    return sorted(rows, key=lambda r: -r["tau"] if np.isfinite(r["tau"]) else 2)


def best_of_n(
    scores: Mapping[str, float] | None,
    gt: GroundTruth,
    n: int,
    draws: int = 500,
    half: str = "evaluation",
    seed: int = 0,
) -> dict[str, float]:
    """Search by selection, simulated on the table: draw ``n`` architectures of ``half``
    uniformly, keep the one ``scores`` ranks best (``None``: the first drawn, i.e. random
    search with one training; ``"oracle"`` is not a scorer, pass true accuracies for it);
    its percentile in the table's random distribution, mean and SD over ``draws`` draws."""
    recs = [r for r in gt.archs(half) if scores is None or r.arch in scores]
    rng = np.random.default_rng([seed, n])
    picked = []
    for _ in range(draws):
        idx = rng.choice(len(recs), size=min(n, len(recs)), replace=False)
        best = idx[0] if scores is None else max(idx, key=lambda i: scores[recs[i].arch])
        picked.append(gt.percentile(recs[best].test_acc))
    return {"n": n, "mean": float(np.mean(picked)), "sd": float(np.std(picked)), "draws": draws}
