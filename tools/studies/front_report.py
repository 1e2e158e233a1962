"""front.json, front.png, front.md and the claims checker of the front benchmark.

front.json (anyone can recompute the claims from it)::

    {"recipe": {...}, "latency": {...},
     "tasks": {"<task>": {"rows": [{"name", "kind": "found" | "baseline" | "random", "family",
                                    "ms", "ms_predicted", "mflops", "params",
                                    "acc": [test top-1 per seed], "seeds": [...]}]}},
     "claims": {"<task>": check_claims(...)}}

A row *dominates* another when its measured ms is at most the other's times 1 + ``tol`` (5%)
and its mean accuracy is at least the other's mean.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE = "c3d_w10"
TOL = 0.05


def mean_sd(acc: list[float]) -> tuple[float, float]:
    """Mean and sample SD (ddof 1; 0 for a single seed) of a row's seed accuracies."""
    a = np.asarray(acc, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def assemble(records: list[dict], specs: list, lat: dict, tasks: tuple[str, ...]) -> dict:
    """``{"tasks": {task: {"rows": [...]}}}`` from the JSONL records and the latency run;
    a row appears once it has at least one trained seed, its accuracies in seed order."""
    out: dict[str, Any] = {}
    for task in tasks:
        rows = []
        for s in specs:
            mine = sorted((r for r in records if r["task"] == task and r["name"] == s.name),
                          key=lambda r: r["seed"])  # fmt: skip
            if not mine:
                continue
            rows.append({
                "name": s.name, "kind": s.kind, "family": s.family,
                "ms": lat["ms"][s.name], "ms_predicted": lat["ms_predicted"].get(s.name),
                "mflops": mine[0]["mflops"], "params": mine[0]["params"],
                "acc": [r["acc"] for r in mine], "seeds": [r["seed"] for r in mine],
            })  # fmt: skip
        out[task] = {"rows": rows}
    return {"tasks": out}


def dominators(row: dict, candidates: list[dict], tol: float = TOL) -> list[str]:
    """Names of the candidates at no more than ``row``'s ms (within ``tol``) whose mean
    accuracy is at least ``row``'s mean."""
    ms, acc = row["ms"], mean_sd(row["acc"])[0]
    return [
        c["name"] for c in candidates if c["ms"] <= ms * (1 + tol) and mean_sd(c["acc"])[0] >= acc
    ]


def reference_claim(rows: list[dict], found: list[dict], tol: float = TOL) -> dict:
    """C3D w10's claim: a found net at its ms or less (within ``tol``) beats its mean by more
    than the two rows' seed SDs added, or one at <= 0.5x its ms has a mean at least as high."""
    ref = next((r for r in rows if r["name"] == REFERENCE), None)
    if ref is None:
        return {"holds": None, "why": f"no {REFERENCE} row yet"}
    ref_mean, ref_sd = mean_sd(ref["acc"])
    beats, matches = [], []
    for f in found:
        f_mean, f_sd = mean_sd(f["acc"])
        if f["ms"] <= ref["ms"] * (1 + tol) and f_mean - ref_mean > f_sd + ref_sd:
            beats.append(f["name"])
        if f["ms"] <= 0.5 * ref["ms"] and f_mean >= ref_mean:
            matches.append(f["name"])
    return {"holds": bool(beats or matches), "beats": beats, "matches_at_half_ms": matches,
            "ms": ref["ms"], "mean": ref_mean, "sd": ref_sd}  # fmt: skip


def check_claims(task_doc: dict, found_family: str | None = None, tol: float = TOL) -> dict:
    """The front's claims on one task's rows: per baseline row the found rows that dominate
    it; C3D w10's claim (:func:`reference_claim`); per random row the found rows that dominate
    it. ``found_family``: judge only the found rows of that family, or of any of a comma list
    of families (None: every found row)."""
    rows = task_doc["rows"]
    judged = None if found_family is None else set(found_family.split(","))
    found = [r for r in rows if r["kind"] == "found"
             and (judged is None or r["family"] in judged)]  # fmt: skip

    def table(kind: str) -> list[dict]:
        return [
            {"name": r["name"], "ms": r["ms"], "mean": mean_sd(r["acc"])[0],
             "dominated_by": (d := dominators(r, found, tol)), "holds": bool(d)}
            for r in rows if r["kind"] == kind
        ]  # fmt: skip

    baselines, randoms = table("baseline"), table("random")
    return {
        "found": [r["name"] for r in found],
        "baselines": baselines,
        "all_baselines_dominated": bool(baselines) and all(b["holds"] for b in baselines),
        "reference": reference_claim(rows, found, tol),
        "random": randoms,
        "all_random_dominated": (all(r["holds"] for r in randoms) if randoms else None),
        "hybrid_vs_random": hybrid_vs_random(rows, tol),
        "variants_vs_random": {m: hybrid_vs_random(rows, tol, m) for m in search_variants(rows)},
    }


VARIANT_FAMILY = re.compile(r"^(hybrid_[a-z0-9]+)_s\d+$")


def search_variants(rows: list[dict]) -> list[str]:
    """Variants of the hybrid search with search seeds, from found families named
    ``hybrid_<variant>_s<k>`` (e.g. ``hybrid_b35_s0``), each compared with random search."""
    matches = (VARIANT_FAMILY.match(r["family"]) for r in rows if r["kind"] == "found")
    return sorted({m.group(1) for m in matches if m})


def hypervolume(points: list[tuple[float, float]], ms_ref: float, acc_ref: float) -> float:
    """Area (ms x top-1) dominated by ``points`` (ms, mean top-1) and bounded by the reference
    point (``ms_ref``, ``acc_ref``): faster and more accurate is better; points slower than
    ``ms_ref`` or below ``acc_ref`` add nothing."""
    pts = sorted((m, a) for m, a in points if m < ms_ref and a > acc_ref)
    area, best = 0.0, acc_ref
    for i, (ms, acc) in enumerate(pts):
        best = max(best, acc)
        right = pts[i + 1][0] if i + 1 < len(pts) else ms_ref
        area += (right - ms) * (best - acc_ref)
    return area


def search_seed_families(
    rows: list[dict], method: str = "hybrid"
) -> dict[str, dict[int, list[dict]]]:
    """``{"hybrid": {seed: rows}, "random": {seed: rows}}`` from the family names: ``<method>``
    and ``random`` are search seed 0, ``<method>_s<k>`` / ``random_s<k>`` seed k."""
    pattern = re.compile(rf"^({re.escape(method)}|random)(?:_s(\d+))?$")
    out: dict[str, dict[int, list[dict]]] = {"hybrid": {}, "random": {}}
    for r in rows:
        m = pattern.match(r["family"])
        if m and r["kind"] in ("found", "random"):
            key = "random" if m.group(1) == "random" else "hybrid"
            out[key].setdefault(int(m.group(2) or 0), []).append(r)
    return out


def hybrid_vs_random(rows: list[dict], tol: float = TOL, method: str = "hybrid") -> dict:
    """The hybrid search's families (``method``: or a variant's) against random search's, one
    pair per search seed: how many baseline rows each family dominates, and its hypervolume
    against (2x C3D w10's ms, chance 0.1). Mean and sample SD over the search seeds both
    methods have."""
    ref = next((r for r in rows if r["name"] == REFERENCE), None)
    if ref is None:
        return {"why": f"no {REFERENCE} row yet"}
    baselines = [r for r in rows if r["kind"] == "baseline"]
    ms_ref, acc_ref = 2.0 * ref["ms"], 0.1
    fams = search_seed_families(rows, method)
    per: dict[str, dict[int, dict]] = {}
    for side, by_seed in fams.items():
        per[side] = {
            seed: {
                "rows": [r["name"] for r in fam],
                "baselines_dominated": sum(bool(dominators(b, fam, tol)) for b in baselines),
                "hypervolume": hypervolume(
                    [(r["ms"], mean_sd(r["acc"])[0]) for r in fam], ms_ref, acc_ref
                ),
            }
            for seed, fam in sorted(by_seed.items())
        }
    seeds = sorted(set(per["hybrid"]) & set(per["random"]))

    def summary(side: str, key: str) -> list[float]:
        return [float(per[side][s][key]) for s in seeds]

    hv_h, hv_r = summary("hybrid", "hypervolume"), summary("random", "hypervolume")
    return {
        "method": method, "seeds": seeds, "ms_ref": ms_ref, "acc_ref": acc_ref, "per_seed": per,
        "hypervolume": {"hybrid": mean_sd(hv_h) if seeds else None,
                        "random": mean_sd(hv_r) if seeds else None},
        "baselines_dominated": {"hybrid": summary("hybrid", "baselines_dominated"),
                                "random": summary("random", "baselines_dominated")},
        "hybrid_wins_hypervolume": [h > r for h, r in zip(hv_h, hv_r, strict=True)],
    }  # fmt: skip


def plot_front(doc: dict, path: Path) -> None:
    """Accuracy against measured ms, one panel per task, one line per family (sorted by ms),
    error bars the seed SD; found families drawn thick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    tasks = [t for t, d in doc["tasks"].items() if d["rows"]]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 5.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        rows = doc["tasks"][task]["rows"]
        for fam in dict.fromkeys(r["family"] for r in rows):
            mine = sorted((r for r in rows if r["family"] == fam), key=lambda r: r["ms"])
            stats = [mean_sd(r["acc"]) for r in mine]
            kind = mine[0]["kind"]
            ax.errorbar(
                [r["ms"] for r in mine], [m for m, _ in stats], yerr=[s for _, s in stats],
                marker="o" if kind == "baseline" else "*", capsize=3,
                lw=2.5 if kind == "found" else 1.2, ls="--" if kind == "random" else "-",
                ms=10 if kind != "baseline" else 5, label=f"{fam} ({kind})",
            )  # fmt: skip
            for r, (m, _) in zip(mine, stats, strict=True):  # the size knob next to each point
                label = r["name"] if r["name"] == REFERENCE else r["name"].rsplit("_", 1)[-1]
                ax.annotate(label, (r["ms"], m), textcoords="offset points", xytext=(4, -10),
                            fontsize=7, color="0.3")  # fmt: skip
        ax.axhline(0.1, color="0.6", lw=0.8, ls=":")  # chance: ten classes
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("measured ms per clip (batch 1, one CPU thread, side by side)")
        ax.set_ylabel("test top-1 (mean over seeds, bars: seed SD)")
        ax.set_title(f"task {task}")
        ax.grid(alpha=0.3, which="both")
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    ncol = 3 * len(tasks)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=ncol, fontsize=8)
    fig.tight_layout(rect=(0, 0.04 * (1 + len(handles) // ncol), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(rows: list[dict]) -> list[str]:
    ref = next((r["ms"] for r in rows if r["name"] == REFERENCE), None)
    lines = [
        "| row | kind | ms | ms / c3d_w10 | predicted ms | MFLOPs | params | "
        "test top-1 mean +- SD | per seed |",
        "|" + " --- |" * 9,
    ]
    for r in sorted(rows, key=lambda r: (r["kind"] != "found", r["family"], r["ms"])):
        m, s = mean_sd(r["acc"])
        pred = "" if r["ms_predicted"] is None else f"{r['ms_predicted']:.2f}"
        ratio = "" if ref is None else f"{r['ms'] / ref:.2f}"
        lines.append(
            f"| {r['name']} | {r['kind']} | {r['ms']:.2f} | {ratio} | {pred} | "
            f"{r['mflops']:.1f} | {r['params']} | {m:.3f} +- {s:.3f} | "
            f"{', '.join(f'{a:.3f}' for a in r['acc'])} |"
        )
    return lines


def _claims(c: dict) -> list[str]:
    lines = [f"Found rows judged: {', '.join(c['found']) or 'none'}.", ""]
    for b in c["baselines"]:
        verdict = (
            f"dominated by {', '.join(b['dominated_by'])}" if b["holds"] else "**not dominated**"
        )
        lines.append(f"- {b['name']} ({b['ms']:.2f} ms, {b['mean']:.3f}): {verdict}")
    ref = c["reference"]
    if ref["holds"] is None:
        lines.append(f"- {REFERENCE}: {ref['why']}")
    else:
        lines.append(
            f"- {REFERENCE} claim ({ref['ms']:.2f} ms, {ref['mean']:.3f} +- {ref['sd']:.3f}): "
            f"{'holds' if ref['holds'] else '**does not hold**'} (beaten by more than the SDs "
            f"added at its ms or less: {ref['beats'] or 'none'}; matched at <= 0.5x its ms: "
            f"{ref['matches_at_half_ms'] or 'none'})"
        )
    for r in c["random"]:
        verdict = (
            f"dominated by {', '.join(r['dominated_by'])}" if r["holds"] else "**not dominated**"
        )
        lines.append(f"- random {r['name']} ({r['ms']:.2f} ms, {r['mean']:.3f}): {verdict}")
    lines += _hybrid_vs_random(c.get("hybrid_vs_random", {}))
    for variant in c.get("variants_vs_random", {}).values():
        lines += _hybrid_vs_random(variant)
    return lines


def _hybrid_vs_random(h: dict) -> list[str]:
    if not h.get("seeds"):
        return []
    name = h["method"]
    lines = [
        "",
        f"{name} against random search at equal compute, search seeds "
        f"{h['seeds']} "
        f"(hypervolume of each family's (ms, mean top-1) points against "
        f"({h['ms_ref']:.2f} ms, {h['acc_ref']}), and the baseline rows it dominates):",
        "",
        f"| search seed | {name} HV | random HV | {name} dominates | random dominates |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in h["seeds"]:
        hy, ra = h["per_seed"]["hybrid"][s], h["per_seed"]["random"][s]
        lines.append(
            f"| {s} | {hy['hypervolume']:.3f} | {ra['hypervolume']:.3f} | "
            f"{hy['baselines_dominated']} | {ra['baselines_dominated']} |"
        )
    (hm, hs), (rm, rs) = h["hypervolume"]["hybrid"], h["hypervolume"]["random"]
    wins = sum(h["hybrid_wins_hypervolume"])
    lines += [
        "",
        f"Hypervolume mean +- SD: {name} {hm:.3f} +- {hs:.3f}, random "
        f"{rm:.3f} +- {rs:.3f}; {name}'s is larger on {wins} of "
        f"{len(h['seeds'])} seeds.",
    ]
    return lines


def markdown(doc: dict) -> str:
    """A table per task (found rows first, then by family and ms) and its claims."""
    lines = []
    for task, tdoc in doc["tasks"].items():
        lines += [f"### Task `{task}`", "", *_table(tdoc["rows"]), ""]
        lines += [*_claims(doc["claims"][task]), ""]
    return "\n".join(lines)


def section(doc: dict, reading: str = "") -> str:
    """BENCHMARKS.md's "Front" section: how it was made, the figure, the tables and claims
    (:func:`markdown`), then the hand-written ``reading`` (front/reading.md)."""
    r = doc["recipe"]
    lat = doc["latency"]
    load = f", 1-min load {lat['load_before'][0]:.1f} on 2 cores" if "load_before" in lat else ""
    intro = [
        "## Front\n",
        "Made by `python tools/bench.py front` (tools/studies/front.py; resumable, every "
        "finished (task, row, seed) in [front/rows.jsonl](front/rows.jsonl); claims recomputable "
        "from [front/front.json](front/front.json) with "
        "`check_claims` of tools/studies/front_report.py). One common recipe for every row, "
        f"`recipes/bench/front.yaml` (hash `{r['hash']}`), **chosen before any found row was "
        f"trained under it**: AdamW lr {r['lr']} (cosine per step, no warm-up), weight decay "
        f"{r['weight_decay']}, head dropout {r['dropout']}, batch {r['batch_size']}, "
        f"{r['epochs']} epochs over {r['train_clips']} training clips ({r['frames']} x "
        f"{r['size']} x {r['size']}), BatchNorm statistics recomputed over "
        f"{r['bn_stats_clips']} training clips; test top-1 on the {r['num_test']} test clips, "
        "last weights, one thread per training. Latency: every row's network in one process, "
        f"{len(next(iter(lat['rounds'].values()), []))} interleaved rounds of batch-1 forward "
        f"passes on one thread, median ms per clip (measured {lat['measured_at']}{load}); "
        "compare the "
        "ratios, not the absolute ms. A row dominates another at no more than its ms (within "
        "5%) with a mean top-1 at least as high; SD is the sample SD over seeds.\n",
        "![accuracy against measured latency](front/front.png)\n",
    ]
    return "\n".join([*intro, markdown(doc), reading.strip(), ""])


def write_front(
    records: list[dict],
    specs: list,
    lat: dict,
    recipe: Any,
    out: Path,
    judge_family: str | None = None,
) -> dict:
    """Write ``front.json``, ``front.png``, ``front.md`` and ``section.md`` (the BENCHMARKS
    section, with ``reading.md`` if present) under ``out``; the claims judge the found rows of
    ``judge_family`` (None: every found row). Returns the doc."""
    doc = assemble(records, specs, lat, recipe.tasks)
    doc["claims"] = {t: check_claims(d, judge_family) for t, d in doc["tasks"].items()}
    doc["recipe"] = {**asdict(recipe), "hash": recipe.hash()}
    doc["latency"] = {k: v for k, v in lat.items() if k not in ("ms", "ms_predicted")}
    (out / "front.json").write_text(json.dumps(doc, indent=1))
    if any(d["rows"] for d in doc["tasks"].values()):
        plot_front(doc, out / "front.png")
    (out / "front.md").write_text(markdown(doc))
    reading = out / "reading.md"
    (out / "section.md").write_text(section(doc, reading.read_text() if reading.is_file() else ""))
    return doc


def sync_benchmarks(out: Path, benchmarks: Path) -> None:
    """Put ``out/section.md`` into ``benchmarks`` (BENCHMARKS.md): in place of an earlier
    "## Front" section, else before "## Reading", where ``tools/bench.py report`` puts it."""
    sec = (out / "section.md").read_text().strip() + "\n\n"
    text = benchmarks.read_text()
    if "\n## Front\n" in text:
        i = text.index("\n## Front\n") + 1
        j = text.find("\n## ", i + 1)
        text = text[:i] + sec + (text[j + 1 :] if j >= 0 else "")
    elif "\n## Reading\n" in text:
        i = text.index("\n## Reading\n") + 1
        text = text[:i] + sec + text[i:]
    else:
        text = text.rstrip() + "\n\n" + sec
    benchmarks.write_text(text)
