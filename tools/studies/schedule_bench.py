"""SDAS's schedule against DARTS: total search time on the default recipe's schedule.

    python tools/bench.py schedule --repeats 3 --out runs/bench_schedule

Every variant runs the differentiable stage of ``recipes/recipe/*_video.yaml`` with the
default schedule's epochs (10) on the bench's quick space, each in its own process, repeats
interleaved round-robin (DARTS, SDAS, ..., then again) so the machine's load falls on all of
them alike; a variant's figure is its fastest repeat. Search seconds are the sum of the
per-epoch times the search logs (training, architecture steps, fixing and its perturbation
measurements, validation).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studies.harness import Results, measure_search
from studies.modes import MODES

EPOCHS = 10  # recipes/search.yaml search.epochs
STEPS = 4  # per epoch: short, the ratio is what is measured
#: variant -> (recipe, overrides on top of the space and schedule)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "darts": ("darts_video", []),
    "sdas_w3_full": ("sdas_video", ["search.warmup_epochs=3", "search.decide_at=1.0"]),
    "sdas_w1_full": ("sdas_video", ["search.warmup_epochs=1", "search.decide_at=1.0"]),
    # the default schedule (warm-up 1, decide_at 0.5), measured before beta_decay was on
    "sdas_default": ("sdas_video", ["search.beta_decay=0.0"]),
    "sdas_default_pt": ("sdas_video", ["search.beta_decay=0.0", "search.select=perturbation"]),
}


def overrides(variant: str) -> list[str]:
    space = [o for o in MODES["quick"]["space"]]
    base = [*space, "stage=differentiable", f"search.epochs={EPOCHS}"]
    return [*base, f"search.steps_per_epoch={STEPS}", "seed=0", *VARIANTS[variant][1]]


def run_schedule(out: Path, repeats: int, variants: list[str]) -> dict[str, Any]:
    """Measure every variant ``repeats`` times, interleaved; return the summary."""
    R = Results(out, "schedule", threads=1)
    for r in range(repeats):
        for v in variants:
            info = {"section": "schedule", "variant": v, "repeat": r}
            measure_search(R, f"{v}_r{r}", VARIANTS[v][0], overrides(v), info)
    return summarize(R)


def summarize(R: Results) -> dict[str, Any]:
    """Per variant: fastest repeat's search seconds, its per-epoch times, ratio to DARTS."""
    best: dict[str, dict] = {}
    for item in R.items.values():
        if item.get("rc") != 0 or not item.get("search_s"):
            continue
        v = item["variant"]
        if v not in best or item["search_s"] < best[v]["search_s"]:
            best[v] = item
    darts = best.get("darts", {}).get("search_s")
    rows = {
        v: {
            "search_s": b["search_s"],
            "x_darts": b["search_s"] / darts if darts else None,
            "epoch_s": b["epoch_s"],
            "repeats_s": [
                i["search_s"]
                for i in R.items.values()
                if i.get("variant") == v and i.get("search_s")
            ],
            "overrides": VARIANTS.get(v, ("", []))[1],
            "command": b["command"],
        }
        for v, b in best.items()
    }
    return {
        "epochs": EPOCHS,
        "steps_per_epoch": STEPS,
        "space": MODES["quick"]["space"],
        "rows": rows,
    }


def write_summary(summary: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1))
