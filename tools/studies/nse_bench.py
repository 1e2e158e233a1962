"""Search-space evolution on the built-in task: NSE over a pool of every registered op vs one
supernet holding the whole pool vs the default 8-op supernet, at equal supernet steps.

    python tools/bench.py nse run --out runs/nse_bench --worker 0 --workers 2  # one of two
    python tools/bench.py nse summary --out runs/nse_bench             # -> tools/studies/results

Each search runs alone in a child process on one thread; its peak memory is the child's
ru_maxrss (``getrusage`` via ``os.wait4``: the whole process's resident set, Python, torch and
data included). Each found genotype's cells are then trained with the ground-truth recipe and
placed as a percentile of the table's random architectures (``tools/bench.py regret``).
Resumable: a finished search or ground-truth training is a JSON file under ``--out/records``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from hybridnas.ops import list_ops
from studies.harness import run_child, search_cmd

RESULTS = Path(__file__).resolve().parent / "results"
# The ground truth's skeleton (the default space) on its 16 px clips, no latency term (a
# table per op set would be measured first); 54 supernet steps of 16 clips per search.
COMMON = [
    "stage=differentiable",
    "data.size=16",
    "data.digit_px=6",
    "data.batch_size=16",
    "search.steps_per_epoch=6",
    "search.warmup_epochs=1",
    "search.latency_weight=0",
]
POOL = "[" + ",".join(list_ops()) + "]"
ARMS = {
    "nse": [  # 3 rounds x 3 epochs; 11 candidates (+ none) per round; sees all 25 pool ops
        "search.epochs=3",
        "search.nse.rounds=3",
        "search.nse.keep=4",
        "search.nse.batch=7",
    ],
    "whole_pool": ["search.epochs=9", f"model.op_names={POOL}"],  # 26 ops on every edge
    "default8": ["search.epochs=9"],  # recipes/search.yaml's model.op_names
}
SEEDS = (0, 1, 2)
GT_SEEDS = (0, 1)


def jobs() -> list[tuple[str, int]]:
    return [(arm, seed) for seed in SEEDS for arm in ARMS]


def _record(out: Path, name: str) -> dict | None:
    path = out / "records" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _put(out: Path, name: str, rec: dict) -> None:
    path = out / "records" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1))


def search(out: Path, arm: str, seed: int) -> dict:
    """One search (skipped when recorded with rc 0); its record."""
    name = f"{arm}_s{seed}"
    rec = _record(out, name)
    if rec and rec["rc"] == 0:
        return rec
    run_dir = out / "runs" / name
    cmd = search_cmd("sdas_video", [*COMMON, *ARMS[arm], f"seed={seed}"], run_dir, threads=1)
    print(f"[nse-bench] {name}: search", flush=True)
    rec = run_child(cmd, out / "logs" / f"{name}.log", threads=1)
    rec |= {"arm": arm, "seed": seed, "run_dir": str(run_dir)}
    gpath = run_dir / "genotype.json"
    if gpath.is_file():
        rec["genotype"] = json.loads(gpath.read_text())
        rec["search_time_s"] = rec["genotype"]["meta"].get("search_time_s")
    _put(out, name, rec)
    print(
        f"[nse-bench]   rc {rec['rc']}, {rec['wall_s']} s, peak {rec['maxrss_mb']} MB", flush=True
    )
    return rec


def ground_truth(out: Path, arm: str, seed: int, gt_seed: int) -> None:
    """Train the found genotype with the ground-truth recipe (seed ``gt_seed``); record it."""
    from hybridnas.groundtruth import regret

    name = f"{arm}_s{seed}_gt{gt_seed}"
    if _record(out, name):
        return
    print(f"[nse-bench] {name}: ground-truth training", flush=True)
    rec = regret(str(out / "runs" / f"{arm}_s{seed}" / "genotype.json"), (gt_seed,))
    _put(out, name, {**rec, "arm": arm, "seed": seed, "gt_seed": gt_seed})
    print(
        f"[nse-bench]   test {rec['test_acc']:.3f}, percentile {rec['percentile']:.1f}", flush=True
    )


def run(out: Path, worker: int, workers: int) -> None:
    mine = [j for k, j in enumerate(jobs()) if k % workers == worker]
    for arm, seed in mine:
        if search(out, arm, seed)["rc"] == 0:
            ground_truth(out, arm, seed, GT_SEEDS[0])
    for gt_seed in GT_SEEDS[1:]:
        for arm, seed in mine:
            if (_record(out, f"{arm}_s{seed}") or {}).get("rc") == 0:
                ground_truth(out, arm, seed, gt_seed)


def mean_sd(values: list[float]) -> list[float] | None:
    if not values:
        return None
    return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def summary(out: Path) -> dict:
    """Per arm: peak RSS, search seconds, test top-1 and percentile (mean over the finished
    ground-truth seeds per search), each as mean +- SD over search seeds; raw records too."""
    from hybridnas.groundtruth.table import GroundTruth

    gt = GroundTruth.load()
    raw, arms = [], {}
    for arm, seed in jobs():
        rec = _record(out, f"{arm}_s{seed}")
        if not rec or rec["rc"] != 0:
            continue
        trained = [r for g in GT_SEEDS if (r := _record(out, f"{arm}_s{seed}_gt{g}"))]
        acc = statistics.mean(r["test_acc"] for r in trained) if trained else None
        row = {
            "arm": arm,
            "seed": seed,
            "maxrss_mb": rec["maxrss_mb"],
            "wall_s": rec["wall_s"],
            "cpu_s": rec["cpu_s"],
            "search_time_s": rec.get("search_time_s"),
            "gt_seeds": [r["gt_seed"] for r in trained],
            "test_acc": acc,
            "percentile": gt.percentile(acc) if acc is not None else None,
            "genotype": rec.get("genotype"),
        }
        raw.append(row)
        arms.setdefault(arm, []).append(row)
    table = {}
    for arm, rows in arms.items():
        table[arm] = {
            "seeds": [r["seed"] for r in rows],
            "overrides": [*COMMON, *ARMS[arm]],
            **{
                key: {"per_seed": [r[key] for r in rows], "mean_sd": mean_sd(
                    [r[key] for r in rows if r[key] is not None])}
                for key in ("maxrss_mb", "search_time_s", "cpu_s", "test_acc", "percentile")
            },
        }  # fmt: skip
    doc = {"measure": "peak RSS = ru_maxrss of the search process (os.wait4)", "arms": table}
    (RESULTS / "nse_runs.json").write_text(json.dumps(raw, indent=1))
    (RESULTS / "nse_summary.json").write_text(json.dumps(doc, indent=1))
    return doc


LABELS = {
    "nse": "NSE, 3 rounds of 12 ops (none + 4 kept + 7 fresh) over the 26-op pool",
    "whole_pool": "one supernet of the whole 26-op pool",
    "default8": "one supernet of the default 8 ops",
}


def _fmt(cell: dict, digits: int = 0) -> str:
    if not cell["mean_sd"]:
        return "-"
    mean, sd = cell["mean_sd"]
    return f"{mean:.{digits}f} +- {sd:.{digits}f}"


def table_markdown(doc: dict) -> str:
    """The section's table: one row per arm, mean +- SD over the search seeds."""
    lines = [
        "| arm | seeds | peak RSS MB | search s (loop) | search CPU s | test top-1 | "
        "percentile | percentile per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, row in doc["arms"].items():
        per_seed = ", ".join(
            "-" if p is None else f"{p:.0f}" for p in row["percentile"]["per_seed"]
        )
        lines.append(
            f"| {LABELS[arm]} | {len(row['seeds'])} | {_fmt(row['maxrss_mb'])} | "
            f"{_fmt(row['search_time_s'])} | {_fmt(row['cpu_s'])} | "
            f"{_fmt(row['test_acc'], 3)} | {_fmt(row['percentile'])} | {per_seed} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="tools/bench.py nse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--worker", type=int, default=0)
    r.add_argument("--workers", type=int, default=1)
    s = sub.add_parser("summary")
    s.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.out, args.worker, args.workers)
    else:
        print(table_markdown(summary(args.out)))
