"""Search quality on the ground truth: does a method find better cells than random sampling?

    python tools/bench.py quality --seeds 0,1,2 --out runs/bench_gt_quality

Each method searches the default space at equal compute (equal weight-training clips, the
budgets of ``studies.modes.budgets``) with each seed; every found genotype's cells are
then trained with the ground-truth recipe (the table's seeds) and placed as a percentile in the
table's random distribution (``tools/bench.py regret``)::

    method x seed --search (child process)--> genotype.json --regret--> percentile, FLOPs

Searches and regrets are items of one results.json (``studies.harness.Results``), so a
killed run continues where it stopped. The summary (per method: percentile mean and SD over
seeds, FLOPs, search seconds) goes to ``tools/studies/results/quality_gt.json``, which the
"Search quality on the ground truth" section of BENCHMARKS.md is made from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from hybridnas.groundtruth.table import GroundTruth
from hybridnas.search.evolution.mutations import can_remove
from hybridnas.space.genotype import Genotype
from studies.harness import Results, measure_search
from studies.markdown import mean_sd
from studies.modes import budgets, differentiable_overrides
from studies.sections.quality import _evolution_alone, _hybrid, _random

#: The search budget: the ground truth's skeleton (the default space) on 16 px clips with
#: 6 px digits, the resolution the table's networks see; 8 epochs x 10 steps x 16 clips.
MODE: dict[str, Any] = {
    "space": ["data.size=16", "data.digit_px=6", "data.batch_size=16"],
    "epochs": 8,
    "steps_per_epoch": 10,
    "warmup_epochs": 2,
    "proxy_clips": 64,
    "proxy_val_clips": 128,
    "hybrid_population": 4,
    "evo_population": 6,
    "children": 2,
}

METHODS: dict[str, str] = {
    "hybrid": "hybrid (SDAS + evolution), warm-up 2, decide_at 1.0",
    "hybrid_fast": "hybrid (SDAS + evolution), warm-up 1, decide_at 0.5 (today's default)",
    "hybrid_beta": "hybrid, warm-up 1, decide_at 0.5, beta_decay 0.05",
    "hybrid_zico": "hybrid, warm-up 1, decide_at 0.5, evolution.fitness.scorer=zico",
    "hybrid_norerank": "hybrid_fast with no rerank: the cheap score (proxy) picks the genotype",
    "hybrid_ens": "hybrid_fast scored by ensemble:naswot+proxy_1cycle, no rerank",
    "hybrid_ens2": "hybrid_fast scored by ensemble:naswot+proxy_1cycle+proxy_1cycle_x2, no rerank",
    "sdas": "SDAS alone, warm-up 2, decide_at 1.0 (the earlier default schedule)",
    "sdas_pt": "SDAS alone, warm-up 2, decide_at 1.0, perturbation selection",
    "sdas_fast": "SDAS alone, warm-up 1, decide_at 0.5",
    "darts": "DARTS",
    "random": "random search (proxy-scored)",
    "evolution": "evolution alone (EvaNet-style)",
    "hybrid_evo": "hybrid, longer evolution (LONG_EVOLUTION), alpha-guided rewiring",
    "hybrid_multi": "hybrid, longer evolution, alpha-guided, nodes may take up to 3 inputs",
    "hybrid_assemble": "hybrid, longer evolution, up to 3 inputs, rewiring guided by each "
    "parent's learned connection weights (AssembleNet)",
    "hybrid_assemble_weakest": "as hybrid_assemble, but a removal takes the parent's weakest "
    "connection (evolution.drop_policy=weakest)",
}
# The rewiring comparison (issue: AssembleNet connection weights) runs a longer evolution than
# the equal-compute rows: in those, 6 children train 64 clips each, too few rewires to compare
# and too little training for a connection weight to move. The rewiring rows share it.
LONG_EVOLUTION = [
    "evolution.population=4",
    "evolution.cycles=5",
    "evolution.proxy.stage_clips=[512]",
]
MULTI_INPUT = ["evolution.mutation_probs=[0.3,0.3,0.2,0.1,0.1]", "evolution.max_inputs=3"]
# The scorer that ranked the table best, given the data it was measured with there: 1536
# training clips to cycle (the search's proxy data is what its stages consume) and 500 held-out
# clips. Not equal compute: each candidate trains 1536 full-width clips instead of 64 at half.
ENSEMBLE = [
    "evolution.fitness.scorer=ensemble:naswot+proxy_1cycle",
    "evolution.proxy.stage_clips=[1536]",
    "evolution.proxy.val_clips=500",
]
# The calibration half's choice once the two-seed proxy_1cycle_x2 was scored on the table.
ENSEMBLE2_SCORER = "evolution.fitness.scorer=ensemble:naswot+proxy_1cycle+proxy_1cycle_x2"
# the defaults when the first rows were measured: edges decided by the last epoch, no beta term
EARLIER = ["search.decide_at=1.0", "search.beta_decay=0.0"]


def _fast(overrides: list[str], beta_decay: float = 0.0) -> list[str]:
    """``overrides`` with the fast schedule (warm-up 1, decide_at 0.5) and the beta term."""
    kept = [o for o in overrides if not o.startswith("search.warmup_epochs=")]
    fast = ["search.warmup_epochs=1", "search.decide_at=0.5"]
    return [*kept, *fast, f"search.beta_decay={beta_decay}"]


def _with(overrides: list[str], extra: list[str]) -> list[str]:
    """``overrides`` with ``extra`` appended, replacing any earlier value of the same keys."""
    keys = {o.split("=", 1)[0] for o in extra}
    return [*(o for o in overrides if o.split("=", 1)[0] not in keys), *extra]


def _long_evolution(seed: int, extra: list[str]) -> list[str]:
    """Today's hybrid with the longer evolution of the rewiring comparison, plus ``extra``."""
    return _with(_fast(_hybrid(MODE, budgets(MODE), seed)), [*LONG_EVOLUTION, *extra])


def _search(R: Results, method: str, seed: int) -> dict | None:
    """Run one method's search with ``seed`` (skipped when done); its results item."""
    b = budgets(MODE)
    key, info = f"q_{method}_s{seed}", {"section": "gt_quality", "seed": seed, "method": method}
    differentiable = [*differentiable_overrides(MODE), f"seed={seed}"]
    if method == "hybrid":
        measure_search(R, key, "sdas_video", [*_hybrid(MODE, b, seed), *EARLIER], info)
    elif method == "hybrid_fast":
        measure_search(R, key, "sdas_video", _fast(_hybrid(MODE, b, seed)), info)
    elif method == "hybrid_beta":
        measure_search(R, key, "sdas_video", _fast(_hybrid(MODE, b, seed), 0.05), info)
    elif method == "hybrid_zico":
        zico = [*_fast(_hybrid(MODE, b, seed)), "evolution.fitness.scorer=zico"]
        measure_search(R, key, "sdas_video", zico, info)
    elif method in ("hybrid_norerank", "hybrid_ens", "hybrid_ens2"):
        extra = {"hybrid_ens": ENSEMBLE, "hybrid_ens2": _with(ENSEMBLE, [ENSEMBLE2_SCORER])}
        overrides = _with(
            _fast(_hybrid(MODE, b, seed)),
            [*extra.get(method, []), "evolution.fitness.rerank_scorer=none"],
        )
        measure_search(R, key, "sdas_video", overrides, info)
    elif method == "sdas":
        measure_search(R, key, "sdas_video", [*differentiable, *EARLIER], info)
    elif method == "sdas_pt":
        pt = [*differentiable, *EARLIER, "search.select=perturbation"]
        measure_search(R, key, "sdas_video", pt, info)
    elif method == "sdas_fast":
        measure_search(R, key, "sdas_video", _fast(differentiable), info)
    elif method == "darts":
        measure_search(R, key, "darts_video", differentiable, info)
    elif method == "evolution":
        measure_search(R, key, "sdas_video", _evolution_alone(R, MODE, b, seed), info)
    elif method == "random":
        _random(R, MODE, b, seed, info)
    elif method == "hybrid_evo":
        measure_search(R, key, "sdas_video", _long_evolution(seed, []), info)
    elif method == "hybrid_multi":
        measure_search(R, key, "sdas_video", _long_evolution(seed, MULTI_INPUT), info)
    elif method in ("hybrid_assemble", "hybrid_assemble_weakest"):
        assemble = [*MULTI_INPUT, "evolution.rewire_guidance=connections"]
        if method == "hybrid_assemble_weakest":
            assemble.append("evolution.drop_policy=weakest")
        measure_search(R, key, "sdas_video", _long_evolution(seed, assemble), info)
    else:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    return R.items.get(key)


def _regret(R: Results, method: str, seed: int, gt_seeds: tuple[int, ...]) -> None:
    """Train the found genotype with the ground-truth recipe; store its percentile."""
    from hybridnas.groundtruth.regret import regret

    key = f"regret_{method}_s{seed}"
    found = R.items.get(f"q_{method}_s{seed}") or {}
    if R.done(key) or not found.get("genotype"):
        return
    print(f"[bench] {key}: ground-truth training of {found['genotype']}", flush=True)
    rec = regret(found["genotype"], gt_seeds)
    R.put(key, {**rec, "rc": 0, "method": method, "seed": seed})
    print(f"[bench]   percentile {rec['percentile']:.1f} (test {rec['test_acc']:.3f})", flush=True)


def run_quality(
    out: Path,
    methods: list[str],
    seeds: list[int],
    gt_seeds: tuple[int, ...],
    search_only: bool = False,
    merge: tuple[Path, ...] = (),
    summary_only: bool = False,
) -> dict:
    """Search, then regret, every (method, seed); returns the summary. ``search_only``: the
    searches alone (their regrets on a later call). ``merge``: results folders of other
    processes (e.g. other seeds run in parallel) whose items join this one's. ``summary_only``:
    run nothing, summarise what is there."""
    import torch

    torch.set_num_threads(1)
    R = Results(out, "gt_quality", threads=1)
    for other in merge:
        for key, item in Results(other).items.items():
            R.items.setdefault(key, item)
    R.doc["meta"] |= {"config": MODE, "budgets": budgets(MODE), "gt_seeds": list(gt_seeds)}
    R.save()
    for seed in [] if summary_only else seeds:
        for method in methods:
            _search(R, method, seed)
            if not search_only:
                _regret(R, method, seed, gt_seeds)
    return summarize(R)


REWIRING = ("hybrid_evo", "hybrid_multi", "hybrid_assemble", "hybrid_assemble_weakest")
#: (method, against): the rewiring comparisons the summary tests, each one-sided (method better)
REWIRING_TESTS = (
    ("hybrid_assemble", "hybrid_evo"),
    ("hybrid_multi", "hybrid_evo"),
    ("hybrid_assemble", "hybrid_multi"),
    ("hybrid_assemble_weakest", "hybrid_multi"),
)


def permutation_p(a: list[float], b: list[float]) -> float | None:
    """One-sided exact permutation test of mean(a) > mean(b): the share of all splits of a + b
    into groups of len(a) and len(b) whose mean difference is at least the observed one (scipy
    enumerates them all when ``n_resamples`` is infinite). None if either group is empty."""
    if not a or not b:
        return None
    res = stats.permutation_test(
        (a, b),
        lambda x, y: np.mean(x) - np.mean(y),
        permutation_type="independent",
        alternative="greater",
        n_resamples=np.inf,
    )
    return float(res.pvalue)


def rewiring_diagnostics(R: Results, method: str = "hybrid_assemble") -> dict:
    """What the learned connection weights looked like in ``method``'s searches (the
    evolution history beside each found genotype): the spread of each candidate's weights,
    and how often a rewire or drop removed the weakest of the parent's connections it could
    remove (against the share uniform draws give)."""
    sds, weights, removals, weakest, uniform = [], [], 0, 0, 0.0
    searches = [v for k, v in sorted(R.items.items()) if k.startswith(f"q_{method}_s")]
    for search in (s for s in searches if s.get("genotype")):
        path = Path(search["genotype"]).parent / "evolution_history.jsonl"
        history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        learned = {h["key"]: h["connections"] for h in history if h.get("connections")}
        for rows in learned.values():
            w = [r[2] for cell in rows.values() for r in cell]
            sds.append(float(np.std(w)))
            weights += w
        genotypes = {h["key"]: h["genotype"] for h in history}
        for h in history:
            m, parent = h.get("mutation") or {}, learned.get(h.get("parent", ""))
            if m.get("kind") not in ("rewire", "drop_input") or parent is None:
                continue
            spec = Genotype.from_json(genotypes[h["parent"]]).cell(m["cell"])
            cell = {(i, j): w for i, j, w in parent[m["cell"]] if can_remove(spec, j, m["kind"])}
            removals += 1
            weakest += int(cell[tuple(m["removed"])] == min(cell.values()))
            uniform += 1 / len(cell)
    if not sds:
        return {}
    return {
        "candidates": len(sds),
        "weight_sd_mean": float(np.mean(sds)),
        "weight_min": float(min(weights)),
        "weight_max": float(max(weights)),
        "removals": removals,
        "removed_weakest": weakest,
        "removed_weakest_uniform": uniform,
    }


def summarize(R: Results, gt: GroundTruth | None = None) -> dict:
    """Per method: percentiles per seed, their mean and SD, test top-1, FLOPs, search seconds.
    Percentiles are placed in ``gt`` (default: the shipped table, each architecture's mean
    over its seeds) at summary time, so a table grown after the searches ranks them anew."""
    gt = gt or GroundTruth.load(truth="mean")
    rows = {}
    for method, label in METHODS.items():
        regrets = [v for k, v in R.items.items() if k.startswith(f"regret_{method}_s")]
        searches = [v for k, v in R.items.items() if k.startswith(f"q_{method}_s")]
        if not searches:
            continue
        pct = [gt.percentile(r["test_acc"]) for r in regrets]
        rows[method] = {
            "label": label,
            "seeds": [r["seed"] for r in regrets],
            "percentiles": pct,
            "percentile_mean_sd": mean_sd(pct),
            "test_acc": [r["test_acc"] for r in regrets],
            "mflops": mean_sd([r["flops"] / 1e6 for r in regrets])[0],
            "search_wall_s": mean_sd([s["wall_s"] for s in searches if s.get("rc") == 0])[0],
            "failed": [s.get("seed") for s in searches if s.get("rc") != 0],
        }
    table = {"archs": len(gt), "truth": gt.truth}
    summary = {"meta": {**R.doc["meta"], "table": table}, "methods": rows}
    if any(m in rows for m in REWIRING):
        summary["meta"]["long_evolution"] = LONG_EVOLUTION
        summary["diagnostics"] = {
            m: rewiring_diagnostics(R, m)
            for m in ("hybrid_assemble", "hybrid_assemble_weakest")
            if m in rows
        }
        summary["tests"] = [
            {
                "method": a,
                "against": b,
                "p": permutation_p(rows[a]["percentiles"], rows[b]["percentiles"]),
            }
            for a, b in REWIRING_TESTS
            if a in rows and b in rows
        ]
    return summary


def write_summary(summary: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=1))
