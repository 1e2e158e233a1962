"""The measuring harness of tools/bench.py: the results file, measured child processes, and the
search and training measurements the sections are made of.

Every search and every training is its own subprocess (``python tools/search.py ...``,
``python tools/train.py ...``), the exact command is stored with its result, and its peak
memory is the child's ``ru_maxrss`` from ``os.wait4``. Test accuracy comes from
``tools/evaluate.py`` (a subprocess too); parameters, FLOPs and time per clip are measured in
this process from the trained checkpoint.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
RECIPES = ROOT / "recipes"


class Results:
    """results.json in the bench folder, rewritten atomically after every measurement.

    ``threads``: torch threads of every measured process (0: torch's default)."""

    def __init__(self, out: Path, mode: str | None = None, threads: int = 1):
        self.out = Path(out)
        self.path = self.out / "results.json"
        self.threads = threads
        if self.path.is_file():
            self.doc = json.loads(self.path.read_text())
        else:
            self.doc = {"meta": {}, "items": {}}
        if mode:
            self.doc["meta"].setdefault("mode", mode)

    @property
    def items(self) -> dict[str, dict]:
        return self.doc["items"]

    def done(self, key: str) -> bool:
        """Measured before, successfully (a rerun skips it)."""
        return key in self.items and self.items[key].get("rc") == 0

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


def compose(config: str, overrides: list[str]):
    """The Hydra config ``recipes/<config>.yaml`` with overrides, as the tools compose it."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    import hybridnas.config  # noqa: F401  (registers the schemas recipes/*.yaml name)

    with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
        return hcompose(config, overrides=overrides)


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


def run_child(cmd: list[str], log: Path, threads: int = 1) -> dict:
    """Run one measured subprocess; wall time, its own peak RSS (ru_maxrss), CPU time, rc."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HYDRA_FULL_ERROR": "1", "WANDB_MODE": "disabled"}
    if (
        threads
    ):  # fixed thread count: oversubscribed OpenMP barriers make shared-box timings swing 10x
        env |= {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "BENCH_THREADS")}
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
    """The per-epoch rows of a run's metrics.jsonl, alphas left out."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row.get("_kind") is None and "epoch" in row:
            rows.append({k: v for k, v in row.items() if not k.startswith("alpha/")})
    return rows


# ---------------------------------------------------------------- searches


def search_cmd(recipe: str, overrides: list[str], out_dir: Path, threads: int) -> list[str]:
    return [
        sys.executable,
        "tools/search.py",
        f"recipe={recipe}",
        *overrides,
        "tracking=none",
        "engine=none",
        "overwrite=true",
        f"threads={threads}",
        f"out_dir={out_dir}",
    ]


def measure_search(
    R: Results, key: str, recipe: str, overrides: list[str], info: dict
) -> dict | None:
    """One search in a child process (skipped when measured before); its record."""
    if R.done(key):
        return R.items[key]
    run_dir = R.out / "runs" / key
    print(f"[bench] {key}: search {recipe} {' '.join(overrides)}", flush=True)
    cmd = search_cmd(recipe, overrides, run_dir, R.threads)
    rec = run_child(cmd, R.out / "logs" / f"{key}.log", R.threads)
    rows = read_metrics(run_dir)
    gpath = run_dir / "genotype.json"
    rec |= {
        **info,
        "kind": "search",
        "recipe": recipe,
        "run_dir": str(run_dir),
        "epoch_s": [r.get("time/epoch_s") for r in rows if "time/epoch_s" in r],
        "val_acc": next((r["val/acc"] for r in reversed(rows) if "val/acc" in r), None),
        "genotype": str(gpath) if gpath.is_file() else None,
    }
    rec["search_s"] = round(sum(rec["epoch_s"]), 2) if rec["epoch_s"] else None
    R.put(key, rec)
    print(
        f"[bench]   rc {rec['rc']} wall {rec['wall_s']} s, peak {rec['maxrss_mb']} MB", flush=True
    )
    return rec


# ---------------------------------------------------------------- trainings


def data_overrides(m: dict) -> list[str]:
    return [o for o in m["space"] if o.startswith("data.")]


def train_cmd(m: dict, model_args: list[str], out_dir: Path, seed: int, threads: int) -> list[str]:
    return [
        sys.executable,
        "tools/train.py",
        "recipe=train_builtin",
        *data_overrides(m),
        *m["train"],
        *model_args,
        f"seed={seed}",
        "tracking=none",
        "engine=none",
        "overwrite=true",
        f"threads={threads}",
        f"out_dir={out_dir}",
    ]


def evaluate_trained(m: dict, ckpt: Path, threads: int = 1) -> dict:
    """Test top-1 (tools/evaluate.py on split=test, EMA weights of the last epoch), params,
    FLOPs and ms per clip (batch 1, CPU; and GPU when present)."""
    import torch

    from hybridnas.measure.counts import count_flops, count_params, measure_latency
    from hybridnas.models import load_trained

    out_dir = ckpt.parent.parent / "eval_test"
    overrides = [f"ckpt={ckpt}", "split=test", *data_overrides(m), f"out_dir={out_dir}"]
    cmd = [sys.executable, "tools/evaluate.py", *overrides, "device=cpu"]
    ev = run_child(cmd, ckpt.parent.parent / "eval_test.log", threads)
    if ev["rc"] != 0:
        raise RuntimeError(f"tools/evaluate.py exited with {ev['rc']} (log: {ev['log']})")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    model, _, _ = load_trained(ckpt, "cpu")
    cfg = compose("evaluate", overrides)
    shape = (3, int(cfg.data.frames), int(cfg.data.size), int(cfg.data.size))
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
    """One training in a child process, then its test scoring (skipped when measured before)."""
    if R.done(key) and "test_top1" in R.items[key]:
        return
    run_dir = R.out / "runs" / key
    print(f"[bench] {key}: train {' '.join(model_args)}", flush=True)
    cmd = train_cmd(m, model_args, run_dir, seed, R.threads)
    rec = run_child(cmd, R.out / "logs" / f"{key}.log", R.threads)
    rec |= {**info, "kind": "train", "run_dir": str(run_dir)}
    ckpt = run_dir / "checkpoints" / "last.pt"
    if rec["rc"] == 0 and ckpt.is_file():
        try:
            rec |= evaluate_trained(m, ckpt, R.threads)
        except Exception as err:  # keep the timing even if scoring fails
            rec["eval_error"] = repr(err)
    R.put(key, rec)
    print(f"[bench]   rc {rec['rc']} test top-1 {rec.get('test_top1')}", flush=True)
