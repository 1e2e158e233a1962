"""Train the shipped found net (genotype=builtin) with none / mixup / cutmix / patchmix
(searched policy) / patchmix (random grid) on a small and the full built-in training set, a
few seeds each, one run at a time; resumable (each finished run is a line of the JSONL).

    python tools/bench.py patchmix run --policy runs/patchmix_search/policy.yaml
    python tools/bench.py patchmix summary   # mean +- SD per set and method -> summary JSON

Test top-1 is the last epoch's (train.py validates on the built-in test split, so the best
epoch would select on test).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from studies.patchmix_report import load_policy_record

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "runs" / "patchmix_bench"
RESULTS = ROOT / "tools" / "studies" / "results" / "patchmix_runs.jsonl"
SUMMARY = ROOT / "tools" / "studies" / "results" / "patchmix_summary.json"
POLICY = ROOT / "tools" / "studies" / "results" / "patchmix_policy.yaml"  # the searched, committed

# The common recipe: 16 px clips (digits of 6 px), 8 frames, no EMA (too few updates for one).
COMMON = [
    "recipe=train_builtin",
    "genotype=builtin",
    "data.size=16",
    "data.digit_px=6",
    "train.ema=false",
    "threads=1",
    "tracking=none",
    "engine=none",
    "overwrite=true",
]
SETS = {
    "small": ["data.num_train=500", "train.epochs=6"],
    "full": ["data.num_train=1500", "train.epochs=3"],
    # an extra, after the 30: does mixing pay once the small set is trained 3x longer?
    "small_long": ["data.num_train=500", "train.epochs=18"],
}
METHODS = {
    "none": [],
    "mixup": ["train.mixup=0.8"],
    "cutmix": ["train.cutmix=1.0"],
    "patchmix_searched": ["train.mix=patchmix", "train.patchmix.policy={policy}"],
    "patchmix_random": ["train.mix=patchmix"],  # grid 2x2x2, random tubes, random pairs
    # an extra ablation: the searched policy without the patch-level loss
    "patchmix_searched_no_patch_loss": [
        "train.mix=patchmix",
        "train.patchmix.policy={policy}",
        "train.patchmix.patch_loss=0",
    ],
}
MAIN = ("none", "mixup", "cutmix", "patchmix_searched", "patchmix_random")


def done_runs(path: Path) -> set[tuple[str, str, int]]:
    if not path.is_file():
        return set()
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["set"], r["method"], r["seed"]) for r in rows}


def command(code: Path, set_name: str, method: str, seed: int, policy: str) -> list[str]:
    out = OUT / f"{set_name}_{method}_s{seed}"
    args = [a.format(policy=policy) for a in METHODS[method]]
    extra = [*COMMON, *SETS[set_name], *args, f"seed={seed}", f"out_dir={out}"]
    return [sys.executable, str(code / "tools" / "train.py"), *extra]


def run_one(code: Path, set_name: str, method: str, seed: int, policy: str) -> dict:
    """Train one run in a subprocess; its last epoch's test top-1 and wall seconds."""
    cmd = command(code, set_name, method, seed, policy)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(code), "WANDB_MODE": "offline"}
    start = time.time()
    subprocess.run(cmd, check=True, env=env, cwd=code, capture_output=True)
    import torch

    ckpt = torch.load(
        OUT / f"{set_name}_{method}_s{seed}" / "checkpoints" / "last.pt",
        map_location="cpu",
        weights_only=False,
    )
    last = ckpt["history"][-1]
    return {
        "set": set_name,
        "method": method,
        "seed": seed,
        "test_top1": last["val/top1"],
        "train_loss": last["train/loss"],
        "best_top1": ckpt["best_acc"],
        "wall_s": round(time.time() - start, 1),
        "command": "python tools/train.py " + " ".join(cmd[2:]),
    }


def run_all(args: argparse.Namespace) -> None:
    seeds = [int(s) for s in args.seeds.split(",")]
    for _ in range(2):  # a second pass for the searched policy's runs, once the policy exists
        run_pass(args, seeds)


def run_pass(args: argparse.Namespace, seeds: list[int]) -> None:
    for set_name in args.sets.split(","):
        for seed in seeds:
            for method in args.methods.split(","):
                if (set_name, method, seed) in done_runs(args.results):
                    continue
                if method == "patchmix_searched" and not Path(args.policy).is_file():
                    print(f"skip {set_name} {method} s{seed}: no policy {args.policy} yet")
                    continue
                row = run_one(args.code, set_name, method, seed, str(Path(args.policy).resolve()))
                with args.results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{set_name} {method} s{seed}: {row['test_top1']:.3f} ({row['wall_s']} s)")


def summarise(results: Path) -> dict:
    """{set: {method: {mean, sd, n, per_seed}}} of last-epoch test top-1."""
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    out: dict = {}
    for r in rows:
        out.setdefault(r["set"], {}).setdefault(r["method"], []).append(r)
    summary = {}
    for set_name, methods in out.items():
        summary[set_name] = {}
        for method, rs in methods.items():
            accs = [r["test_top1"] for r in sorted(rs, key=lambda r: r["seed"])]
            summary[set_name][method] = {
                "mean": statistics.mean(accs),
                "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "n": len(accs),
                "per_seed": accs,
                "wall_s_mean": statistics.mean(r["wall_s"] for r in rs),
            }
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="tools/bench.py patchmix", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("what", choices=("run", "summary"))
    p.add_argument("--policy", default=str(ROOT / "runs" / "patchmix_search" / "policy.yaml"))
    p.add_argument("--sets", default="small,full", help=f"of {list(SETS)}")
    p.add_argument("--methods", default=",".join(MAIN), help=f"of {list(METHODS)}")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--code", type=Path, default=ROOT, help="the checkout whose tools/train.py runs")
    args = p.parse_args(argv)
    if args.what == "run":
        run_all(args)
    s = summarise(args.results)
    record = {
        "results": s,
        "seeds": [int(x) for x in args.seeds.split(",")],
        "common": " ".join(COMMON[:-4]) + "; " + "; ".join(" ".join(v) for v in SETS.values()),
        "policy": load_policy_record(POLICY),
    }
    SUMMARY.write_text(json.dumps(record, indent=1) + "\n")
    for set_name, methods in s.items():
        for method, m in methods.items():
            print(f"{set_name:6s} {method:18s} {m['mean']:.3f} +- {m['sd']:.3f} (n={m['n']})")
