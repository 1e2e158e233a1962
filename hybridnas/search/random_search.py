"""Random search: ``n`` genotypes drawn uniformly from the space (every node two distinct
earlier inputs, every op uniform), each scored by the evolution's staged proxy; the best by
proxy accuracy (the first of a tie) is the result. A baseline for the hybrid search at equal
compute (tools/bench.py, section 2).

Draws come from ``np.random.default_rng([seed, 11])``, so a seed gives the same candidates.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from hybridnas.engine.distributed import DistContext
from hybridnas.space.genotype import Genotype
from hybridnas.stage_config import SearchRun


def random_search(cfg: SearchRun, ctx: DistContext, run_dir: Path, n: int) -> Genotype:
    """Score ``n`` uniform genotypes of ``cfg``'s space; write ``run_dir``/genotype.json (the
    best) and candidates.jsonl (accuracy, latency, FLOPs of each); return the best."""
    from hybridnas.search.evolution import chain_genotype, evaluate, make_context
    from hybridnas.search.mutations import Guidance, sample_genotype

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
