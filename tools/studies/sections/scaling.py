"""Search cost against frames per clip and against cells in the supernet (run as part of the
cost section, reported after it)."""

from __future__ import annotations

from studies.harness import Results, measure_search
from studies.markdown import ReportInput, fmt, pyplot, save_figure, short, table
from studies.modes import COST, METHODS, differentiable_overrides

SWEEPS = (("frames", "frames", "frames per clip"), ("cells", "cells", "cells in the supernet"))


def _reuse(R: Results, key: str, base: str, info: dict) -> None:
    """The base-space point of a sweep is the cost run itself: copy it instead of rerunning."""
    if base in R.items:
        R.items.setdefault(key, {**R.items[base], **info})
        R.save()


def _frames(R: Results, m: dict, name: str, base_frames: str) -> None:
    recipe, fs = METHODS[name][0], m.get("frames_space", [])
    drop = {base_frames} | {o.split("=")[0] for o in fs}
    space = [
        o for o in differentiable_overrides(m) if o not in drop and o.split("=")[0] not in drop
    ] + fs
    for t in m["frames"]:
        key = f"frames_{name}_t{t}"
        if not fs and f"data.frames={t}" == base_frames:
            _reuse(R, key, f"cost_{name}", {"section": "frames", "frames": t})
        info = {"section": "frames", "method": name, "frames": t, "seed": 0}
        info["space"] = " ".join(fs) or "the base space"
        measure_search(R, key, recipe, [*space, f"data.frames={t}", "seed=0"], info)


def _cells(R: Results, m: dict, name: str, base_cells: str | None) -> None:
    recipe = METHODS[name][0]
    space = [o for o in differentiable_overrides(m) if o != base_cells]
    for n in m["cells"]:
        key = f"cells_{name}_c{n}"
        if f"model.num_cells={n}" == base_cells:
            _reuse(R, key, f"cost_{name}", {"section": "cells", "cells": n})
        info = {"section": "cells", "method": name, "cells": n, "seed": 0}
        measure_search(R, key, recipe, [*space, f"model.num_cells={n}", "seed=0"], info)


def run(R: Results, m: dict) -> None:
    base_frames = next((o for o in m["space"] if o.startswith("data.frames=")), "data.frames=8")
    base_cells = next((o for o in m["space"] if o.startswith("model.num_cells=")), None)
    for name in m["scaling_methods"]:
        _frames(R, m, name, base_frames)
        _cells(R, m, name, base_cells)


def _sweep(r: ReportInput, sec: str, var: str, unit: str, recs: list[dict]) -> list[list[str]]:
    """The sweep's table rows; draws its figure (time relative to the smallest setting)."""
    plt = pyplot()
    rows = []
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for mth in sorted({rec["method"] for rec in recs}):
        rs = sorted((rec for rec in recs if rec["method"] == mth), key=lambda rec: rec[var])
        base = rs[0]["search_s"]
        for rec in rs:
            rows.append(
                [
                    COST.get(mth, mth),
                    str(rec[var]),
                    fmt(rec["search_s"], 1),
                    fmt(rec["search_s"] / base, 2),
                    fmt(rec["maxrss_mb"], 0),
                    fmt(rec.get("val_acc"), 3),
                ]
            )
        ratios = [rec["search_s"] / base for rec in rs]
        ax.plot([rec[var] for rec in rs], ratios, marker="o", label=COST.get(mth, mth))
    ax.set_xlabel(unit)
    ax.set_ylabel(f"search time / time at {recs[0][var] if recs else ''}")
    ax.set_xticks(sorted({rec[var] for rec in recs}))
    ax.set_title(f"Search cost vs {unit}")
    save_figure(fig, ax, r.dst / f"cost_vs_{sec}.png")
    return rows


def report(r: ReportInput) -> list[str]:
    L: list[str] = []
    for sec, var, unit in SWEEPS:
        recs = r.section(sec)
        L.append(f"### Search cost vs {unit}\n")
        if not recs:
            L.append("Not measured in this run.\n")
            continue
        rows = _sweep(r, sec, var, unit, recs)
        head = ["method", var, "search s", "x smallest", "peak RSS MB", "search-val acc"]
        L.append(table(head, rows))
        L.append(f"\n![cost vs {var}](cost_vs_{sec}.png)\n")
        if recs[0].get("space") and recs[0]["space"] != "the base space":
            L.append(
                f"This sweep runs at `{recs[0]['space']}` instead of the base data settings "
                f"(see tools/studies/modes.py for why); every other setting as in the table "
                f"above.\n"
            )
        knob = "data.frames" if sec == "frames" else "model.num_cells"
        L.append(
            f"Command (one per point; only `{knob}` changes): "
            f"`{short(recs[0]['command'], r.out)}`\n"
        )
    return L
