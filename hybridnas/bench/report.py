"""BENCHMARKS.md and its PNG figures from a bench folder's results.json (tools/bench.py).

Re-runnable: ``python tools/bench.py report --from DIR [--report-dir tools/bench_results]``.
A hand-written reading, when ``<report-dir>/reading.md`` exists, is put in under "Reading".
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path
from typing import Any

QUALITY = {
    "hybrid": "hybrid (SDAS + evolution)",
    "sdas": "SDAS alone",
    "darts": "DARTS",
    "random": "random search",
    "evolution": "evolution alone (EvaNet-style)",
}
COST = {
    "darts": "DARTS",
    "pcdarts": "PC-DARTS",
    "sdas": "SDAS",
    "sdas_pc": "SDAS + partial channels",
}
BASELINES = {"x3d_xs": "X3D-XS", "r2plus1d": "R(2+1)D", "frame2d": "2D per-frame"}


def _f(x: Any, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{nd}f}"


def _mean_sd(xs: list[float]) -> tuple[float | None, float | None]:
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cmd(rec: dict) -> str:
    return f"`{rec['command']}`" if rec.get("command") else "n/a"


def _short(cmd: str, out: str) -> str:
    """The command with the python path and the bench folder shortened for the report."""
    parts = cmd.split(" ")
    if parts and parts[0].endswith("python") or parts and "python" in Path(parts[0]).name:
        parts[0] = "python"
    return " ".join(parts).replace(out, "$BENCH")


def _last_error(rec: dict) -> str:
    """The last line naming an error in a run's log (why it failed), else a pointer to it."""
    try:
        lines = Path(rec["log"]).read_text(errors="replace").splitlines()
    except (KeyError, OSError):
        return "see its log"
    errs = [ln.strip() for ln in lines if "Error" in ln and not ln.startswith("Error executing")]
    return f"`{errs[-1][:160]}`" if errs else "see its log"


def write_report(src: str | Path, dst: str | Path) -> Path:
    src, dst = Path(src), Path(dst)
    doc = json.loads((src / "results.json").read_text())
    meta, items = doc["meta"], doc["items"]
    dst.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    out = str(src)
    L: list[str] = []
    add = L.append
    mode = meta.get("mode", "?")
    mach = meta.get("machine", {})

    add("# hybridnas benchmarks\n")
    add(
        f"Made by `python tools/bench.py run --mode {mode} --out $BENCH` (one run, one machine, "
        f"every number below), then `python tools/bench.py report --from $BENCH`. The raw "
        f"measurements are in [results.json](results.json) (copied from `$BENCH/results.json`); "
        f"each row's exact command is in its `command` field ($BENCH = the bench folder).\n"
    )
    add(
        f"- Mode: **{mode}**; started {meta.get('started')}, finished {meta.get('finished', '?')}"
        f" ({_f(meta.get('last_run_s', 0) / 60, 1)} min for the last invocation; "
        f"sections: {meta.get('section_s', {})} s)."
    )
    add(
        f"- Machine: {mach.get('cpus')} CPU cores, torch {mach.get('torch')}, Python "
        f"{mach.get('python')}, {mach.get('platform')}; GPU: {mach.get('gpu') or 'none'}."
    )
    add(
        f"- **Load**: 1/5/15-min load average {meta.get('load_at_start')} at the start and "
        f"{meta.get('load_at_end')} at the end; each row below also records the load before and "
        f"after it (results.json `load_before`/`load_after`). The box was shared with other "
        f"jobs; on 2 cores a load of ~6 means this suite got roughly a third of the machine, "
        f"so absolute seconds are inflated and noisy. Compare **ratios within one table** "
        f"(runs were interleaved in the same period), not seconds across machines.\n"
    )
    cfg = meta.get("config", {})
    add(
        f"Space and data shared by every search and training: `{' '.join(cfg.get('space', []))}`.\n"
    )

    # ------------------------------------------------------------ 1. search cost
    add("## 1. Search cost: DARTS vs PC-DARTS vs SDAS vs SDAS + partial channels\n")
    add(
        f"Same space, data, seed and schedule (`search.epochs={cfg.get('epochs')} "
        f"search.steps_per_epoch={cfg.get('steps_per_epoch')}`), differentiable stage only, "
        f"each run its own process. *Search s* is the sum of the per-epoch times the search "
        f"logs (`time/epoch_s` in metrics.jsonl: training steps incl. architecture steps and "
        f"SDAS fixing, plus validation); *wall s* adds process start, data and outputs. "
        f"*CPU s* is the process's user + system CPU time (`ru_utime + ru_stime`, incl. "
        f"~{_f(items.get('rss_floor', {}).get('cpu_s'), 1)} s of imports): less sensitive to "
        f"the neighbours' load than wall time, so its ratio is the steadier cost figure. "
        f"*Peak RSS* is the process's `ru_maxrss` (includes ~{_f(items.get('rss_floor', {}).get('maxrss_mb'), 0)}"  # noqa: E501
        f" MB for Python + torch + hybridnas imported and idle, measured the same way: torch "
        f"alone is ~500 MB here); *above idle* subtracts that floor, which is what the search "
        f"itself holds (weights, activations, optimizer state, data).\n"
    )
    repeats: dict[str, list[dict]] = {}
    for v in items.values():
        if v.get("section") == "cost" and v.get("rc") == 0 and v.get("search_s"):
            repeats.setdefault(v["method"], []).append(v)
    cost = {k: min(v, key=lambda r: r["search_s"]) for k, v in repeats.items()}
    darts = cost.get("darts", {})
    floor = items.get("rss_floor", {}).get("maxrss_mb")
    rows = []
    for name, label in COST.items():
        r = cost.get(name)
        if not r:
            rows.append([label] + ["not measured"] * 10)
            continue
        ratio = r["search_s"] / darts["search_s"] if darts.get("search_s") else None
        eps = r.get("epoch_s") or [None]
        cpu_ratio = r["cpu_s"] / darts["cpu_s"] if darts.get("cpu_s") else None
        rows.append(
            [
                label,
                _f(r["search_s"], 1),
                _f(ratio, 2),
                _f(r.get("cpu_s"), 1),
                _f(cpu_ratio, 2),
                _f(r["wall_s"], 1),
                _f(statistics.fmean(eps[1:]) if len(eps) > 1 else eps[0], 2),
                _f(r["maxrss_mb"], 0),
                _f(r["maxrss_mb"] - floor, 0) if floor else "n/a",
                _f((r["maxrss_mb"] - floor) / (darts["maxrss_mb"] - floor), 2)
                if floor and darts.get("maxrss_mb")
                else "n/a",
                _f(r.get("val_acc"), 3),
            ]
        )
    add(
        _table(
            [
                "method",
                "search s",
                "x DARTS time",
                "CPU s",
                "x DARTS CPU",
                "wall s",
                "s/epoch (after ep. 0)",
                "peak RSS MB",
                "above idle MB",
                "x DARTS (above idle)",
                "final search-val acc",
            ],
            rows,
        )
    )
    if any(len(v) > 1 for v in repeats.values()):
        add(
            "\nEach method ran " + str(max(len(v) for v in repeats.values())) + " times, "
            "interleaved (DARTS, PC-DARTS, SDAS, SDAS+PC, then again); the table shows each "
            "method's fastest repeat. All repeats (search s / CPU s / load before): "
            + "; ".join(
                f"{COST.get(k, k)}: "
                + ", ".join(
                    f"{_f(r['search_s'], 1)}/{_f(r.get('cpu_s'), 1)}/{r.get('load_before', ['?'])[0]}"  # noqa: E501
                    for r in v
                )
                for k, v in repeats.items()
            )
            + "."
        )
    if "sdas" in cost and darts.get("search_s"):
        ratio = cost["sdas"]["search_s"] / darts["search_s"]
        add(
            f"\n**SDAS / DARTS total search time: {ratio:.2f}** "
            f"({'meets' if ratio <= 0.5 else 'does not meet'} the issue-4 aim of 0.5 or less)"
            + (
                f"; SDAS + partial channels / DARTS: {cost['sdas_pc']['search_s'] / darts['search_s']:.2f}"  # noqa: E501
                if "sdas_pc" in cost
                else ""
            )
            + ".\n"
        )
    if cost:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for name, label in COST.items():
            if name in cost and cost[name].get("epoch_s"):
                ax.plot(
                    range(len(cost[name]["epoch_s"])),
                    cost[name]["epoch_s"],
                    marker="o",
                    label=label,
                )
        ax.set_xlabel("search epoch")
        ax.set_ylabel("seconds per epoch")
        ax.set_title("Time per search epoch (same space, data, seed)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(dst / "epoch_times.png", dpi=90)
        plt.close(fig)
        add("![time per epoch](epoch_times.png)\n")
    add("Commands:\n")
    for name in COST:
        if name in cost:
            add(f"- {COST[name]}: `{_short(cost[name]['command'], out)}`")
    add("")

    longs = {
        v["method"]: v
        for v in items.values()
        if v.get("section") == "long" and v.get("rc") == 0 and v.get("search_s")
    }
    add("### Over a longer schedule\n")
    if longs:
        ld = longs.get("darts", {})
        ep = next(iter(longs.values())).get("epochs")
        rows = [
            [
                COST[k],
                _f(v["search_s"], 1),
                _f(v["search_s"] / ld["search_s"], 2) if ld.get("search_s") else "n/a",
                _f(v.get("cpu_s"), 1),
                _f(v["maxrss_mb"], 0),
                _f(v.get("val_acc"), 3),
            ]
            for k, v in longs.items()
            if k in COST
        ]
        add(
            f"The same four runs with `search.epochs={ep}` (one run each, same space and "
            f"steps per epoch): SDAS fixes edges linearly from the warm-up to the last epoch, "
            f"so the longer the search, the larger the share of cheap epochs.\n"
        )
        add(
            _table(
                [
                    "method",
                    "search s",
                    "x DARTS time",
                    "CPU s",
                    "peak RSS MB",
                    "final search-val acc",
                ],
                rows,
            )
        )
        if "sdas" in longs and ld.get("search_s"):
            add(
                f"\n**SDAS / DARTS total search time over {ep} epochs: "
                f"{longs['sdas']['search_s'] / ld['search_s']:.2f}**.\n"
            )
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for k, v in longs.items():
            ax.plot(range(len(v["epoch_s"])), v["epoch_s"], marker=".", label=COST.get(k, k))
        ax.set_xlabel("search epoch")
        ax.set_ylabel("seconds per epoch")
        ax.set_title(f"Time per search epoch, {ep}-epoch schedule")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(dst / "epoch_times_long.png", dpi=90)
        plt.close(fig)
        add("![time per epoch, long](epoch_times_long.png)\n")
        add(
            f"Command: `{_short(longs.get('sdas', ld).get('command', ''), out)}` (and the other "
            f"three recipes).\n"
        )
    else:
        add("Not measured in this run.\n")

    for sec, var, unit in (
        ("frames", "frames", "frames per clip"),
        ("cells", "cells", "cells in the supernet"),
    ):
        recs = [v for v in items.values() if v.get("section") == sec and v.get("rc") == 0]
        add(f"### Search cost vs {unit}\n")
        if not recs:
            add("Not measured in this run.\n")
            continue
        methods = sorted({r["method"] for r in recs})
        rows = []
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for mth in methods:
            rs = sorted((r for r in recs if r["method"] == mth), key=lambda r: r[var])
            base = rs[0]["search_s"]
            for r in rs:
                rows.append(
                    [
                        COST.get(mth, mth),
                        str(r[var]),
                        _f(r["search_s"], 1),
                        _f(r["search_s"] / base, 2),
                        _f(r["maxrss_mb"], 0),
                        _f(r.get("val_acc"), 3),
                    ]
                )
            ax.plot(
                [r[var] for r in rs],
                [r["search_s"] / base for r in rs],
                marker="o",
                label=COST.get(mth, mth),
            )
        ax.set_xlabel(unit)
        ax.set_ylabel(f"search time / time at {recs[0][var] if recs else ''}")
        ax.set_xticks(sorted({r[var] for r in recs}))
        ax.set_title(f"Search cost vs {unit}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(dst / f"cost_vs_{sec}.png", dpi=90)
        plt.close(fig)
        add(
            _table(["method", var, "search s", "x smallest", "peak RSS MB", "search-val acc"], rows)
        )
        add(f"\n![cost vs {var}](cost_vs_{sec}.png)\n")
        if recs[0].get("space") and recs[0]["space"] != "the base space":
            add(
                f"This sweep runs at `{recs[0]['space']}` instead of the base data settings "
                f"(see tools/bench.py MODES for why); every other setting as in the table above.\n"
            )
        add(
            f"Command (one per point; only `{'data.frames' if sec == 'frames' else 'model.num_cells'}` "  # noqa: E501
            f"changes): `{_short(recs[0]['command'], out)}`\n"
        )

    # ------------------------------------------------------------ 2. quality
    b = meta.get("budgets", {})
    add("## 2. Search quality at equal compute\n")
    add(
        f"**Equal compute = equal number of weight-training clips** (forward + backward) per "
        f"search, {b.get('clips')} clips here, not equal wall clock (wall clock is recorded, but "
        f"on a shared box it measures the neighbours as much as the method). Supernet clips are "
        f"counted at batch {b.get('batch')}; architecture steps (DARTS/SDAS alpha updates on "
        f"search-val batches) and proxy scoring (forward only) are not counted, which favours "
        f"the differentiable methods. Budgets: SDAS alone and DARTS: {cfg.get('epochs')} "
        f"epochs x {cfg.get('steps_per_epoch')} steps; hybrid: SDAS for {b.get('hybrid_epochs')} "
        f"epochs, then evolution with {cfg.get('hybrid_population')} seeds + "
        f"{b.get('hybrid_cycles')} cycles x {cfg.get('children')} children, {cfg.get('proxy_clips')}"  # noqa: E501
        f" proxy clips each ({b.get('hybrid_clips')} clips in all); random search: "
        f"{b.get('random_candidates')} uniform genotypes x {cfg.get('proxy_clips')} proxy clips, "
        f"best proxy accuracy wins; evolution alone: {cfg.get('evo_population')} seeds + "
        f"{b.get('evo_cycles')} cycles x {cfg.get('children')} children from a plain chain genotype,"  # noqa: E501
        f" uniform guidance, no supernet and no weight inheritance ({b.get('evo_clips')} clips). "
        f"Proxy nets run at half width (see recipes/search.yaml `evolution.proxy`), so a proxy clip"
        f" costs less than a supernet clip.\n"
    )
    add(
        f"Every found genotype is then trained with the same short recipe "
        f"(`recipe=train_builtin {' '.join(cfg.get('train', [])) or '(as shipped: 4 epochs over the whole training split, SGD + cosine, EMA)'}`"  # noqa: E501
        f" on the same data settings) and "
        f"scored once on the **test split** (500 clips) with the EMA weights of the **last** "
        f"epoch (not the best epoch: on the built-in data train.py validates on the test split, so "
        f"picking the best epoch would select on test). Seeds: {cfg.get('seeds')}.\n"
    )
    rows = []
    for mth, label in QUALITY.items():
        ts = [
            v
            for v in items.values()
            if v.get("section") == "train" and v.get("method") == mth and not v.get("baseline")
        ]
        ss = [v for k, v in items.items() if k.startswith(f"q_{mth}_s") and v.get("rc") == 0]
        accs = [t.get("test_top1") for t in ts]
        m, sd = _mean_sd(accs)
        sw, _ = _mean_sd([s.get("wall_s") for s in ss])
        sm, _ = _mean_sd([s.get("maxrss_mb") for s in ss])
        pm, _ = _mean_sd([t.get("params") for t in ts])
        fm, _ = _mean_sd([t.get("flops") for t in ts])
        lm, _ = _mean_sd([t.get("cpu_ms_per_clip") for t in ts])
        per_seed = ", ".join(f"{_f(a, 3)}" for a in accs)
        rows.append(
            [
                label,
                f"{_f(m, 3)} ± {_f(sd, 3)}" if m is not None else "not measured",
                per_seed or "-",
                str(len(ts)),
                _f(sw, 0),
                _f(sm, 0),
                _f(pm / 1e3 if pm else None, 1),
                _f(fm / 1e6 if fm else None, 1),
                _f(lm, 2),
            ]
        )
    add(
        _table(
            [
                "method",
                "test top-1 mean ± sd",
                "per seed",
                "n",
                "search wall s",
                "search peak RSS MB",
                "params (k)",
                "MFLOPs",
                "CPU ms/clip",
            ],
            rows,
        )
    )
    add("\nHand-designed baselines, same training recipe and data, trained once (seed 0):\n")
    rows = []
    for name, label in BASELINES.items():
        t = items.get(f"t_{name}_s0")
        if not t or "test_top1" not in t:
            why = (t or {}).get("eval_error") or (
                "not measured" if not t else "training failed: " + _last_error(t)
            )
            rows.append([label, why, "", "", "", ""])
            continue
        rows.append(
            [
                label,
                _f(t["test_top1"], 3),
                _f(t["params"] / 1e3, 1),
                _f(t["flops"] / 1e6, 1),
                _f(t["cpu_ms_per_clip"], 2),
                _f(t["wall_s"], 0),
            ]
        )
    add(
        _table(
            [
                "model",
                "test top-1",
                "params (k)",
                "MFLOPs",
                "CPU ms/clip (batch 1)",
                "train wall s",
            ],
            rows,
        )
    )
    tr = [v for v in items.values() if v.get("section") == "train"]
    if tr:
        add(
            "\nCommands: training `" + _short(tr[0]["command"], out) + "` (the genotype or "
            "`model.name=<baseline>` changes); searches: the `command` of each `q_*` row in "
            "results.json, e.g. hybrid: `"
            + _short(items.get("q_hybrid_s0", {}).get("command", "n/a"), out)
            + "`, evolution alone: `"
            + _short(items.get("q_evolution_s0", {}).get("command", "n/a"), out)
            + "`, random: `"
            + _short(items.get("q_random_s0", {}).get("command", "n/a"), out)
            + "`.\n"
        )
        add(
            "Test top-1 and cost per model: `python tools/evaluate.py ckpt=<run>/checkpoints/last.pt "  # noqa: E501
            "split=test <data settings>`; params/FLOPs/ms per clip from "
            "`hybridnas.search.latency` (`count_params`, `count_flops` = torch FlopCounter, "
            "`measure_latency` batch 1, median of torch.utils.benchmark blocks).\n"
        )

    # ------------------------------------------------------------ 3. plane
    add("## 3. The accuracy/latency plane\n")
    pts = [v for v in items.values() if v.get("section") == "train" and "test_top1" in v]
    if pts:
        from hybridnas.search.pareto import pareto_front

        P = [{"accuracy": p["test_top1"], "latency_ms": p["cpu_ms_per_clip"]} for p in pts]
        front = pareto_front(P, maximize=["accuracy"], minimize=["latency_ms"])
        fig, ax = plt.subplots(figsize=(6.2, 4.2))
        labels = {**QUALITY, **BASELINES}
        markers = dict(zip(labels, "o^sDvPX*h", strict=False))
        for mth in labels:
            sel = [p for p in pts if p["method"] == mth]
            if sel:
                ax.scatter(
                    [p["cpu_ms_per_clip"] for p in sel],
                    [p["test_top1"] for p in sel],
                    marker=markers[mth],
                    s=45,
                    label=labels[mth],
                )
        fr = sorted((P[i] for i in front), key=lambda p: p["latency_ms"])
        ax.plot(
            [p["latency_ms"] for p in fr],
            [p["accuracy"] for p in fr],
            "k--",
            lw=1,
            label="Pareto front",
        )
        ax.set_xscale("log")
        ax.set_xlabel("CPU ms per clip (batch 1, log scale)")
        ax.set_ylabel("test top-1")
        ax.set_title("Every trained model: accuracy vs latency")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(dst / "pareto.png", dpi=90)
        plt.close(fig)
        add(
            "Every genotype found above (each seed) and every baseline, test top-1 against CPU "
            "time per clip; the dashed line is the Pareto front (`hybridnas.search.pareto."
            "pareto_front`, maximise accuracy, minimise ms). On the front: "
            + ", ".join(
                f"{labels.get(pts[i]['method'], pts[i]['method'])} (seed {pts[i]['seed']}, "
                f"{_f(pts[i]['test_top1'], 3)}, {_f(pts[i]['cpu_ms_per_clip'], 2)} ms)"
                for i in front
            )
            + ".\n"
        )
        add("![accuracy/latency plane](pareto.png)\n")
    else:
        add("Not measured in this run.\n")

    # ------------------------------------------------------------ 4. faithfulness
    add("## 4. Proxy faithfulness\n")
    fa = [v for v in items.values() if v.get("section") == "faithfulness"]
    if fa:
        add(
            f"Kendall's tau between each proxy's accuracy (search-val subset, "
            f"{cfg.get('proxy_val_clips')} clips, scored as the evolution scores) and the "
            f"trained test accuracy of section 2, over the same {fa[0]['n']} found genotypes "
            f"(no weight inheritance, seed 0). The evolution's proxies are `evolution.proxy."
            f"stage_clips` (one stage, or staged successive halving) and `width_scale`.\n"
        )
        rows = [
            [
                f["proxy"],
                str(f["stage_clips"]),
                str(f["width_scale"]),
                str(f["n"]),
                _f(f["tau"], 3),
                _f(f["p_value"], 3),
                _f(f["seconds"], 0),
            ]
            for f in fa
        ]
        add(
            _table(
                ["proxy", "stage clips", "width scale", "n", "Kendall tau", "p", "seconds"], rows
            )
        )
        add(
            "\nMade by the `faithfulness` section of tools/bench.py (in-process, "
            "`hybridnas.search.proxy.build_proxy` + `train_stage`, scipy `kendalltau`).\n"
        )
    else:
        add("Not measured in this run.\n")

    # ------------------------------------------------------------ 5. GPU
    add("## 5. GPU figures\n")
    if mach.get("gpu"):
        rows = [[p["method"], str(p["seed"]), _f(p.get("gpu_ms_per_clip"), 3)] for p in pts]
        add(f"GPU: {mach['gpu']}.\n")
        add(_table(["model", "seed", "GPU ms/clip"], rows))
    else:
        add(
            "**Not measured**: this run had no CUDA device. On a machine with one, the same "
            "command records GPU ms per clip for every trained model (`gpu_ms_per_clip`) and the "
            "searches run on the GPU, so section 1 then gives GPU seconds per epoch "
            "(clips per second in search = steps x batch / epoch seconds).\n"
        )

    # ------------------------------------------------------------ 6. evolution ranks
    add("## 6. Evolution with 1 vs 2 ranks (issue 5)\n")
    ev = {v["ranks"]: v for v in items.values() if v.get("section") == "evo_ranks"}
    if ev:
        rows = [
            [
                str(n),
                _f(v.get("mean_cycle_s"), 2),
                str(v.get("cycle_times_s", "n/a")),
                _f(v.get("seed_population_s"), 2),
                str(v.get("threads", "n/a")),
                str(v.get("rc")),
            ]
            for n, v in sorted(ev.items())
        ]
        add(
            _table(
                [
                    "ranks",
                    "mean cycle s",
                    "cycle times s",
                    "seed population s",
                    "threads/rank",
                    "rc",
                ],
                rows,
            )
        )
        if 1 in ev and 2 in ev and ev[1].get("mean_cycle_s") and ev[2].get("mean_cycle_s"):
            add(
                f"\n2 ranks / 1 rank cycle time: **{ev[2]['mean_cycle_s'] / ev[1]['mean_cycle_s']:.2f}**"  # noqa: E501
                f" (1 torch thread per rank, `BENCH_THREADS=1`; on a 2-core box shared with other "
                f"jobs the second rank competes with them for a core).\n"
            )
        add(
            f"Command: `{_short(ev[min(ev)].get('command', ''), out)}` (and `--nproc_per_node=2`).\n"  # noqa: E501
        )
    else:
        add("Not measured in this run.\n")

    # ------------------------------------------------------------ reading
    add("## Reading\n")
    notes = dst / "reading.md"
    if notes.is_file():
        add(notes.read_text().strip() + "\n")
    else:
        add(
            "(no hand-written reading yet: put it in reading.md next to this file and re-run "
            "the report)\n"
        )

    (dst / "BENCHMARKS.md").write_text("\n".join(L) + "\n")
    if src.resolve() != dst.resolve():
        shutil.copyfile(src / "results.json", dst / "results.json")
    print(f"[bench] report written to {dst / 'BENCHMARKS.md'}")
    return dst / "BENCHMARKS.md"
