"""The bench's sections, one module each: ``run(R, m)`` measures the section's items into the
results file (skipping what is already measured), ``report(r)`` writes its part of
BENCHMARKS.md (and its figures). ``run_sections`` runs a list of them in turn."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from studies.harness import Results, loadavg, machine_info
from studies.markdown import ReportInput
from studies.modes import MODES
from studies.sections import (
    cost,
    cost_long,
    evo_ranks,
    faithfulness,
    plane,
    quality,
    scaling,
    train,
)

SECTIONS: dict[str, Callable[[Results, dict], None]] = {
    "cost": cost.run,  # with the frames and cells sweeps (scaling)
    "cost_long": cost_long.run,
    "quality": quality.run,
    "train": train.run,
    "faithfulness": faithfulness.run,
    "evo_ranks": evo_ranks.run,
}
# the report's parts, in order
REPORTS: tuple[Callable[[ReportInput], list[str]], ...] = (
    cost.report,
    cost_long.report,
    scaling.report,
    quality.report,
    train.report,
    plane.report,
    faithfulness.report,
    plane.report_gpu,
    evo_ranks.report,
)


def run_sections(mode: str, out: Path, sections: list[str], threads: int = 1) -> Results:
    """Measure ``sections`` of ``mode`` into ``out``/results.json (rewritten after each item)."""
    import torch

    if threads:
        torch.set_num_threads(threads)  # in-process scoring, latency and proxies
    m = MODES[mode]
    R = Results(out, mode, threads)
    meta = R.doc["meta"]
    meta.setdefault("started", time.strftime("%Y-%m-%d %H:%M:%S"))
    meta.setdefault("load_at_start", loadavg())
    meta["machine"] = machine_info()
    meta["threads"] = threads
    meta["command"] = f"python tools/bench.py run --mode {mode} --out {out} --threads {threads}"
    meta["config"] = m
    R.save()
    t0 = time.perf_counter()
    for name in sections:
        s0 = time.perf_counter()
        SECTIONS[name](R, m)
        meta.setdefault("section_s", {})[name] = round(time.perf_counter() - s0, 1)
        R.save()
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    meta["load_at_end"] = loadavg()
    meta["last_run_s"] = round(time.perf_counter() - t0, 1)
    R.save()
    return R
