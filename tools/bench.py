"""Benchmark suite: search cost, search quality, the accuracy/latency plane, proxy faithfulness.

    python tools/bench.py run --mode quick --out runs/bench_quick     # ~10 min quiet 2-core CPU
    python tools/bench.py run --mode full --out runs/bench_full
    python tools/bench.py report --from runs/bench_quick              # re-make the report only
    python tools/bench.py groundtruth --workers 2                     # the ground-truth table
    python tools/bench.py regret runs/<search>/genotype.json          # percentile vs random

``run`` measures every item in turn and rewrites ``DIR/results.json`` after each one, so a
crash or a kill loses at most the item in flight; running the same command again skips what
is already measured. ``report`` turns results.json into BENCHMARKS.md and PNG figures
(default: tools/bench_results/, i.e. the committed report; ``--report-dir`` to change).

Every search and every training is its own subprocess (``python tools/search.py ...``,
``python tools/train.py ...``), the exact command is stored with its result, and its peak
memory is the child's ``ru_maxrss`` from ``os.wait4``. Test accuracy, parameters, FLOPs and
time per clip are measured in this process from the trained checkpoint.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hybridnas.bench.cli import COMMANDS as GT_COMMANDS
from hybridnas.bench.cli import main as gt_main

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
DEFAULT_REPORT_DIR = ROOT / "tools" / "bench_results"
THREADS = 1  # torch threads of every measured process (--threads; 0: torch's default)

METHODS = {  # search-cost methods: recipe and label
    "darts": ("darts_video", "DARTS"),
    "pcdarts": ("pcdarts_video", "PC-DARTS"),
    "sdas": ("sdas_video", "SDAS"),
    "sdas_pc": ("sdas_pc_video", "SDAS + partial channels"),
}
QUALITY = {
    "hybrid": "hybrid (SDAS + evolution)",
    "sdas": "SDAS alone",
    "darts": "DARTS",
    "random": "random search",
    "evolution": "evolution alone (EvaNet-style)",
}
BASELINES = {"x3d_xs": "X3D-XS", "r2plus1d": "R(2+1)D", "frame2d": "2D per-frame"}

MODES: dict[str, dict[str, Any]] = {
    "quick": {
        # the space and data every search and training shares
        "space": [
            "model.stage_widths=[4,8,8]",
            "model.num_cells=3",
            "model.stem_channels=8",
            "data.size=16",
            "data.digit_px=6",
            "data.frames=4",
            "data.batch_size=16",
        ],
        "epochs": 4,
        "steps_per_epoch": 4,
        "warmup_epochs": 1,
        "cost_repeats": 3,
        "long_epochs": 12,
        # the frames sweep runs at 32 px with 8 px digits: at 16 px (or 32 px with 12 px digits)
        # the built-in generator accepts ~0.03% of 16-frame trajectories (rejection sampling),
        # hours to build the data; at 32/8 it accepts ~10%
        "frames": [4, 8, 16],
        "frames_space": ["data.size=32", "data.digit_px=8"],
        "cells": [3, 5],
        "scaling_methods": ["sdas"],
        "seeds": [0, 1],
        "proxy_clips": 32,  # training clips per proxy candidate (one stage)
        "proxy_val_clips": 64,
        "hybrid_population": 2,
        "evo_population": 4,
        "children": 2,
        "train": [],  # recipes/recipe/train_builtin.yaml as shipped (4 epochs), quick data
        "faith_proxies": {
            "stage1_w0.5": {"stage_clips": [32], "width_scale": 0.5},
            "stages2_w0.5": {"stage_clips": [32, 32], "width_scale": 0.5},
            "stage1_w1.0_x2": {"stage_clips": [64], "width_scale": 1.0},
        },
        "evo_ranks": [
            "model.stage_widths=[4,8,8]",
            "data.size=16",
            "data.digit_px=6",
            "data.frames=4",
            "evolution.population=4",
            "evolution.cycles=2",
            "evolution.children_per_cycle=2",
            "evolution.proxy.stage_clips=[32]",
            "evolution.proxy.val_clips=64",
            "evolution.proxy.batch_size=16",
            "evolution.conet_every=0",
            "evolution.faithfulness_samples=0",
        ],
    },
    "full": {
        "space": ["data.batch_size=32"],  # the shipped default space (recipes/search.yaml)
        "epochs": 8,
        "steps_per_epoch": 20,
        "warmup_epochs": 2,
        "long_epochs": 30,
        "frames": [4, 8, 16],
        "cells": [3, 5, 8],
        "scaling_methods": ["sdas", "darts"],
        "seeds": [0, 1, 2],
        "proxy_clips": 128,
        "proxy_val_clips": 128,
        "hybrid_population": 6,
        "evo_population": 8,
        "children": 2,
        "train": [],  # recipes/recipe/train_builtin.yaml as shipped
        "faith_proxies": {
            "stage1_w0.5": {"stage_clips": [128], "width_scale": 0.5},
            "stages2_w0.5": {"stage_clips": [128, 128], "width_scale": 0.5},
            "stage1_w1.0_x2": {"stage_clips": [256], "width_scale": 1.0},
        },
        "evo_ranks": [
            "evolution.cycles=4",
            "evolution.conet_every=0",
            "evolution.faithfulness_samples=0",
        ],
    },
}


# ---------------------------------------------------------------- results file


class Results:
    """results.json in the bench folder, rewritten atomically after every measurement."""

    def __init__(self, out: Path, mode: str | None = None):
        self.out = Path(out)
        self.path = self.out / "results.json"
        if self.path.is_file():
            self.doc = json.loads(self.path.read_text())
        else:
            self.doc = {"meta": {}, "items": {}}
        if mode:
            self.doc["meta"].setdefault("mode", mode)

    @property
    def items(self) -> dict[str, dict]:
        return self.doc["items"]

    def put(self, key: str, value: dict) -> None:
        self.items[key] = value
        self.save()

    def save(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.doc, indent=1))
        os.replace(tmp, self.path)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "gpu": gpu,
    }


# A small launcher process starts each measured command: on Linux a child's ru_maxrss starts
# at its parent's RSS at fork time (kept across exec), so forking straight from this process
# (torch imported) would put a floor of several hundred MB under every reading.
_LAUNCHER = """
import json, os, subprocess, sys
with open(sys.argv[1], "w") as f:
    p = subprocess.Popen(sys.argv[2:], stdout=f, stderr=subprocess.STDOUT)
    _, status, ru = os.wait4(p.pid, 0)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "maxrss_kb": ru.ru_maxrss,
                  "cpu_s": ru.ru_utime + ru.ru_stime}))
"""


def run_child(cmd: list[str], log: Path) -> dict:
    """Run one measured subprocess; wall time, its own peak RSS (ru_maxrss), CPU time, rc."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "WANDB_MODE": "disabled"}
    if (
        THREADS
    ):  # fixed thread count: oversubscribed OpenMP barriers make shared-box timings swing 10x
        env |= {k: str(THREADS) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "BENCH_THREADS")}
    load0 = loadavg()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(log), *cmd],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    try:
        res = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        res = {"rc": done.returncode or 1, "maxrss_kb": 0, "cpu_s": 0.0}
    return {
        "command": " ".join(shlex.quote(c) for c in cmd),
        "rc": res["rc"],
        "wall_s": round(wall, 2),
        "cpu_s": round(res["cpu_s"], 2),
        "maxrss_mb": round(res["maxrss_kb"] / 1024, 1),  # Linux: KiB
        "load_before": load0,
        "load_after": loadavg(),
        "log": str(log),
    }


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("_kind") is None and "epoch" in row:
            rows.append({k: v for k, v in row.items() if not k.startswith("alpha/")})
    return rows


# ---------------------------------------------------------------- measurements


def search_cmd(recipe: str, overrides: list[str], out_dir: Path) -> list[str]:
    return [
        sys.executable,
        "tools/search.py",
        f"recipe={recipe}",
        *overrides,
        "tracking=none",
        "engine=none",
        "overwrite=true",
        f"threads={THREADS}",
        f"out_dir={out_dir}",
    ]


def differentiable_overrides(m: dict, epochs: int | None = None) -> list[str]:
    epochs = epochs or m["epochs"]
    return [
        *m["space"],
        "stage=differentiable",
        f"search.epochs={epochs}",
        f"search.steps_per_epoch={m['steps_per_epoch']}",
        f"search.warmup_epochs={min(m['warmup_epochs'], epochs - 1)}",
    ]


def measure_search(
    R: Results, key: str, recipe: str, overrides: list[str], info: dict
) -> dict | None:
    if key in R.items and R.items[key].get("rc") == 0:
        return R.items[key]
    run_dir = R.out / "runs" / key
    print(f"[bench] {key}: search {recipe} {' '.join(overrides)}", flush=True)
    rec = run_child(search_cmd(recipe, overrides, run_dir), R.out / "logs" / f"{key}.log")
    rows = read_metrics(run_dir)
    rec |= {
        **info,
        "kind": "search",
        "recipe": recipe,
        "run_dir": str(run_dir),
        "epoch_s": [r.get("time/epoch_s") for r in rows if "time/epoch_s" in r],
        "val_acc": next((r["val/acc"] for r in reversed(rows) if "val/acc" in r), None),
        "genotype": str(run_dir / "genotype.json")
        if (run_dir / "genotype.json").is_file()
        else None,
    }
    rec["search_s"] = round(sum(rec["epoch_s"]), 2) if rec["epoch_s"] else None
    R.put(key, rec)
    print(
        f"[bench]   rc {rec['rc']} wall {rec['wall_s']} s, peak {rec['maxrss_mb']} MB", flush=True
    )
    return rec


def section_cost(R: Results, m: dict) -> None:
    """1. DARTS / PC-DARTS / SDAS / SDAS+PC on the same space and data; frames; cells."""
    if "rss_floor" not in R.items:  # what Python + torch + hybridnas hold before any work
        code = "import torch, hybridnas, hybridnas.search.differentiable, hydra"
        R.put("rss_floor", run_child([sys.executable, "-c", code], R.out / "logs" / "rss.log"))
    # interleaved repeats (round-robin over the methods); the report takes each method's
    # fastest repeat, the usual estimator when the machine is shared
    for r in range(m.get("cost_repeats", 1)):
        for name, (recipe, label) in METHODS.items():
            measure_search(
                R,
                f"cost_{name}" + (f"_r{r}" if r else ""),
                recipe,
                [*differentiable_overrides(m), "seed=0"],
                {"section": "cost", "method": name, "label": label, "seed": 0, "repeat": r},
            )
    base_frames = (
        next(o for o in m["space"] if o.startswith("data.frames="))
        if any(o.startswith("data.frames=") for o in m["space"])
        else "data.frames=8"
    )
    base_cells = next((o for o in m["space"] if o.startswith("model.num_cells=")), None)
    for name in m["scaling_methods"]:
        recipe = METHODS[name][0]
        for t in m["frames"]:
            fs = m.get("frames_space", [])
            drop = {base_frames} | {o.split("=")[0] for o in fs}
            space = [
                o
                for o in differentiable_overrides(m)
                if o not in drop and o.split("=")[0] not in drop
            ] + fs
            if not fs and f"data.frames={t}" == base_frames and f"cost_{name}" in R.items:
                R.items.setdefault(
                    f"frames_{name}_t{t}",
                    {**R.items[f"cost_{name}"], "section": "frames", "frames": t},
                )
                R.save()
            measure_search(
                R,
                f"frames_{name}_t{t}",
                recipe,
                [*space, f"data.frames={t}", "seed=0"],
                {
                    "section": "frames",
                    "method": name,
                    "frames": t,
                    "seed": 0,
                    "space": " ".join(fs) or "the base space",
                },
            )
        for n in m["cells"]:
            space = [o for o in differentiable_overrides(m) if o != base_cells]
            if f"model.num_cells={n}" == base_cells and f"cost_{name}" in R.items:
                R.items.setdefault(
                    f"cells_{name}_c{n}",
                    {**R.items[f"cost_{name}"], "section": "cells", "cells": n},
                )
                R.save()
            measure_search(
                R,
                f"cells_{name}_c{n}",
                recipe,
                [*space, f"model.num_cells={n}", "seed=0"],
                {"section": "cells", "method": name, "cells": n, "seed": 0},
            )


def section_cost_long(R: Results, m: dict) -> None:
    """1b. The four methods over a longer schedule (SDAS's fixing has room to pay off)."""
    for name, (recipe, label) in METHODS.items():
        measure_search(
            R,
            f"long_{name}",
            recipe,
            [*differentiable_overrides(m, m["long_epochs"]), "seed=0"],
            {
                "section": "long",
                "method": name,
                "label": label,
                "seed": 0,
                "epochs": m["long_epochs"],
            },
        )


def evo_overrides(m: dict, population: int, cycles: int) -> list[str]:
    return [
        f"evolution.population={population}",
        f"evolution.sample_size={min(3, population)}",
        f"evolution.cycles={cycles}",
        f"evolution.children_per_cycle={m['children']}",
        f"evolution.proxy.stage_clips=[{m['proxy_clips']}]",
        f"evolution.proxy.val_clips={m['proxy_val_clips']}",
        f"evolution.proxy.batch_size={min(16, m['proxy_clips'])}",
        "evolution.conet_every=0",
        "evolution.faithfulness_samples=0",
    ]


def budgets(m: dict) -> dict:
    """Equal compute = equal number of weight-training clips (forward + backward) per search."""
    batch = int(next(o for o in m["space"] if o.startswith("data.batch_size=")).split("=")[1])
    supernet = m["epochs"] * m["steps_per_epoch"] * batch
    half_epochs = max(2, m["epochs"] // 2)
    hybrid_super = half_epochs * m["steps_per_epoch"] * batch
    hybrid_cands = max(m["hybrid_population"], (supernet - hybrid_super) // m["proxy_clips"])
    hybrid_cycles = max(0, (hybrid_cands - m["hybrid_population"]) // m["children"])
    n_cands = supernet // m["proxy_clips"]
    evo_cycles = max(1, (n_cands - m["evo_population"]) // m["children"])
    return {
        "batch": batch,
        "clips": supernet,
        "hybrid_epochs": half_epochs,
        "hybrid_cycles": hybrid_cycles,
        "hybrid_clips": hybrid_super
        + (m["hybrid_population"] + hybrid_cycles * m["children"]) * m["proxy_clips"],
        "random_candidates": n_cands,
        "evo_cycles": evo_cycles,
        "evo_clips": (m["evo_population"] + evo_cycles * m["children"]) * m["proxy_clips"],
    }


def compose(config: str, overrides: list[str]):
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
        return hcompose(config, overrides=overrides)


def section_quality_search(R: Results, m: dict) -> None:
    """2. The five search methods at equal compute, several seeds."""
    b = budgets(m)
    R.doc["meta"]["budgets"] = b
    R.save()
    for seed in m["seeds"]:
        common = {"section": "quality", "seed": seed}
        if seed == 0 and "cost_sdas" in R.items:  # the cost runs are the seed-0 searches
            R.items.setdefault("q_sdas_s0", {**R.items["cost_sdas"], **common, "method": "sdas"})
            R.items.setdefault("q_darts_s0", {**R.items["cost_darts"], **common, "method": "darts"})
            R.save()
        measure_search(
            R,
            f"q_sdas_s{seed}",
            "sdas_video",
            [*differentiable_overrides(m), f"seed={seed}"],
            {**common, "method": "sdas"},
        )
        measure_search(
            R,
            f"q_darts_s{seed}",
            "darts_video",
            [*differentiable_overrides(m), f"seed={seed}"],
            {**common, "method": "darts"},
        )
        measure_search(
            R,
            f"q_hybrid_s{seed}",
            "sdas_video",
            [
                *[
                    o
                    for o in differentiable_overrides(m, b["hybrid_epochs"])
                    if o != "stage=differentiable"
                ],
                "stage=hybrid",
                *evo_overrides(m, m["hybrid_population"], b["hybrid_cycles"]),
                f"seed={seed}",
            ],
            {**common, "method": "hybrid"},
        )
        # evolution alone: no supernet, starts from a plain chain genotype, uniform guidance
        chain = R.out / "runs" / f"chain_s{seed}.json"
        if not chain.is_file():
            from hybridnas.search.evolution import chain_genotype

            chain.parent.mkdir(parents=True, exist_ok=True)
            chain_genotype(compose("search", [*m["space"]])).save(chain)
        measure_search(
            R,
            f"q_evolution_s{seed}",
            "sdas_video",
            [
                *m["space"],
                "stage=evolution",
                f"genotype={chain}",
                "evolution.proxy.inherit=false",
                *evo_overrides(m, m["evo_population"], b["evo_cycles"]),
                f"seed={seed}",
            ],
            {**common, "method": "evolution"},
        )
        key = f"q_random_s{seed}"
        if not (key in R.items and R.items[key].get("rc") == 0):
            run_dir = R.out / "runs" / key
            ov = [
                *m["space"],
                *evo_overrides(m, 1, 0),
                "evolution.proxy.inherit=false",
                f"seed={seed}",
                f"out_dir={run_dir}",
            ]
            print(f"[bench] {key}: random search, {b['random_candidates']} candidates", flush=True)
            cmd = [
                sys.executable,
                "tools/bench.py",
                "random-search",
                "--n",
                str(b["random_candidates"]),
                "--",
                *ov,
            ]
            rec = run_child(cmd, R.out / "logs" / f"{key}.log")
            gpath = run_dir / "genotype.json"
            rec |= {
                **common,
                "method": "random",
                "kind": "search",
                "run_dir": str(run_dir),
                "genotype": str(gpath) if gpath.is_file() else None,
            }
            R.put(key, rec)


def random_search(n: int, overrides: list[str]) -> None:
    """Subcommand: n genotypes drawn uniformly, each scored by the evolution's proxy; the best
    (by proxy accuracy) goes to out_dir/genotype.json."""
    import numpy as np
    import torch

    from hybridnas.engine.distributed import init_distributed
    from hybridnas.search.evolution import chain_genotype, evaluate, make_context
    from hybridnas.search.mutations import Guidance, sample_genotype

    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    cfg = compose("search", ["tracking=none", *overrides])
    run_dir = Path(cfg.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = init_distributed()
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


def train_cmd(m: dict, model_args: list[str], out_dir: Path, seed: int) -> list[str]:
    return [
        sys.executable,
        "tools/train.py",
        "recipe=train_builtin",
        *[o for o in m["space"] if o.startswith("data.")],
        *m["train"],
        *model_args,
        f"seed={seed}",
        "tracking=none",
        "engine=none",
        "overwrite=true",
        f"threads={THREADS}",
        f"out_dir={out_dir}",
    ]


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f"hybridnas_tool_{name}", ROOT / "tools" / f"{name}.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def evaluate_trained(m: dict, ckpt: Path) -> dict:
    """Test top-1 (tools/evaluate.py on split=test, EMA weights of the last epoch), params,
    FLOPs and ms per clip (batch 1, CPU; and GPU when present)."""
    import torch

    from hybridnas.search.latency import count_flops, count_params, measure_latency
    from hybridnas.train.loop import load_trained

    ev = _load_tool("evaluate")
    cfg = compose(
        "evaluate",
        [
            f"ckpt={ckpt}",
            "split=test",
            *[o for o in m["space"] if o.startswith("data.")],
            f"out_dir={ckpt.parent.parent / 'eval_test'}",
            "device=cpu",
        ],
    )
    metrics = ev.run(cfg)
    model, spec, _ = load_trained(ckpt, "cpu")
    frames = int(cfg.data.frames)
    size = int(cfg.data.size)
    shape = (3, frames, size, size)
    out = {
        "test_top1": metrics["top1"],
        "test_videos": metrics["videos"],
        "params": count_params(model),
        "flops": count_flops(model, shape),
        "cpu_ms_per_clip": round(measure_latency(model, shape, min_run_time=0.5).median_ms, 3),
        "clip_shape": list(shape),
    }
    if torch.cuda.is_available():
        out["gpu_ms_per_clip"] = round(
            measure_latency(model, shape, device="cuda", min_run_time=0.5).median_ms, 3
        )
    return out


def measure_train(R: Results, m: dict, key: str, model_args: list[str], seed: int, info: dict):
    if key in R.items and R.items[key].get("rc") == 0 and "test_top1" in R.items[key]:
        return
    run_dir = R.out / "runs" / key
    print(f"[bench] {key}: train {' '.join(model_args)}", flush=True)
    rec = run_child(train_cmd(m, model_args, run_dir, seed), R.out / "logs" / f"{key}.log")
    rec |= {**info, "kind": "train", "run_dir": str(run_dir)}
    ckpt = run_dir / "checkpoints" / "last.pt"
    if rec["rc"] == 0 and ckpt.is_file():
        try:
            rec |= evaluate_trained(m, ckpt)
        except Exception as err:  # keep the timing even if scoring fails
            rec["eval_error"] = repr(err)
    R.put(key, rec)
    print(f"[bench]   rc {rec['rc']} test top-1 {rec.get('test_top1')}", flush=True)


def section_quality_train(R: Results, m: dict) -> None:
    """Each found genotype and each hand-designed baseline trained with the same small recipe."""
    for seed in m["seeds"]:
        for method in QUALITY:
            s = R.items.get(f"q_{method}_s{seed}")
            if not s or not s.get("genotype"):
                continue
            measure_train(
                R,
                m,
                f"t_{method}_s{seed}",
                ["model.name=genotype", f"genotype={s['genotype']}"],
                seed,
                {"section": "train", "method": method, "seed": seed, "genotype": s["genotype"]},
            )
    for name in BASELINES:
        measure_train(
            R,
            m,
            f"t_{name}_s0",
            [f"model.name={name}"],
            0,
            {"section": "train", "method": name, "seed": 0, "baseline": True},
        )


def section_faithfulness(R: Results, m: dict) -> None:
    """4. Kendall tau of each proxy's accuracy vs the trained (full-recipe) test accuracy, over
    the genotypes trained above."""
    from scipy.stats import kendalltau

    from hybridnas.data import build_dataset
    from hybridnas.search.proxy import ProxyConfig, build_proxy, load_proxy_data, train_stage
    from hybridnas.space.genotype import Genotype

    trained = [
        (k, v)
        for k, v in R.items.items()
        if v.get("section") == "train" and not v.get("baseline") and "test_top1" in v
    ]
    if len(trained) < 3:
        print("[bench] faithfulness: fewer than 3 trained genotypes, skipped", flush=True)
        return
    cfg = compose("search", [*m["space"]])
    splits = [build_dataset(cfg.data, s) for s in ("train", "search_val")]
    for pname, pover in m["faith_proxies"].items():
        key = f"faith_{pname}"
        done = R.items.get(key, {})
        if done.get("n") == len(trained):
            continue
        pcfg = ProxyConfig(
            **{
                **ProxyConfig.from_cfg(dict(cfg.evolution.proxy)).__dict__,
                "stage_clips": tuple(pover["stage_clips"]),
                "width_scale": pover["width_scale"],
                "val_clips": m["proxy_val_clips"],
                "batch_size": min(16, m["proxy_clips"]),
                "inherit": False,
            }
        )
        data = load_proxy_data(*splits, pcfg, 0)
        start = time.perf_counter()
        proxy_acc, full_acc, names = [], [], []
        for k, v in trained:
            g = Genotype.load(v["genotype"])
            t = build_proxy(g, pcfg, 0)
            for _ in pcfg.stage_clips:
                acc = train_stage(t, data, pcfg)
            proxy_acc.append(acc)
            full_acc.append(v["test_top1"])
            names.append(k)
        tau, p = kendalltau(proxy_acc, full_acc)
        R.put(
            key,
            {
                "section": "faithfulness",
                "proxy": pname,
                **pover,
                "n": len(trained),
                "tau": None if tau != tau else round(float(tau), 3),
                "p_value": None if p != p else round(float(p), 3),
                "proxy_acc": proxy_acc,
                "full_acc": full_acc,
                "runs": names,
                "seconds": round(time.perf_counter() - start, 1),
                "load_after": loadavg(),
            },
        )
        print(f"[bench] faithfulness {pname}: tau {tau:.3f}", flush=True)


def section_evo_ranks(R: Results, m: dict) -> None:
    """Issue 5: evolution cycle time with 1 and 2 ranks (tools/bench_evolution.py)."""
    for n in (1, 2):
        key = f"evo_ranks_{n}"
        if key in R.items and R.items[key].get("rc") == 0:
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
        rec = run_child(cmd, R.out / "logs" / f"{key}.log")
        rec |= {"section": "evo_ranks", "ranks": n}
        for line in Path(rec["log"]).read_text().splitlines():
            if line.startswith("{") and "mean_cycle_s" in line:
                rec |= json.loads(line)
        R.put(key, rec)


SECTIONS = {
    "cost": section_cost,
    "cost_long": section_cost_long,
    "quality": section_quality_search,
    "train": section_quality_train,
    "faithfulness": section_faithfulness,
    "evo_ranks": section_evo_ranks,
}


def run(mode: str, out: Path, sections: list[str], threads: int = 1) -> Results:
    import torch

    global THREADS
    THREADS = threads
    if threads:
        torch.set_num_threads(threads)  # in-process scoring, latency and proxies
    m = MODES[mode]
    R = Results(out, mode)
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


# ---------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in GT_COMMANDS:
        gt_main(argv)
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure, then write the report")
    r.add_argument("--mode", choices=list(MODES), default="quick")
    r.add_argument("--out", type=Path, default=Path("runs/bench_quick"))
    r.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma list out of {','.join(SECTIONS)}"
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
    rs = sub.add_parser("random-search", help="(internal) one random-search run")
    rs.add_argument("--n", type=int, required=True)
    rs.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)

    if args.cmd == "random-search":
        random_search(args.n, args.overrides)
        return
    from hybridnas.bench.report import write_report

    if args.cmd == "run":
        sections = [s for s in args.sections.split(",") if s]
        unknown = set(sections) - set(SECTIONS)
        if unknown:
            ap.error(f"unknown sections {sorted(unknown)}")
        run(args.mode, args.out, sections, args.threads)
        if not args.no_report:
            write_report(args.out, args.report_dir)
    else:
        write_report(args.src, args.report_dir)


if __name__ == "__main__":
    main()
