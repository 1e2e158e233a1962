"""Candidate scoring in the evolution (issue 11): scorer selection, equal-budget comparison of
the staged proxy, the two-tier rerank, and the in-run faithfulness check's validation."""

from __future__ import annotations

import pytest
import torch

from hybridnas.config import FaithfulnessConfig, FitnessConfig, ProxyConfig
from hybridnas.engine.distributed import DistContext
from hybridnas.search.evolution import rerank
from hybridnas.search.evolution.fitness import (
    REJECTED,
    LatencyBudget,
    Scoring,
    cheap_scores,
    check_scorers,
    normalised_ranks,
    proxy_stages,
    refit,
)
from hybridnas.search.scorers.proxy import ProxyData, build_proxy, train_stage
from hybridnas.space.genotype import CellSpec, Genotype

OPS = ("conv3d_3x3x3", "max_pool_1x3x3", "conv2plus1d_3x3x3", "skip")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _genotype(a: str, b: str, width: int = 4) -> Genotype:
    cell = CellSpec(edges=((0, 2, a), (1, 2, b), (0, 3, b), (2, 3, a)), concat=(2, 3))
    return Genotype(
        normal=cell, reduce=cell, stage_widths=(width, width, width), num_cells=3,
        stem_channels=4, frames=4, size=16, num_classes=4,
    )  # fmt: skip


def _genotypes(n: int) -> list[Genotype]:
    pairs = [(a, b) for a in OPS[:3] for b in OPS if a != b]
    return [_genotype(*pairs[k]) for k in range(n)]


def _scoring(cfg: FitnessConfig, stage_clips=(16, 16), budget=None) -> Scoring:
    g = torch.Generator().manual_seed(0)
    data = ProxyData(
        torch.randn(sum(stage_clips), 3, 4, 16, 16, generator=g),
        torch.randint(0, 4, (sum(stage_clips),), generator=g),
        torch.randn(16, 3, 4, 16, 16, generator=g),
        torch.randint(0, 4, (16,), generator=g),
    )
    proxy = ProxyConfig(stage_clips=tuple(stage_clips), batch_size=8, val_clips=16, lr=0.1)
    return Scoring(cfg, proxy, data, 0, DistContext(), None, budget)


def _entry(key: str, fitness: float, latency_ms: float = 1.0, genotype: Genotype | None = None):
    g = genotype or _genotype(*OPS[:2])
    return {"key": key, "genotype": g.to_json(), "fitness": fitness, "latency_ms": latency_ms,
            "scores": {"proxy": fitness}, "budget": "proxy stage 1"}  # fmt: skip


# ---------------------------------------------------------------- A. scorer selection


def test_fitness_config_validates_names():
    assert FitnessConfig("ensemble:synflow+naswot").components == ("synflow", "naswot")
    assert FitnessConfig("synflow").rank_based and not FitnessConfig("proxy").rank_based
    assert FitnessConfig(scorer="zico", rerank_scorer="none").rerank_scorer is None
    for bad in ({"scorer": "synflw"}, {"scorer": "ensemble:synflow+nope"}):
        with pytest.raises(ValueError, match="unknown"):
            check_scorers(FitnessConfig(**bad))
    for bad in ({"rerank_scorer": "synflow"}, {"rerank_top": 0}):
        with pytest.raises(ValueError):
            FitnessConfig(**bad)


def test_zero_cost_scores_become_ranks_and_take_the_latency_penalty():
    # Raw scores on unrelated scales (one negative): the score is the normalised rank, and
    # the MnasNet penalty (budget 2 ms, weight 1) halves the rank of the 4 ms candidate.
    s = _scoring(FitnessConfig("ensemble:synflow+naswot"), budget=LatencyBudget(2.0, "penalty", 1))
    raw = [(120.0, -3.0), (80.0, -1.0), (100.0, -2.0)]
    hist = [
        {"key": str(k), "latency_ms": 4.0 if k == 0 else 1.0,
         "scores": {"synflow": a, "naswot": b}}
        for k, (a, b) in enumerate(raw)
    ]  # fmt: skip
    pop = [dict(hist[0])]
    refit(hist, [pop], s)
    # ranks: synflow 3,1,2; naswot 1,3,2 -> mean 2,2,2 -> all 2/3
    assert [h["score"] for h in hist] == pytest.approx([2 / 3] * 3)
    assert hist[0]["fitness"] == pytest.approx(2 / 3 * 0.5)
    assert pop[0]["fitness"] == hist[0]["fitness"]  # copied to the population by key
    assert normalised_ranks([[float("nan"), 1.0, 2.0]]) == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_registered_scorer_sees_proxy_clips_and_records_raw_values():
    s = _scoring(FitnessConfig("ensemble:params+flops"))
    assert tuple(s.context.x.shape) == (16, 3, 4, 16, 16) and s.context.batch_size == 8
    gens = [_genotype(*OPS[:2], width=w) for w in (4, 8)]
    scores = cheap_scores(gens, s)
    assert set(scores[0]) == {"params", "flops"}
    assert scores[1]["params"] > scores[0]["params"] and scores[1]["flops"] > scores[0]["flops"]


# ---------------------------------------------------------------- B. equal budget


def test_proxy_scores_every_candidate_at_stage_one_only():
    # Old behaviour: with two stages, the promoted half's score was its stage-2 accuracy and
    # was compared with the others' stage-1 accuracy. Now every score is the stage-1 one.
    s = _scoring(FitnessConfig("proxy"))
    gens = _genotypes(4)
    scores = cheap_scores(gens, s)
    for g, got in zip(gens, scores, strict=True):
        t = build_proxy(g, s.proxy, s.seed)
        assert got["proxy"] == train_stage(t, s.data, s.proxy)  # one stage, same seed and clips


def test_successive_halving_promotes_the_best_half_by_stage_one():
    s = _scoring(FitnessConfig("proxy"))
    acc = proxy_stages(_genotypes(4), s, 2)
    promoted = sorted(acc, key=lambda k: (-acc[k][0], k))[:2]
    assert sorted(k for k in acc if len(acc[k]) == 2) == sorted(promoted)
    assert all(len(acc[k]) == 1 for k in acc if k not in promoted)


# ---------------------------------------------------------------- C. two-tier selection


def _history(n: int) -> list[dict]:
    gens = _genotypes(n)
    return [_entry(f"g{k}", 0.9 - 0.1 * k, genotype=gens[k]) for k in range(n)]


def test_proxy_rerank_chooses_only_among_candidates_at_the_final_stage(monkeypatch):
    # g0 is best at stage 1 but drops in stage 2; g2 was not promoted (stage 1 only) with a
    # stage-1 accuracy above every stage-2 one; g3 is outside rerank_top. g1 must win.
    fake = {0: [0.9, 0.30], 1: [0.5, 0.60], 2: [0.95]}
    monkeypatch.setattr(rerank, "proxy_stages", lambda gens, s, stages: fake)
    s = _scoring(FitnessConfig("proxy", "proxy", rerank_top=3))
    hist = _history(4)
    choice = rerank.choose(hist, s)
    assert choice.best["key"] == "g1" and not choice.reused
    assert "stage 2" in choice.budget
    assert hist[2]["rerank_scores"] == [0.95] and "rerank_fitness" not in hist[2]
    assert "rerank_scorer" not in hist[3]
    assert [r["key"] for r in choice.reranked] == ["g0", "g1", "g2"]


def test_oneshot_rerank_overrides_the_cheap_order_and_skips_rejects(monkeypatch):
    oneshot = [0.2, 0.7, 0.4]  # for g0, g2, g3 (the top 3 that are not rejected)
    monkeypatch.setattr(rerank, "registered_scores", lambda name, gens, s: oneshot[: len(gens)])
    s = _scoring(FitnessConfig("synflow", "oneshot", rerank_top=3))
    hist = _history(4)
    hist[1]["fitness"] = REJECTED  # over the latency budget: not reranked while others remain
    choice = rerank.choose(hist, s)
    assert [r["key"] for r in choice.reranked] == ["g0", "g2", "g3"]
    assert choice.best["key"] == "g2" and choice.best["rerank_score"] == 0.7


def test_rerank_at_the_cheap_budget_reuses_scores_and_none_keeps_the_cheap_best(monkeypatch):
    def boom(*_a, **_k):
        raise AssertionError("nothing to measure: the rerank budget is the selection budget")

    monkeypatch.setattr(rerank, "proxy_stages", boom)
    hist = _history(3)
    choice = rerank.choose(hist, _scoring(FitnessConfig("proxy", "proxy"), stage_clips=(16,)))
    assert choice.reused and choice.best["key"] == "g0"
    assert rerank.choose(_history(3), _scoring(FitnessConfig("proxy", None))).best["key"] == "g0"


# ---------------------------------------------------------------- D. faithfulness


def test_faithfulness_needs_eight_candidates_or_none():
    assert FaithfulnessConfig(samples=0).samples == 0
    assert FaithfulnessConfig(8).samples == 8
    with pytest.raises(ValueError, match=">= 8"):
        FaithfulnessConfig(samples=3)


def test_trained_scorer_cycles_every_proxy_clip_and_says_its_budget():
    s = _scoring(FitnessConfig("ensemble:naswot+proxy_1cycle"))
    assert len(s.context.train_x) == 32 and len(s.context.x) == 16
    scores = cheap_scores(_genotypes(2), s)
    assert all(set(d) == {"naswot", "proxy_1cycle"} for d in scores)
    assert all(d["proxy_1cycle"] < 0 for d in scores)  # a negated loss
    from hybridnas.search.evolution.fitness import budget_label

    label = budget_label("proxy_1cycle", s)
    assert "1536 clips cycling 32" in label and "loss on 16 val clips" in label
    assert "x2 seeds: 1536 clips" in budget_label("proxy_1cycle_x2", s)
