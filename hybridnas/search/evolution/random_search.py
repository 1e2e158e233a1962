"""Random search: ``n`` genotypes drawn uniformly from the space (every node two distinct
earlier inputs, every op uniform), each scored by the evolution's staged proxy; the best by
proxy accuracy (the first of a tie) is the result. A baseline for the hybrid search at equal
compute (tools/bench.py, section 2). ``random_family`` is the same baseline for a family:
the macro axes drawn too, the family picked as the evolution picks its own.

Draws come from ``np.random.default_rng([seed, 11])``, so a seed gives the same candidates.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from hybridnas.config import SearchRun
from hybridnas.engine.distributed import DistContext
from hybridnas.search.evolution.mutations import MacroRanges
from hybridnas.space.genotype import Genotype


def random_search(cfg: SearchRun, ctx: DistContext, run_dir: Path, n: int) -> Genotype:
    """Score ``n`` uniform genotypes of ``cfg``'s space; write ``run_dir``/genotype.json (the
    best) and candidates.jsonl (accuracy, latency, FLOPs of each); return the best."""
    from hybridnas.search.evolution.loop import chain_genotype, evaluate, make_context
    from hybridnas.search.evolution.mutations import Guidance, sample_genotype

    run_dir.mkdir(parents=True, exist_ok=True)
    c = make_context(cfg, ctx, run_dir)
    rng = np.random.default_rng([cfg.seed, 11])
    guidance = Guidance.uniform(list(cfg.model.op_names))
    template = chain_genotype(cfg)
    gens = [sample_genotype(template, rng, guidance) for _ in range(n)]
    start = time.perf_counter()
    results = evaluate(gens, c)
    best = max(range(n), key=lambda k: (results[k]["accuracy"], -k))
    gens[best].save(run_dir / "genotype.json")
    with open(run_dir / "candidates.jsonl", "w") as f:
        for r in results:
            f.write(json.dumps({k: r[k] for k in ("accuracy", "latency_ms", "flops")}) + "\n")
    print(
        f"[bench] random search: {n} candidates in {time.perf_counter() - start:.1f} s, "
        f"best proxy accuracy {results[best]['accuracy']:.3f}"
    )
    return gens[best]


def random_macro(g: Genotype, rng: np.random.Generator, ranges: MacroRanges) -> Genotype:
    """``g`` with every macro axis the evolution searches drawn uniformly from its ranges:
    frames and frame stride (their product within ``ranges.span``), size, cell count, and one
    width multiplier (1 or one of ``ranges.width_mults``) on every stage width and the stem."""
    from hybridnas.space.macro import round_width

    clips = [(f, s) for f in ranges.frames for s in ranges.frame_stride if f * s <= ranges.span]
    frames, stride = clips[int(rng.integers(len(clips)))]
    lo, hi = ranges.num_cells
    mults = (1.0, *ranges.width_mults)
    mult = float(mults[int(rng.integers(len(mults)))])
    return g.replace(
        frames=frames,
        frame_stride=stride,
        size=int(ranges.size[int(rng.integers(len(ranges.size)))]),
        num_cells=int(rng.integers(lo, hi + 1)),
        stage_widths=tuple(round_width(w * mult) for w in g.stage_widths),
        stem_channels=round_width(g.stem_channels * mult),
    )


def random_family(cfg: SearchRun, ctx: DistContext, run_dir: Path, n: int) -> list[Path]:
    """Score ``n`` uniform genotypes (cells and macro axes) with the evolution's cheap scorer
    and cost model, and write the family the evolution would pick from them (its latency
    targets, or its Pareto front and family size) to ``run_dir``/family/, with
    candidates.jsonl; return the family's genotype paths."""
    from hybridnas.search.evolution.family import write_family
    from hybridnas.search.evolution.loop import chain_genotype, evaluate, make_context
    from hybridnas.search.evolution.macro_mutations import macro_ranges
    from hybridnas.search.evolution.mutations import Guidance, sample_genotype

    run_dir.mkdir(parents=True, exist_ok=True)
    c = make_context(cfg, ctx, run_dir)
    rng = np.random.default_rng([cfg.seed, 12])
    guidance = Guidance.uniform(list(cfg.model.op_names))
    template, ranges = chain_genotype(cfg), macro_ranges(cfg)
    gens = [random_macro(sample_genotype(template, rng, guidance), rng, ranges) for _ in range(n)]
    start = time.perf_counter()
    results = evaluate(gens, c)
    with open(run_dir / "candidates.jsonl", "w") as f:
        for r in results:
            f.write(json.dumps({k: r.get(k) for k in ("key", "score", "latency_ms", "flops")}))
            f.write("\n")
    e = cfg.evolution
    meta = {"method": "random", "seed": cfg.seed, "candidates": n}
    paths = write_family(results, run_dir, e.latency_targets, e.family_size, meta)
    print(f"[bench] random family: {n} candidates in {time.perf_counter() - start:.1f} s")
    return paths
