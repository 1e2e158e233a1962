"""Rank agreement of two score lists: Kendall tau and Spearman rho with bootstrap 95% intervals
(a scorer against the ground truth, or a cheap score against a longer training)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Agreement:
    """Rank agreement of scores with truth: point estimates and bootstrap 95% intervals."""

    n: int
    tau: float
    tau_ci: tuple[float, float]
    rho: float
    rho_ci: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "tau": self.tau,
            "tau_ci": list(self.tau_ci),
            "rho": self.rho,
            "rho_ci": list(self.rho_ci),
        }

    def __str__(self) -> str:
        lo, hi = self.tau_ci
        return f"tau {self.tau:+.3f} [{lo:+.3f}, {hi:+.3f}] rho {self.rho:+.3f} (n={self.n})"


def rank_agreement(
    scores: Sequence[float], truth: Sequence[float], resamples: int = 1000, seed: int = 0
) -> Agreement:
    """Kendall tau and Spearman rho of ``scores`` vs ``truth`` (same length, >= 3 pairs), with
    percentile intervals from ``resamples`` bootstrap resamples of the pairs. A score that is
    constant gives NaN, never a made-up 0."""
    x, y = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"need >= 3 (score, truth) pairs of equal length, got {len(x)}, {len(y)}")
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(resamples):
        idx = rng.integers(0, len(x), len(x))
        taus.append(_tau(x[idx], y[idx]))
        rhos.append(_rho(x[idx], y[idx]))
    return Agreement(len(x), _tau(x, y), _interval(taus), _rho(x, y), _interval(rhos))


def _tau(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.kendalltau(x, y).statistic)


def _rho(x: np.ndarray, y: np.ndarray) -> float:
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def _interval(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (float("nan"), float("nan"))
    return (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5)))
