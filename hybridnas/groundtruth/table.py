"""The ground-truth table: load it, split it, rank against it.

::

    gt = GroundTruth.load()                     # the table shipped with the package
    gt.archs("evaluation")                      # one record per architecture of that half
    gt.percentile(0.71)                         # % of uniformly drawn archs below accuracy 0.71
    gt.tau({arch_id: score, ...})               # Kendall tau / Spearman rho with 95% intervals
    gt.noise_ceiling()                          # tau between the two seeds of the paired archs

The target of every ranking is an architecture's test accuracy averaged over its seeds (every
architecture of the shipped table has two; ``truth="seed0"`` ranks by the first alone).
Scorers and search settings may be tuned on the ``calibration`` half only; every reported tau
uses the ``evaluation`` half.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybridnas.measure.rank import Agreement, rank_agreement

TABLE_PATH = Path(__file__).parent / "data" / "groundtruth.jsonl"
HALVES = ("calibration", "evaluation")


def percentile_of(values: np.ndarray, x: float) -> float:
    """Percent of ``values`` below ``x``, ties counted half (50: the median)."""
    return float(100 * (np.mean(values < x) + 0.5 * np.mean(values == x)))


@dataclass(frozen=True)
class ArchRecord:
    """One architecture of the table: its seed-0 entry and the test accuracy of every seed."""

    arch: str
    split: str
    test_acc: float
    seed_accs: dict[int, float]
    entry: dict[str, Any]

    @property
    def genotype(self) -> dict[str, Any]:
        return self.entry["genotype"]


class GroundTruth:
    """The table's entries (one per trained (architecture, seed)) and the statistics over them."""

    def __init__(self, entries: Sequence[Mapping[str, Any]], truth: str = "mean") -> None:
        """``truth``: what an architecture's accuracy is: ``seed0`` (every arch has it) or
        ``mean`` over the seeds it was trained with (less noise where pairs exist)."""
        if truth not in ("seed0", "mean"):
            raise ValueError(f"truth must be 'seed0' or 'mean', got {truth!r}")
        self.truth = truth
        self.entries = [dict(e) for e in entries]
        by_arch: dict[str, dict[int, dict[str, Any]]] = {}
        for e in self.entries:
            by_arch.setdefault(e["arch"], {})[int(e["seed"])] = e
        self._records = {}
        for arch, seeds in by_arch.items():
            if 0 not in seeds:
                continue
            accs = {k: v["test_acc"] for k, v in seeds.items()}
            acc = accs[0] if truth == "seed0" else float(np.mean(list(accs.values())))
            self._records[arch] = ArchRecord(arch, seeds[0]["split"], acc, accs, seeds[0])

    @classmethod
    def load(
        cls, path: str | Path | None = None, recipe: str | None = None, truth: str = "mean"
    ) -> GroundTruth:
        """Read a JSONL table (default: the shipped one); keep entries of one recipe hash
        (default: the hash of the first entry, so a table never mixes recipes)."""
        path = Path(path) if path else TABLE_PATH
        if not path.is_file():
            raise FileNotFoundError(f"ground-truth table not found: {path}")
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if entries:
            recipe = recipe or entries[0]["recipe"]
            entries = [e for e in entries if e["recipe"] == recipe]
        return cls(entries, truth)

    def archs(self, half: str | None = None) -> list[ArchRecord]:
        """Records of every architecture (or of one half), in table order."""
        if half is not None and half not in HALVES:
            raise ValueError(f"half must be one of {HALVES}, got {half!r}")
        return [r for r in self._records.values() if half is None or r.split == half]

    def __len__(self) -> int:
        return len(self._records)

    def accuracies(self, half: str | None = None) -> np.ndarray:
        return np.array([r.test_acc for r in self.archs(half)])

    def percentile(self, accuracy: float) -> float:
        """Percent of the table's (uniformly drawn) architectures that ``accuracy`` beats,
        ties counted half: 50 is the median random architecture."""
        return percentile_of(self.accuracies(), accuracy)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Seed-0 and seed-1 test accuracies of the architectures trained twice."""
        paired = [r for r in self.archs() if 1 in r.seed_accs]
        return (
            np.array([r.seed_accs[0] for r in paired]),
            np.array([r.seed_accs[1] for r in paired]),
        )

    def noise_ceiling(self) -> Agreement:
        """Rank agreement of the recipe with itself: seed 0 vs seed 1 over the paired archs."""
        a, b = self.pairs()
        return rank_agreement(a, b)

    def seed_sd(self) -> float:
        """Per-architecture SD between seeds (pooled over pairs: |a - b| / sqrt(2) in RMS)."""
        a, b = self.pairs()
        return float(np.sqrt(np.mean((a - b) ** 2) / 2))

    def arch_sd(self) -> float:
        """SD across architectures of their accuracy (seed 0's, or the mean over seeds)."""
        return float(np.std(self.accuracies(), ddof=1))

    def tau(
        self,
        scores: Mapping[str, float],
        half: str = "evaluation",
        top_quartile: bool = False,
        resamples: int = 1000,
    ) -> Agreement:
        """Agreement of ``scores`` ({arch id: score}, higher = better) with test accuracy over
        one half's architectures that have a score; ``top_quartile`` keeps only the half's
        best quarter by true accuracy (where rank agreement usually falls)."""
        recs = [r for r in self.archs(half) if r.arch in scores and np.isfinite(scores[r.arch])]
        if top_quartile:
            cut = np.percentile([r.test_acc for r in recs], 75)
            recs = [r for r in recs if r.test_acc >= cut]
        if len(recs) < 3:  # e.g. a scorer run on the other half only
            nan = float("nan")
            return Agreement(len(recs), nan, (nan, nan), nan, (nan, nan))
        return rank_agreement(
            [scores[r.arch] for r in recs], [r.test_acc for r in recs], resamples=resamples
        )


def spread_summary(gt: GroundTruth, archs: Collection[str] | None = None) -> dict[str, float]:
    """Seed SD, architecture SD (seed 0, across the archs) and their ratio over the paired
    architectures of ``gt`` (only those in ``archs`` if given): the discriminativeness figures
    of a recipe, comparable between two tables on the same architectures."""
    paired = {r.arch for r in gt.archs() if 1 in r.seed_accs and (archs is None or r.arch in archs)}
    if len(paired) < 2:
        raise ValueError(
            f"need at least 2 architectures trained with seeds 0 and 1, got {len(paired)}"
        )
    sub = GroundTruth([e for e in gt.entries if e["arch"] in paired], truth="seed0")
    a, b = sub.pairs()
    return {
        "pairs": len(paired),
        "seed_sd": sub.seed_sd(),
        "arch_sd": sub.arch_sd(),
        "ratio": sub.arch_sd() / max(sub.seed_sd(), 1e-9),
        "mean_acc": float(np.mean((a + b) / 2)),
    }
