"""BENCHMARKS.md and its PNG figures from a bench folder's results.json (tools/bench.py).

Re-runnable: ``python tools/bench.py report --from DIR [--report-dir tools/studies/results]``.
Each section (tools/studies/sections/) writes its own part; this module adds the header
and, when ``<report-dir>/reading.md`` exists, a hand-written reading under "Reading".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from studies.markdown import ReportInput, fmt
from studies.ops_report import ops_section
from studies.signal_report import signal_sections


def header(r: ReportInput) -> list[str]:
    meta, mach = r.meta, r.meta.get("machine", {})
    mode = meta.get("mode", "?")
    return [
        "# hybridnas benchmarks\n",
        f"Made by `python tools/bench.py run --mode {mode} --out $BENCH` (one run, one machine, "
        f"every number below), then `python tools/bench.py report --from $BENCH`. The raw "
        f"measurements are in [results.json](results.json) (copied from `$BENCH/results.json`); "
        f"each row's exact command is in its `command` field ($BENCH = the bench folder).\n",
        f"- Mode: **{mode}**; started {meta.get('started')}, finished {meta.get('finished', '?')}"
        f" ({fmt(meta.get('last_run_s', 0) / 60, 1)} min for the last invocation; "
        f"sections: {meta.get('section_s', {})} s).",
        f"- Machine: {mach.get('cpus')} CPU cores, torch {mach.get('torch')}, Python "
        f"{mach.get('python')}, {mach.get('platform')}; GPU: {mach.get('gpu') or 'none'}.",
        f"- **Load**: 1/5/15-min load average {meta.get('load_at_start')} at the start and "
        f"{meta.get('load_at_end')} at the end; each row below also records the load before and "
        f"after it (results.json `load_before`/`load_after`). The box was shared with other "
        f"jobs; on 2 cores a load of ~6 means this suite got roughly a third of the machine, "
        f"so absolute seconds are inflated and noisy. Compare **ratios within one table** "
        f"(runs were interleaved in the same period), not seconds across machines.\n",
        f"Space and data shared by every search and training: "
        f"`{' '.join(r.cfg.get('space', []))}`.\n",
    ]


def reading(dst: Path) -> list[str]:
    notes = dst / "reading.md"
    if notes.is_file():
        return ["## Reading\n", notes.read_text().strip() + "\n"]
    return [
        "## Reading\n",
        "(no hand-written reading yet: put it in reading.md next to this file and re-run "
        "the report)\n",
    ]


def write_report(src: str | Path, dst: str | Path) -> Path:
    from studies.sections import REPORTS

    src, dst = Path(src), Path(dst)
    doc = json.loads((src / "results.json").read_text())
    dst.mkdir(parents=True, exist_ok=True)
    r = ReportInput(meta=doc["meta"], items=doc["items"], out=str(src), dst=dst)
    lines = header(r)
    for part in REPORTS:
        lines += part(r)
    lines += ops_section(dst)
    lines += signal_sections(dst)
    lines += reading(dst)
    (dst / "BENCHMARKS.md").write_text("\n".join(lines) + "\n")
    if src.resolve() != dst.resolve():
        shutil.copyfile(src / "results.json", dst / "results.json")
    print(f"[bench] report written to {dst / 'BENCHMARKS.md'}")
    return dst / "BENCHMARKS.md"
