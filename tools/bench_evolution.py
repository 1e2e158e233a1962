"""Run the evolutionary stage alone from a chain genotype and print its cycle times.

    torchrun --nproc_per_node=1 tools/bench_evolution.py out_dir=/tmp/bench1 [key=value ...]
    torchrun --nproc_per_node=2 tools/bench_evolution.py out_dir=/tmp/bench2 [key=value ...]

Takes the same keys as tools/search.py (recipes/search.yaml); the tests also use it as the
process they kill. Prints one JSON line on rank 0: cycle times (seed population excluded).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import hybridnas  # noqa: F401
from hybridnas.config import SearchRun
from hybridnas.engine.distributed import cleanup, init_distributed
from hybridnas.engine.tracking import Tracker
from hybridnas.search.evolution.loop import chain_genotype, load_state, run_evolution

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def main(overrides: list[str]) -> None:
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
        cfg = compose("search", overrides=["tracking=none", *overrides])
    ctx = init_distributed()
    run_dir = Path(cfg.out_dir)
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(run_dir, None, enabled=ctx.is_main)
    try:
        run = SearchRun.from_cfg(cfg)
        run_evolution(run, ctx, run_dir, tracker, chain_genotype(run))
        if ctx.is_main:
            st = load_state(run_dir / "checkpoints" / "evolution_last.pt")
            times = st.cycle_times[1:]
            print(
                json.dumps(
                    {
                        "world_size": ctx.world_size,
                        "threads": torch.get_num_threads(),
                        "cycle_times_s": [round(t, 2) for t in times],
                        "mean_cycle_s": round(sum(times) / max(len(times), 1), 2),
                        "seed_population_s": round(st.cycle_times[0], 2),
                    }
                )
            )
    finally:
        cleanup()


if __name__ == "__main__":
    main(sys.argv[1:])
