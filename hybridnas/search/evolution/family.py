"""A family of found networks spanning the latency range (TinyVideoNets' TVN-1..4), not one net.

``pick_family`` chooses K evaluated candidates: with latency targets, the best cheap score
whose predicted ms is within each target; without, K members spread evenly along the Pareto
front of score (up) against predicted ms (down). ``write_family`` saves them as
``family/<k>.json`` (k = 1 the fastest), each trainable as
``genotype=runs/<search>/family/<k>.json``, and draws ``family.png``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybridnas.search.evolution.pareto import plane_front, plot_pareto
from hybridnas.space.genotype import Genotype


def pick_family(
    history: Sequence[Mapping[str, Any]], targets: Sequence[float], size: int
) -> list[tuple[int, float | None]]:
    """(history index, target ms or None) of each member, fastest first. With targets (taken
    in increasing order) each gets the best cheap score within it among candidates no smaller
    target took, so K targets give K distinct nets where the history allows; a target nothing
    is left for is left out."""
    if targets:
        picked: dict[int, float] = {}
        for t in sorted(targets):
            fits = [i for i, h in enumerate(history) if h["latency_ms"] <= t and i not in picked]
            if fits:
                best = max(fits, key=lambda i: (history[i]["score"], -history[i]["latency_ms"], -i))
                picked[best] = t
        members = list(picked.items())
    else:
        front = plane_front(history, "latency_ms", "score")
        spots = np.linspace(0, len(front) - 1, min(size, len(front))).round().astype(int)
        members = [(front[int(k)], None) for k in dict.fromkeys(spots.tolist())]
    return sorted(members, key=lambda m: (history[m[0]]["latency_ms"], m[0]))


def write_family(
    history: Sequence[Mapping[str, Any]],
    run_dir: Path,
    targets: Sequence[float],
    size: int,
    meta: Mapping[str, Any] | None = None,
) -> list[Path]:
    """``family/<k>.json`` for each member of ``pick_family`` (meta: its rank, target,
    predicted ms and cheap score, plus ``meta``), ``family/family.json`` (the list) and
    ``family.png``; returns the genotype paths."""
    out = Path(run_dir) / "family"
    out.mkdir(parents=True, exist_ok=True)
    members = pick_family(history, targets, size)
    paths, rows = [], []
    for k, (i, target) in enumerate(members, start=1):
        h = history[i]
        g = Genotype.from_json(h["genotype"])
        info = {"k": k, "of": len(members), "target_ms": target,
                "predicted_ms": round(float(h["latency_ms"]), 4), "score": h["score"]}  # fmt: skip
        g = g.replace(meta={**dict(g.meta), **(meta or {}), "family": info})
        g.save(out / f"{k}.json")
        paths.append(out / f"{k}.json")
        rows.append({**info, "key": h["key"], "flops": h.get("flops")})
    (out / "family.json").write_text(json.dumps(rows, indent=2))
    labels = [""] * len(history)
    for k, (i, _) in enumerate(members, start=1):
        labels[i] = f"#{k}"
    points = [{"latency_ms": h["latency_ms"], "score": h["score"]} for h in history]
    plot_pareto(points, "latency_ms", "score", run_dir / "family.png", labels=labels,
                ylabel="cheap score (family members numbered)")  # fmt: skip
    return paths
