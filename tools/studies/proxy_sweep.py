"""Trained-proxy variants against the ground truth: which short training ranks faithfully.

::

    v = ProxyVariant(width_scale=1.0, clips=1024, batch_size=64, lr=0.2, schedule="onecycle")
    scores, ms = variant_scores(v, genotypes, clips)   # {reading: {arch: score}}, ms/candidate
    gt.tau(scores["loss_batch_256"], "calibration")

One training per candidate yields several readings at once (so scoring choices cost no extra
training): accuracy or negative cross-entropy (``acc`` / ``loss``; loss is less quantised than
accuracy on a few hundred clips), with BatchNorm on batch statistics or on its running
averages (``batch`` / ``eval``), on the first 256 or all of the held-out clips, and the same
readings after each of ``early`` clip counts (early-epoch readings of the same run).

The variants themselves live in ``hybridnas.search.scorers.proxy_variants`` (the best one is a
registered scorer). Here they train on the ground-truth recipe's training clips; the held-out
clips are its ``search_val`` clips, never the test clips the truth is measured on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hybridnas.search.scorers.proxy_variants import (  # noqa: F401  (re-exported for the bench's users)
    SCHEDULES,
    ProxyVariant,
    clip_order,
    lr_factor,
    read_scores,
    train_variant,
)
from hybridnas.space.genotype import Genotype


def variant_scores(
    variant: ProxyVariant, genotypes: Mapping[str, Genotype], clips: Mapping[str, Any]
) -> tuple[dict[str, dict[str, float]], float]:
    """Every reading of ``variant`` for every genotype ({arch: genotype}; ``clips`` as
    ``groundtruth.load_clips`` returns them). Returns ({reading: {arch: score}}, median ms
    per candidate, readings included)."""
    scores: dict[str, dict[str, float]] = {}
    times = []
    for arch, g in genotypes.items():
        start = time.perf_counter()
        for k, v in train_variant(g, variant, clips["train"], clips["search_val"]).items():
            scores.setdefault(k, {})[arch] = v
        times.append(1000 * (time.perf_counter() - start))
    return scores, float(np.median(times))


def sweep(
    variants: Sequence[ProxyVariant],
    genotypes: Mapping[str, Genotype],
    clips: Mapping[str, Any],
    gt: Any,
    half: str = "calibration",
) -> list[dict[str, Any]]:
    """One row per (variant, reading): Kendall tau on ``half`` (no interval), the readings'
    spread (how many distinct values) and the mean accuracy, and ms per candidate."""
    rows = []
    for v in variants:
        scores, ms = variant_scores(v, genotypes, clips)
        for reading, s in scores.items():
            acc_key = reading.replace("loss_", "acc_")
            accs = scores.get(acc_key, {})
            rows.append(
                {
                    "variant": v.label(),
                    "reading": reading,
                    "tau": gt.tau(s, half, resamples=0).tau,
                    "distinct": len(set(np.round(list(s.values()), 6))),
                    "mean_acc": float(np.mean(list(accs.values()))) if accs else float("nan"),
                    "ms_per_candidate": ms,
                    "n": len(s),
                }
            )
        best = max((r for r in rows if r["variant"] == v.label()), key=lambda r: r["tau"])
        print(
            f"[sweep] {v.label()}: {ms / 1000:.1f} s/cand, best {best['reading']} "
            f"tau {best['tau']:+.3f}",
            flush=True,
        )
    return rows


def subsample(gt: Any, genotypes: Mapping[str, Genotype], half: str, n: int, seed: int = 0):
    """``n`` of ``half``'s architectures (seeded draw, table order kept) as {arch: genotype}."""
    archs = [r.arch for r in gt.archs(half) if r.arch in genotypes]
    keep = sorted(np.random.default_rng(seed).choice(len(archs), min(n, len(archs)), False))
    return {archs[i]: genotypes[archs[i]] for i in keep}
