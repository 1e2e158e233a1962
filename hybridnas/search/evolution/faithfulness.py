"""In-run check of the selection score: Kendall tau (with a bootstrap 95% interval) between the
cheap score of ``samples`` candidates spread over the history's ranking and their accuracy
after a longer, wider training.

Off by default (``evolution.faithfulness.samples: 0``): fewer than 8 candidates give a tau
that can only take a handful of values and an interval spanning most of [-1, 1], and 8 full-width
trainings of ``faithfulness_clips`` clips take several minutes on 2 CPU cores. The ground-truth
benchmark (``python tools/bench.py``) is the measurement to trust; this check is a sanity
check for a run on a larger machine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hybridnas.config import FaithfulnessConfig, ProxyConfig
from hybridnas.measure.rank import rank_agreement
from hybridnas.search.evolution.fitness import Scoring, gather, shard
from hybridnas.search.scorers.proxy import build_proxy, train_stage
from hybridnas.space.genotype import Genotype


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def check_faithfulness(history: list[dict], s: Scoring, f: FaithfulnessConfig) -> dict[str, Any]:
    """Train up to ``f.samples`` candidates (spread evenly over the history sorted by cheap
    ``score``) at ``f.width_scale`` for ``f.clips`` clips without inheritance; returns the
    scores, reference accuracies, tau / rho with 95% intervals (None where uncomputable:
    tied scores), or {} with fewer than 3 candidates."""
    ranked = sorted(history, key=lambda h: h["score"])
    n = min(f.samples, len(ranked))
    if n < 3:
        return {}
    picks = [ranked[int(round(i))] for i in np.linspace(0, len(ranked) - 1, n)]
    wider = {"width_scale": f.width_scale, "stage_clips": (f.clips,), "inherit": False}
    ref = ProxyConfig(**{**s.proxy.__dict__, **wider})
    local = {}
    for k in shard(n, s.dist):
        t = build_proxy(Genotype.from_json(picks[k]["genotype"]), ref, s.seed, None, s.dist.device)
        local[k] = train_stage(t, s.data, ref)
    full = gather(local, s.dist)
    scores = [p["score"] for p in picks]
    reference = [full[k] for k in range(n)]
    a = rank_agreement(scores, reference)
    return {
        "scorer": s.cfg.scorer,
        "budget": picks[0]["budget"],
        "n": n,
        "tau": _none_if_nan(a.tau),
        "tau_ci": [_none_if_nan(v) for v in a.tau_ci],
        "rho": _none_if_nan(a.rho),
        "rho_ci": [_none_if_nan(v) for v in a.rho_ci],
        "keys": [p["key"] for p in picks],
        "scores": scores,
        "reference": reference,
    }
