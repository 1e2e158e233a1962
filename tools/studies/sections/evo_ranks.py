"""Section 6: evolution cycle time with 1 and 2 ranks (tools/bench_evolution.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from studies.harness import Results, run_child
from studies.markdown import ReportInput, fmt, short, table


def run(R: Results, m: dict) -> None:
    for n in (1, 2):
        key = f"evo_ranks_{n}"
        if R.done(key):
            continue
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={n}",
            "tools/bench_evolution.py",
            f"out_dir={R.out / 'runs' / key}",
            "overwrite=true",
            *m["evo_ranks"],
        ]
        print(f"[bench] {key}", flush=True)
        rec = run_child(cmd, R.out / "logs" / f"{key}.log", R.threads)
        rec |= {"section": "evo_ranks", "ranks": n}
        for line in Path(rec["log"]).read_text().splitlines():
            if line.startswith("{") and "mean_cycle_s" in line:
                rec |= json.loads(line)
        R.put(key, rec)


def report(r: ReportInput) -> list[str]:
    L = ["## 6. Evolution with 1 vs 2 ranks (issue 5)\n"]
    ev = {v["ranks"]: v for v in r.section("evo_ranks", ok=False)}
    if not ev:
        return [*L, "Not measured in this run.\n"]
    rows = [
        [
            str(n),
            fmt(v.get("mean_cycle_s"), 2),
            str(v.get("cycle_times_s", "n/a")),
            fmt(v.get("seed_population_s"), 2),
            str(v.get("threads", "n/a")),
            str(v.get("rc")),
        ]
        for n, v in sorted(ev.items())
    ]
    head = ["ranks", "mean cycle s", "cycle times s", "seed population s", "threads/rank", "rc"]
    L.append(table(head, rows))
    if 1 in ev and 2 in ev and ev[1].get("mean_cycle_s") and ev[2].get("mean_cycle_s"):
        L.append(
            f"\n2 ranks / 1 rank cycle time: "
            f"**{ev[2]['mean_cycle_s'] / ev[1]['mean_cycle_s']:.2f}**"
            f" (1 torch thread per rank, `BENCH_THREADS=1`; on a 2-core box shared with other "
            f"jobs the second rank competes with them for a core).\n"
        )
    cmd = short(ev[min(ev)].get("command", ""), r.out)
    L.append(f"Command: `{cmd}` (and `--nproc_per_node=2`).\n")
    return L
