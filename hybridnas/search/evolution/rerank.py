"""The expensive tier: rescore the best candidates of an evolution and choose among them only.

At the end of the run the ``rerank_top`` entries of the history with the highest cheap fitness
(over-budget rejects left out unless nothing else is left) are scored by ``rerank_scorer``:

- ``proxy``: every one is trained from scratch through all stages of
  ``evolution.proxy.stage_clips`` with successive halving among them, so the final stage's
  accuracy exists only for the promoted ones and only they are compared by it;
- ``oneshot``: each one's path through the trained supernet (scorers.oneshot).

The final genotype is the best of the entries holding a rerank score at the rerank's final
budget, by that score under the latency budget; cheap and expensive scores are never compared.
The history is searched, not just the population: aging evolution reports the best ever seen,
and a top candidate should not lose the rerank for its age.

When the rerank would measure exactly what the cheap tier did (``proxy`` with one stage after a
``proxy`` search, or ``oneshot`` after ``oneshot``) the cheap scores are reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hybridnas.search.evolution.fitness import (
    REJECTED,
    Scoring,
    apply_budget,
    budget_label,
    proxy_stages,
    registered_scores,
)
from hybridnas.space.genotype import Genotype


@dataclass
class Choice:
    """The chosen entry, how it was chosen, and the rerank table (empty without a rerank)."""

    best: dict
    scorer: str
    budget: str
    reused: bool = False
    reranked: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "best_key": self.best["key"],
            "chosen_by": self.scorer,
            "budget": self.budget,
            "reused_cheap_scores": self.reused,
            "reranked": self.reranked,
        }


def top_entries(history: list[dict], n: int) -> list[dict]:
    """The ``n`` entries of highest cheap fitness (stable: earlier first on ties), rejects
    only when nothing else is left."""
    ranked = sorted(history, key=lambda h: -h["fitness"])
    kept = [h for h in ranked if h["fitness"] > REJECTED] or ranked
    return kept[:n]


def _reuses(s: Scoring) -> bool:
    """True when the rerank would measure what the cheap tier already measured."""
    same = s.cfg.rerank_scorer == s.cfg.scorer
    return same and (s.cfg.scorer == "oneshot" or len(s.proxy.stage_clips) == 1)


def _measure(top: list[dict], s: Scoring) -> tuple[list[list[float]], int]:
    """Rerank scores of ``top`` per budget step (proxy: per stage), and how many steps the
    final budget has."""
    genotypes = [Genotype.from_json(h["genotype"]) for h in top]
    if s.cfg.rerank_scorer == "proxy":
        stages = len(s.proxy.stage_clips)
        acc = proxy_stages(genotypes, s, stages)
        return [acc[k] for k in range(len(top))], stages
    return [[v] for v in registered_scores("oneshot", genotypes, s)], 1


def choose(history: list[dict], s: Scoring) -> Choice:
    """The final entry: by the rerank (see the module docstring), or without one by the cheap
    fitness (first on ties). Reranked history entries get ``rerank_scorer``,
    ``rerank_budget``, ``rerank_scores`` (per stage) and, at the final budget,
    ``rerank_score`` and ``rerank_fitness``."""
    name = s.cfg.rerank_scorer
    if name is None:
        return Choice(max(history, key=lambda h: h["fitness"]), s.cfg.scorer, history[0]["budget"])
    top = top_entries(history, s.cfg.rerank_top)
    reused = _reuses(s)
    if reused:
        per_step, final = [[h["scores"][name]] for h in top], 1
    else:
        per_step, final = _measure(top, s)
    budget = budget_label(name, s, stages=final)
    for h, values in zip(top, per_step, strict=True):
        h.update(rerank_scorer=name, rerank_budget=budget, rerank_scores=values)
        if len(values) == final:
            h["rerank_score"] = values[-1]
            h["rerank_fitness"] = apply_budget(values[-1], h["latency_ms"], s.budget)
    finalists = [h for h in top if "rerank_fitness" in h]
    best = max(finalists, key=lambda h: h["rerank_fitness"])
    table = [
        {k: h.get(k) for k in ("key", "fitness", "rerank_scores", "rerank_fitness")} for h in top
    ]
    return Choice(best, name, budget, reused, table)
