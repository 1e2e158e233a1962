"""``tools/bench.py latency``: the latency table's predictions against end-to-end times.

Draws genotypes of the default search space (recipes/search.yaml): uniform cells (two
distinct inputs per node, ops uniform over the non-``none`` ops) on the default skeleton, and
macro variants (frames, frame stride, size, width multiplier, depth from the evolution's
ranges, x0.5 and x1.5 widths besides). Every network is timed at batch 1, one thread, eval
mode, by the table's clock (the thread's CPU time at one thread), round-robin over ``rounds``
rounds (a block of calls each, order shuffled per round; the median per network, as the
table keeps per part), together with every part the networks are made of, so load drifts
hit networks and parts alike. Reports Spearman and
Kendall of predicted vs measured ms, the median absolute percentage error, and FLOPs' (and
parameters') rank correlation with measured time beside them; writes ``latency_model.json``
and ``latency_model.png`` next to BENCHMARKS.md and its "Latency model" section.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.utils.benchmark as benchmark
from scipy import stats

from hybridnas.measure.counts import count_flops, count_params
from hybridnas.measure.latency_parts import genotype_parts
from hybridnas.measure.latency_table import (
    LatencyTable,
    calibrate,
    clock,
    interleaved_times,
    open_table,
    part_timer,
)
from hybridnas.search.evolution.macro_mutations import MacroRanges, macro_ranges
from hybridnas.space.genotype import CellSpec, Genotype
from hybridnas.space.macro import MacroSpec, round_width
from hybridnas.space.network import build_network

COMMAND = "python tools/bench.py latency"
DEVICE = torch.device("cpu")


def uniform_cell(rng: np.random.Generator, ops: list[str], steps: int) -> CellSpec:
    """Two distinct inputs per node, each through a uniformly drawn op; all nodes concat."""
    edges = []
    for j in range(2, 2 + steps):
        for i in sorted(rng.choice(j, size=2, replace=False).tolist()):
            edges.append((int(i), j, ops[int(rng.integers(len(ops)))]))
    return CellSpec(tuple(edges), tuple(range(2, 2 + steps)))


def draw_genotypes(
    base: MacroSpec, ops: list[str], steps: int, r: MacroRanges, n: int, seed: int = 0
) -> list[Genotype]:
    """``n`` genotypes: the first half uniform cells on ``base``, the rest macro variants
    drawn from the ranges ``r``."""
    rng = np.random.default_rng(seed)
    ops = [o for o in ops if o != "none"]
    mults = sorted({0.5, 1.5, *r.width_mults, 1.0})
    out = []
    for k in range(n):
        cells = {t: uniform_cell(rng, ops, steps) for t in ("normal", "reduce")}
        macro = base
        if k >= n // 2:
            mult = float(rng.choice(mults))
            lo, hi = r.num_cells
            macro = replace(
                base,
                frames=int(rng.choice(r.frames)),
                frame_stride=int(rng.choice(r.frame_stride)),
                size=int(rng.choice(r.size)),
                num_cells=int(rng.integers(lo, hi + 1)),
                stage_widths=tuple(round_width(w * mult) for w in base.stage_widths),
                stem_channels=round_width(base.stem_channels * mult),
            )
        out.append(Genotype(cells["normal"], cells["reduce"], macro=macro))
    return out


def network_timer(g: Genotype, threads: int) -> benchmark.Timer:
    """A timer of one batch-1 forward of ``g``'s network (eval, inference mode)."""
    torch.manual_seed(0)
    net = build_network(g).eval()
    x = torch.randn(1, g.in_channels, g.frames, g.size, g.size)

    def run() -> None:
        with torch.inference_mode():
            net(x)

    return benchmark.Timer(
        stmt="run()", globals={"run": run}, num_threads=threads, timer=clock(DEVICE, threads)
    )


def measure_together(
    genotypes: list[Genotype], rounds: int, block_s: float, threads: int
) -> tuple[list[float], dict[str, float]]:
    """(ms per clip of each network, {part: ms}) with every network and every
    part they are made of timed in the same shuffled rounds: a table measured side by side
    with the networks it predicts, so the machine's load cannot move one against the other."""
    device = torch.device("cpu")
    parts = list(dict.fromkeys(p for g in genotypes for p in genotype_parts(g)))
    timers = {}
    for key in parts:
        t = part_timer(key, device, threads)
        timers[key] = (t, calibrate(t, block_s / 4))
    for k, g in enumerate(genotypes):
        t = network_timer(g, threads)
        timers[f"net:{k}"] = (t, calibrate(t, block_s))
    times = interleaved_times(timers, rounds)
    nets = [times.pop(f"net:{k}") for k in range(len(genotypes))]
    return nets, times


def correlations(x: list[float], y: list[float]) -> dict[str, float]:
    return {
        "spearman": float(stats.spearmanr(x, y).statistic),
        "kendall": float(stats.kendalltau(x, y).statistic),
    }


def run_check(args: argparse.Namespace) -> dict:
    from hybridnas.config import SearchRun
    from studies.harness import compose

    torch.set_num_threads(args.threads)
    run = SearchRun.from_cfg(compose("search", args.overrides))
    base = MacroSpec.from_config(vars(run.model), run.data, num_classes=10)
    ranges = macro_ranges(run)
    genotypes = draw_genotypes(
        base, list(run.model.op_names), run.model.steps, ranges, args.n, args.seed
    )
    table = open_table("cpu", args.threads, path=args.table)
    start = time.perf_counter()
    cached = [table.predict_ms(g) for g in genotypes]  # measures the parts it lacks
    table_s = time.perf_counter() - start
    start = time.perf_counter()
    measured, entries = measure_together(genotypes, args.rounds, args.block_s, args.threads)
    measure_s = time.perf_counter() - start
    fresh = LatencyTable(table.key, entries)
    predicted = [fresh.predict_ms(g) for g in genotypes]
    flops, params = [], []
    for g in genotypes:
        net = build_network(g)
        shape = (g.in_channels, g.frames, g.size, g.size)
        flops.append(count_flops(net, shape))
        params.append(count_params(net))
    pred, meas = np.array(predicted), np.array(measured)
    return {
        "command": " ".join([COMMAND, *args.overrides]),
        "n": len(genotypes),
        "n_uniform_cells": args.n // 2,
        "n_macro_variants": args.n - args.n // 2,
        "threads": args.threads,
        "rounds": args.rounds,
        "table": table.digest,
        "table_key": table.key,
        "table_parts": len(table.entries),
        "table_fill_s": round(table_s, 1),
        "measure_s": round(measure_s, 1),
        "predicted": correlations(predicted, measured),
        "mape": float(np.median(np.abs(pred - meas) / meas)),
        "ratio_median": float(np.median(pred / meas)),
        "cached": correlations(cached, measured),
        "cached_mape": float(np.median(np.abs(np.array(cached) - meas) / meas)),
        "flops": correlations(flops, measured),
        "params": correlations(params, measured),
        "points": [
            {
                "predicted_ms": round(p, 4),
                "cached_ms": round(c, 4),
                "measured_ms": round(m, 4),
                "flops": f,
                "key": g.key(),
            }
            for p, c, m, f, g in zip(predicted, cached, measured, flops, genotypes, strict=True)
        ],
    }


def plot(doc: dict, path: Path) -> None:
    from studies.markdown import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    meas = [p["measured_ms"] for p in doc["points"]]
    for ax, key, label in ((axes[0], "predicted_ms", "table prediction (ms)"),
                           (axes[1], "flops", "FLOPs")):  # fmt: skip
        ax.scatter([p[key] for p in doc["points"]], meas, s=12)
        ax.set_xlabel(label)
        ax.set_ylabel("measured ms per clip (1 thread)")
    lo, hi = min(meas), max(meas)
    axes[0].plot([lo, hi], [lo, hi], c="0.6", lw=1)
    axes[0].set_title(f"Spearman {doc['predicted']['spearman']:.3f}")
    axes[1].set_title(f"Spearman {doc['flops']['spearman']:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def latency_model_section(doc: dict) -> list[str]:
    """The "Latency model" section of BENCHMARKS.md from ``latency_model.json``."""
    p, f, w, c = doc["predicted"], doc["flops"], doc["params"], doc["cached"]
    return [
        "## Latency model\n",
        f"`{doc['command']}` ({doc['n']} genotypes of the default space: "
        f"{doc['n_uniform_cells']} uniform cells on the default skeleton and "
        f"{doc['n_macro_variants']} macro variants of frames, frame stride, size, widths and "
        f"depth; batch 1, {doc['threads']} thread, thread CPU time, {doc['rounds']} "
        f"interleaved rounds, median per network and part; "
        f"table {doc['table']} of {doc['table_parts']} parts).\n",
        "| predictor of measured ms per clip | Spearman | Kendall |",
        "|---|---|---|",
        f"| latency table, parts timed in the same rounds as the networks | "
        f"{p['spearman']:.3f} | {p['kendall']:.3f} |",
        f"| the cached table the search reads (parts timed earlier, apart from the networks) | "
        f"{c['spearman']:.3f} | {c['kendall']:.3f} |",
        f"| FLOPs | {f['spearman']:.3f} | {f['kendall']:.3f} |",
        f"| parameters | {w['spearman']:.3f} | {w['kendall']:.3f} |",
        "",
        f"Median absolute percentage error: {100 * doc['mape']:.1f}% side by side "
        f"(median predicted/measured {doc['ratio_median']:.2f}: parts timed alone, their "
        "inputs and weights hot in cache, run faster than in sequence inside a network), "
        f"{100 * doc['cached_mape']:.1f}% for the cached table. "
        f"Measuring took {doc['measure_s']:.0f} s; filling the cached table's missing parts "
        f"{doc['table_fill_s']:.0f} s.\n",
        "![latency model](latency_model.png)\n",
    ]


def write_section(doc: dict, md: Path) -> None:
    """Put the section into BENCHMARKS.md, replacing an older one (before "## Reading")."""
    text = md.read_text() if md.is_file() else "# hybridnas benchmarks\n"
    section = "\n".join(latency_model_section(doc)) + "\n"
    start = text.find("## Latency model")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    else:
        at = text.find("## Reading")
        text = text[:at] + section + "\n" + text[at:] if at >= 0 else text + "\n" + section
    md.write_text(text)


def main(argv: list[str], report_dir: Path) -> None:
    ap = argparse.ArgumentParser(prog="tools/bench.py latency", description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--block-s", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--table", default=None)
    ap.add_argument("--report-dir", type=Path, default=report_dir)
    ap.add_argument("overrides", nargs="*", help="recipes/search.yaml overrides")
    args = ap.parse_args(argv)
    doc = run_check(args)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    (args.report_dir / "latency_model.json").write_text(json.dumps(doc, indent=1))
    plot(doc, args.report_dir / "latency_model.png")
    write_section(doc, args.report_dir / "BENCHMARKS.md")
    p, f = doc["predicted"], doc["flops"]
    print(
        f"[bench] latency model on {doc['n']} genotypes: table Spearman {p['spearman']:.3f} "
        f"Kendall {p['kendall']:.3f} MAPE {100 * doc['mape']:.1f}%; FLOPs Spearman "
        f"{f['spearman']:.3f} Kendall {f['kendall']:.3f}"
    )
