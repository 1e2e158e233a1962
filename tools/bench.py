"""Benchmark suite: search cost, search quality, the accuracy/latency plane, proxy faithfulness.

    python tools/bench.py run --mode quick --out runs/bench_quick     # ~10 min quiet 2-core CPU
    python tools/bench.py run --mode full --out runs/bench_full
    python tools/bench.py report --from runs/bench_quick              # re-make the report only
    python tools/bench.py groundtruth --workers 2                     # the ground-truth table
    python tools/bench.py regret runs/<search>/genotype.json          # percentile vs random
    python tools/bench.py latency                                     # latency table vs measured
    python tools/bench.py nse run --out runs/nse_bench                # search-space evolution
    python tools/bench.py patchmix run                                # PatchMix vs mixup, cutmix

``run`` measures every item in turn and rewrites ``DIR/results.json`` after each one, so a
crash or a kill loses at most the item in flight; running the same command again skips what
is already measured. ``report`` turns results.json into BENCHMARKS.md and PNG figures
(default: tools/studies/results/, i.e. the committed report; ``--report-dir`` to change).

The harness is tools/studies/harness.py, the modes tools/studies/modes.py, and each
section (what it runs, what it reports) a module of tools/studies/sections/.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from studies.cli import COMMANDS as GT_COMMANDS
from studies.cli import main as gt_main

ROOT = Path(__file__).resolve().parent.parent
#: bench.py <name> ...: the study module whose own ``main(argv)`` takes the rest
STUDY_SCRIPTS = {"nse": "studies.nse_bench", "patchmix": "studies.patchmix_bench"}
DEFAULT_REPORT_DIR = ROOT / "tools" / "studies" / "results"


def random_search(n: int, overrides: list[str], family: bool = False) -> None:
    """One random-search run in its own process (the quality section's, or with ``family``
    the front benchmark's random family: ``random-search --family --n N out_dir=...``)."""
    import torch
    from studies.harness import compose

    from hybridnas.config import SearchRun
    from hybridnas.engine.distributed import init_distributed
    from hybridnas.search.evolution.random_search import random_family
    from hybridnas.search.evolution.random_search import random_search as search

    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    cfg = compose("search", ["tracking=none", *overrides])
    run = random_family if family else search
    run(SearchRun.from_cfg(cfg), init_distributed(), Path(cfg.out_dir), n)


def parser(sections: list[str], modes: list[str]) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure, then write the report")
    r.add_argument("--mode", choices=modes, default="quick")
    r.add_argument("--out", type=Path, default=Path("runs/bench_quick"))
    r.add_argument(
        "--sections", default=",".join(sections), help=f"comma list out of {','.join(sections)}"
    )
    r.add_argument("--report-dir", type=Path, default=DEFAULT_REPORT_DIR)
    r.add_argument("--no-report", action="store_true")
    r.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per measured process (0: torch's default)",
    )
    p = sub.add_parser("report", help="write BENCHMARKS.md and figures from results.json")
    p.add_argument("--from", dest="src", type=Path, required=True)
    p.add_argument("--report-dir", type=Path, default=DEFAULT_REPORT_DIR)
    rs = sub.add_parser("random-search", help="one random-search run (--family: a family)")
    rs.add_argument("--n", type=int, required=True)
    rs.add_argument("--family", action="store_true", help="macro axes too; write family/")
    rs.add_argument("overrides", nargs="*")
    return ap


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in GT_COMMANDS:
        gt_main(argv)
        return
    if argv and argv[0] in STUDY_SCRIPTS:  # studies with their own sub-commands
        importlib.import_module(STUDY_SCRIPTS[argv[0]]).main(argv[1:])
        return
    if argv and argv[0] == "latency":
        from studies.latency_model import main as latency_main

        latency_main(argv[1:], DEFAULT_REPORT_DIR)
        return
    from studies.modes import MODES
    from studies.sections import SECTIONS, run_sections

    ap = parser(list(SECTIONS), list(MODES))
    args = ap.parse_args(argv)
    if args.cmd == "random-search":
        random_search(args.n, args.overrides, args.family)
        return
    from studies.report import write_report

    if args.cmd == "report":
        write_report(args.src, args.report_dir)
        return
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown sections {sorted(unknown)}")
    run_sections(args.mode, args.out, sections, args.threads)
    if not args.no_report:
        write_report(args.out, args.report_dir)


if __name__ == "__main__":
    main()
