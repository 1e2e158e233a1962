"""Section 1: search cost of DARTS / PC-DARTS / SDAS / SDAS + partial channels on the same
space, data, seed and schedule (differentiable stage only), with interleaved repeats."""

from __future__ import annotations

import statistics
import sys

from studies.harness import Results, measure_search, run_child
from studies.markdown import ReportInput, fmt, pyplot, save_figure, short, table
from studies.modes import COST, METHODS, differentiable_overrides

TITLE = "## 1. Search cost: DARTS vs PC-DARTS vs SDAS vs SDAS + partial channels\n"


def run(R: Results, m: dict) -> None:
    if "rss_floor" not in R.items:  # what Python + torch + hybridnas hold before any work
        code = "import torch, hybridnas, hybridnas.search.differentiable.loop, hydra"
        log = R.out / "logs" / "rss.log"
        R.put("rss_floor", run_child([sys.executable, "-c", code], log, R.threads))
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
    from studies.sections import scaling

    scaling.run(R, m)  # the frames and cells sweeps (reported on their own)


def _intro(r: ReportInput) -> str:
    floor = r.items.get("rss_floor", {})
    return (
        f"Same space, data, seed and schedule (`search.epochs={r.cfg.get('epochs')} "
        f"search.steps_per_epoch={r.cfg.get('steps_per_epoch')}`), differentiable stage only, "
        f"each run its own process. *Search s* is the sum of the per-epoch times the search "
        f"logs (`time/epoch_s` in metrics.jsonl: training steps incl. architecture steps and "
        f"SDAS fixing, plus validation); *wall s* adds process start, data and outputs. "
        f"*CPU s* is the process's user + system CPU time (`ru_utime + ru_stime`, incl. "
        f"~{fmt(floor.get('cpu_s'), 1)} s of imports): less sensitive to "
        f"the neighbours' load than wall time, so its ratio is the steadier cost figure. "
        f"*Peak RSS* is the process's `ru_maxrss` (includes ~{fmt(floor.get('maxrss_mb'), 0)}"
        f" MB for Python + torch + hybridnas imported and idle, measured the same way: torch "
        f"alone is ~500 MB here); *above idle* subtracts that floor, which is what the search "
        f"itself holds (weights, activations, optimizer state, data).\n"
    )


HEAD = [
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
]


def _row(label: str, r: dict, darts: dict, floor: float | None) -> list[str]:
    ratio = r["search_s"] / darts["search_s"] if darts.get("search_s") else None
    eps = r.get("epoch_s") or [None]
    cpu_ratio = r["cpu_s"] / darts["cpu_s"] if darts.get("cpu_s") else None
    return [
        label,
        fmt(r["search_s"], 1),
        fmt(ratio, 2),
        fmt(r.get("cpu_s"), 1),
        fmt(cpu_ratio, 2),
        fmt(r["wall_s"], 1),
        fmt(statistics.fmean(eps[1:]) if len(eps) > 1 else eps[0], 2),
        fmt(r["maxrss_mb"], 0),
        fmt(r["maxrss_mb"] - floor, 0) if floor else "n/a",
        fmt((r["maxrss_mb"] - floor) / (darts["maxrss_mb"] - floor), 2)
        if floor and darts.get("maxrss_mb")
        else "n/a",
        fmt(r.get("val_acc"), 3),
    ]


def _repeats_note(repeats: dict[str, list[dict]]) -> str:
    every = "; ".join(
        f"{COST.get(k, k)}: "
        + ", ".join(
            f"{fmt(r['search_s'], 1)}/{fmt(r.get('cpu_s'), 1)}/{r.get('load_before', ['?'])[0]}"
            for r in v
        )
        for k, v in repeats.items()
    )
    return (
        "\nEach method ran " + str(max(len(v) for v in repeats.values())) + " times, "
        "interleaved (DARTS, PC-DARTS, SDAS, SDAS+PC, then again); the table shows each "
        "method's fastest repeat. All repeats (search s / CPU s / load before): " + every + "."
    )


def _ratio_note(cost: dict, darts: dict) -> str:
    ratio = cost["sdas"]["search_s"] / darts["search_s"]
    pc = (
        f"; SDAS + partial channels / DARTS: {cost['sdas_pc']['search_s'] / darts['search_s']:.2f}"
        if "sdas_pc" in cost
        else ""
    )
    return (
        f"\n**SDAS / DARTS total search time: {ratio:.2f}** "
        f"({'meets' if ratio <= 0.5 else 'does not meet'} the issue-4 aim of 0.5 or less)"
        + pc
        + ".\n"
    )


def _figure(r: ReportInput, cost: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, label in COST.items():
        if name in cost and cost[name].get("epoch_s"):
            epochs = cost[name]["epoch_s"]
            ax.plot(range(len(epochs)), epochs, marker="o", label=label)
    ax.set_xlabel("search epoch")
    ax.set_ylabel("seconds per epoch")
    ax.set_title("Time per search epoch (same space, data, seed)")
    save_figure(fig, ax, r.dst / "epoch_times.png")


def report(r: ReportInput) -> list[str]:
    L = [TITLE, _intro(r)]
    repeats: dict[str, list[dict]] = {}
    for v in r.section("cost"):
        if v.get("search_s"):
            repeats.setdefault(v["method"], []).append(v)
    cost = {k: min(v, key=lambda rec: rec["search_s"]) for k, v in repeats.items()}
    darts = cost.get("darts", {})
    floor = r.items.get("rss_floor", {}).get("maxrss_mb")
    rows = [
        _row(label, cost[name], darts, floor) if name in cost else [label] + ["not measured"] * 10
        for name, label in COST.items()
    ]
    L.append(table(HEAD, rows))
    if any(len(v) > 1 for v in repeats.values()):
        L.append(_repeats_note(repeats))
    if "sdas" in cost and darts.get("search_s"):
        L.append(_ratio_note(cost, darts))
    if cost:
        _figure(r, cost)
        L.append("![time per epoch](epoch_times.png)\n")
    L.append("Commands:\n")
    L += [f"- {COST[n]}: `{short(cost[n]['command'], r.out)}`" for n in COST if n in cost]
    L.append("")
    return L
