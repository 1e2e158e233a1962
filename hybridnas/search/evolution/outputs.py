"""What the evolutionary stage logs and writes: per-cycle metrics, and at the end the best
genotype (genotype.json), how it was chosen (evolution_selection.json), every evaluated
candidate (evolution_history.jsonl) and the Pareto front over the cheap score, latency and
FLOPs (pareto.json; pareto.png draws score vs latency; W&B table and image).

``st`` is an ``evolution.EvolutionState`` and ``c`` an ``evolution.Context``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hybridnas.engine.tracking import METRICS_FILE, Tracker
from hybridnas.search.evolution.family import write_family
from hybridnas.search.evolution.pareto import pareto_front, plot_pareto
from hybridnas.space.genotype import Genotype

if TYPE_CHECKING:
    from hybridnas.search.evolution.rerank import Choice
    from hybridnas.search.evolution.state import Context, EvolutionState


def last_step(run_dir: Path) -> int:
    """Largest step logged so far by earlier stages (W&B steps must keep increasing)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return 0
    steps = [
        json.loads(line).get("_step", 0) for line in path.read_text().splitlines() if line.strip()
    ]
    return int(max(steps, default=0))


def log_cycle(st: EvolutionState, c: Context, tracker: Tracker, seconds: float) -> None:
    fits = [p["fitness"] for p in st.population]
    tracker.log(
        {
            "evolution/cycle": st.cycle,
            "evolution/best_fitness": st.best()["fitness"],
            "evolution/population_best_fitness": max(fits),
            "evolution/population_mean_fitness": float(np.mean(fits)),
            "evolution/evaluated": len(st.history),
            "time/evolution_cycle_s": seconds,
        },
        step=st.base_step + st.cycle,
    )
    if c.ctx.is_main:
        print(
            f"[hybridnas] evolution cycle {st.cycle}: best {st.best()['fitness']:.3f}, "
            f"population mean {np.mean(fits):.3f}, {len(st.history)} evaluated, {seconds:.1f}s"
        )


def _selection_meta(c: Context, choice: Choice) -> dict:
    """What genotype.json's meta says about how the genotype was chosen: nothing beyond
    ``proxy_fitness`` when the plain stage-1 proxy chose it (so such files keep their bytes)."""
    if c.scoring.cfg.scorer == "proxy" and (choice.reused or not choice.reranked):
        return {}
    fitness = choice.best.get("rerank_fitness", choice.best["fitness"])
    return {"selection": {"scorer": choice.scorer, "budget": choice.budget, "fitness": fitness}}


def _search_meta(c: Context) -> dict:
    """``clip_searched``: the dataset whose clips the evolution searched (when it moved the
    clip); training or evaluating on that dataset takes the genotype's frames, frame stride and
    size (``hybridnas.train.loop.genotype_clip``), another dataset keeps its own clip."""
    probs = c.cfg.evolution.mutation_probs
    return {"clip_searched": c.cfg.data.name} if len(probs) > 5 and probs[5] > 0 else {}


def _latency_meta(c: Context, best: dict) -> dict:
    """The budget (0: none), the chosen genotype's predicted ms and the latency table's key."""
    return {
        "budget_ms": c.cfg.evolution.latency_budget_ms,
        "predicted_ms": round(float(best["latency_ms"]), 4),
        "table": c.table.digest,
        "threads": c.table.key["threads"],
    }


def _write_pareto(st: EvolutionState, c: Context, run: Path) -> tuple[list[int], Path]:
    """pareto.json: the front over (score up, latency and FLOPs down); pareto.png: score vs
    latency, its line the front of those two objectives alone (a point of the 3-objective
    front may be dominated in the plane, by a point with more FLOPs). Returns the 3-objective
    front's indices and the PNG's path."""
    points = [{k: h[k] for k in ("score", "latency_ms", "flops")} for h in st.history]
    front = pareto_front(points, maximize=["score"], minimize=["latency_ms", "flops"])
    doc = {
        "objectives": {"maximize": ["score"], "minimize": ["latency_ms", "flops"]},
        "score": f"{c.scoring.cfg.scorer}: {st.history[0]['budget']}",
        "note": "front over all three objectives; pareto.png draws the front of score and "
        "latency_ms alone",
        "front": [
            {**points[i], "fitness": st.history[i]["fitness"], "key": st.history[i]["key"],
             "genotype": json.loads(st.history[i]["genotype"])}
            for i in front
        ],
    }  # fmt: skip
    (run / "pareto.json").write_text(json.dumps(doc, indent=2))
    ylabel = f"score ({c.scoring.cfg.scorer}, cheap tier)"
    png = plot_pareto(points, "latency_ms", "score", run / "pareto.png", ylabel=ylabel)
    return front, png


def write_outputs(
    st: EvolutionState, c: Context, tracker: Tracker, faith: dict, choice: Choice
) -> Genotype:
    """Best genotype (``choice``'s; genotype.json), history, how it was chosen
    (evolution_selection.json), Pareto front (JSON, PNG, W&B table and image)."""
    best = Genotype.from_json(choice.best["genotype"])
    if not c.ctx.is_main:
        return best
    run = c.run_dir
    step = st.base_step + st.cycle + 1
    meta = {"stage": "evolution", "proxy_fitness": choice.best["fitness"]}
    found = _search_meta(c)
    best = best.replace(meta={**dict(best.meta), **meta, **_selection_meta(c, choice), **found})
    if c.table is not None:
        latency = {**dict(best.meta.get("latency", {})), **_latency_meta(c, choice.best)}
        best = best.replace(meta={**best.meta, "latency": latency})
    best.save(run / "genotype.json")
    e = c.cfg.evolution
    write_family(st.history, run, e.latency_targets, e.family_size, found)
    with open(run / "evolution_history.jsonl", "w") as f:
        for h in st.history:
            f.write(json.dumps(h) + "\n")
    (run / "evolution_selection.json").write_text(json.dumps(choice.to_dict(), indent=2))
    front, png = _write_pareto(st, c, run)
    cols = ["score", "latency_ms", "flops", "fitness", "on_front"]
    rows = [
        [h["score"], h["latency_ms"], h["flops"], h["fitness"], i in front]
        for i, h in enumerate(st.history)
    ]
    tracker.log_table("evolution/candidates", cols, rows, step)
    tracker.log_image("evolution/pareto", png, step)
    summary = {
        "evolution/best_fitness": st.best()["fitness"],
        "evolution/chosen_fitness": choice.best["fitness"],
        "evolution/seed_fitness": st.history[0]["fitness"],
        "evolution/evaluated": len(st.history),
        "evolution/total_time_s": sum(st.cycle_times),
        "evolution/pareto_size": len(front),
    }
    if faith:
        if faith["tau"] is not None:
            summary["evolution/kendall_tau"] = faith["tau"]
            tracker.log({"evolution/kendall_tau": faith["tau"]}, step=step)
        (run / "faithfulness.json").write_text(json.dumps(faith, indent=2))
    tracker.summary(summary)
    tracker.log_json("genotype_evolution", best.to_dict())
    return best
