"""The signal sections of BENCHMARKS.md: ground truth, scorers, search quality, rewiring,
schedule.

Read from files in the report folder, written by ``tools/bench.py gt-report``:
``groundtruth_summary.json`` (the table's statistics) and ``scorers_summary.json`` (each
scorer's rank agreement on the evaluation half). Missing files give no section.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studies.patchmix_report import patchmix_section


def _ci(lo_hi: list[float]) -> str:
    return f"[{lo_hi[0]:+.2f}, {lo_hi[1]:+.2f}]"


def _mean_rows(s: dict[str, Any]) -> list[str]:
    """What the mean over seeds buys (rows of the ground-truth table), when summarised."""
    if "mean_spread_ratio" not in s:
        return []
    return [
        f"| seeds per architecture (mean) | {s['seeds_per_arch']:.2f} |",
        f"| SD between architectures of the seed mean | {s['mean_arch_sd']:.4f} |",
        f"| SD of the seed mean due to seeds | {s['mean_seed_sd']:.4f} (seed SD / sqrt(seeds)) |",
        f"| between / within ratio, seed mean | **{s['mean_spread_ratio']:.1f}x** |",
        f"| seed 0 vs seed 1 Pearson r; reliability of the seed mean (Spearman-Brown) | "
        f"{s['pair_pearson']:.2f}; {s['mean_reliability']:.2f} |",
        *_ceiling_row(s.get("selection_ceiling") or {}),
    ]


def _ceiling_row(c: dict[str, Any]) -> list[str]:
    if not c:
        return []
    return [
        f"| selection ceiling: the top {100 * c['share']:.0f}% by seed 0 ({c['archs']} archs), "
        f"placed by their seed-1 accuracy | percentile {c['seed1_percentile_mean']:.0f} "
        "(what a search that knew every seed-0 result would show on a fresh training) |"
    ]


def groundtruth_section(s: dict[str, Any], reading: str = "") -> list[str]:
    nc = s["noise_ceiling"]
    acc = s["test_acc"]
    rows = [
        "## Ground truth: a trained table of the default space\n",
        "Rebuild (append-only, resumable; 300 trainings, ~2 h on 2 free cores): "
        "`python tools/bench.py groundtruth --workers 2`; figures and numbers: "
        "`python tools/bench.py gt-report`. Table: `hybridnas/groundtruth/data/groundtruth.jsonl` "
        f"(recipe hash `{s['recipe']}`, `hybridnas.groundtruth.GroundTruthRecipe`).\n",
        "Recipe: genotypes of the default search space (8 ops, 3 cells of 3 nodes, widths "
        "4/8/16, stem 8 with spatial stride 2) drawn uniformly (every node two distinct "
        "inputs, ops uniform over the 7 non-`none` ops); built-in moving digits rendered at "
        "32 px and area-downsampled to 16x16, 8 frames; SGD lr 0.1 (cosine per step), "
        "momentum 0.9, batch 32, 6 epochs of the 1500 training clips; test top-1 on the 500 "
        "test clips, val top-1 on 500 search_val clips, BatchNorm in eval mode. One thread "
        f"per worker; median {s['train_seconds_median']:.0f} s of training per architecture "
        "with two workers sharing the two cores.\n",
        "| what | value |",
        "| --- | --- |",
        f"| architectures | {s['archs']} (calibration {s['halves']['calibration']}, "
        f"evaluation {s['halves']['evaluation']}) |",
        f"| architectures trained with a second seed | {s['pairs']} |",
        f"| test top-1 over architectures | mean {acc['mean']:.3f}, min {acc['min']:.3f}, "
        f"quartiles {', '.join(f'{q:.3f}' for q in acc['quartiles'])}, max {acc['max']:.3f} "
        "(chance 0.100) |",
        f"| SD between architectures | {s['arch_sd']:.4f} |",
        f"| SD between seeds of one architecture | {s['seed_sd']:.4f} |",
        f"| between / within ratio, one seed | **{s['spread_ratio']:.1f}x** (goal: >= 3x; "
        f"{'met' if s['spread_ratio'] >= 3 else 'not met'}) |",
        *_mean_rows(s),
        f"| noise ceiling: Kendall tau seed 0 vs seed 1 | **{nc['tau']:+.3f}** {_ci(nc['tau_ci'])}"
        f" (Spearman {nc['rho']:+.3f}, n={nc['n']}) |",
        f"| FLOPs as a score (evaluation half) | tau {s['flops_tau_evaluation']['tau']:+.3f} "
        f"{_ci(s['flops_tau_evaluation']['tau_ci'])} |",
        f"| params as a score (evaluation half) | tau {s['params_tau_evaluation']['tau']:+.3f}"
        f" {_ci(s['params_tau_evaluation']['tau_ci'])} |",
        "",
        "![accuracy histogram](gt_accuracy_hist.png) ![accuracy vs FLOPs]"
        "(gt_accuracy_vs_flops.png)\n",
        "Which ops go with accuracy (Spearman rho between an op's edge count in a cell type "
        "and test top-1, all architectures; strongest 8):\n",
        "| cell | op | rho | p |",
        "| --- | --- | --- | --- |",
    ]
    for r in s["op_correlations"][:8]:
        rows.append(f"| {r['cell']} | {r['op']} | {r['rho']:+.3f} | {r['p']:.1e} |")
    ranked_by = "the mean over their seeds" if s.get("truth") == "mean" else "seed 0"
    rows += [
        "",
        f"{s['pairs_within_0.05']} of the {s['pairs']} seed pairs agree within 0.05 and "
        f"{s['pairs_over_0.15']} differ by more than 0.15 (up to {s['pair_max_diff']:.2f}). "
        f"Architectures are ranked by {ranked_by}.",
    ]
    if reading:
        rows += ["", reading]
    return [*rows, ""]


def scorers_section(s: dict[str, Any]) -> list[str]:
    rows = [
        "## Scorers against the ground truth\n",
        "Commands: `python tools/bench.py scorers` (zero-cost scorers on every table "
        "genotype), `python tools/bench.py scorers --names oneshot --supernet RUN` (one-shot "
        "through a trained supernet), then `python tools/bench.py gt-report`. Per-genotype "
        "scores: [scores.json](scores.json). Kendall tau and Spearman rho against test top-1 "
        "(the mean over an architecture's two seeds) on the **evaluation half** with bootstrap "
        "95% intervals (1000 resamples); both ensembles (mean rank; one of the non-trivial "
        "scorers, one that may include params or flops) were chosen on the calibration half "
        "only. Cost: median ms per candidate on one thread on shared cores (inflated by "
        "whatever else ran, differently per scorer; compare ratios measured together). "
        "`proxy` (the evolution's trained proxy, 7.5 s per candidate) was scored on the "
        "evaluation half only.\n",
        f"Noise ceiling (seed vs seed): tau {s['noise_ceiling']['tau']:+.3f} "
        f"{_ci(s['noise_ceiling']['tau_ci'])}.\n",
        "| scorer | tau (eval half) | 95% CI | rho | 95% CI | top-quartile tau | "
        "calibration tau | ms / candidate |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in s["rows"]:
        rows.append(
            f"| {r['scorer']} | {r['tau']:+.3f} | {_ci(r['tau_ci'])} | {r['rho']:+.3f} | "
            f"{_ci(r['rho_ci'])} | {r['top_quartile_tau']:+.3f} | {r['calibration_tau']:+.3f} "
            f"| {r['ms_per_candidate']:.0f} |"
        )
    rows.append("")
    rows += selection_rows(s.get("selection", {}))
    if s.get("reading"):
        rows += [s["reading"], ""]
    return rows


def selection_rows(selection: dict[str, Any]) -> list[str]:
    """Best-of-N selection by each scorer, simulated on the evaluation half."""
    if not selection:
        return []
    ns = sorted(selection, key=int)
    rows = [
        "Search by selection, simulated on the table (evaluation half): draw N architectures "
        "uniformly, keep the one the scorer ranks best, place its true test top-1 as a "
        "percentile of the table's random distribution; mean +- SD over 500 draws. `random` "
        "keeps the first drawn (one training), `oracle` the truly best of the N.\n",
        "| selector | " + " | ".join(f"N={n}: percentile" for n in ns) + " |",
        "| --- | " + " | ".join("---" for _ in ns) + " |",
    ]
    names = list(selection[ns[0]])
    order = sorted(names, key=lambda k: -selection[ns[0]][k]["mean"])
    for name in order:
        cells = [f"{selection[n][name]['mean']:.1f} +- {selection[n][name]['sd']:.1f}" for n in ns]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*rows, ""]


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def quality_section(s: dict[str, Any], reading: str = "") -> list[str]:
    """Search methods at equal compute, found cells placed in the table (gt_quality.py)."""
    meta, b = s["meta"], s["meta"].get("budgets", {})
    rows = [
        "## Search quality on the ground truth\n",
        "Commands: `python tools/bench.py quality --seeds 0,1,2` (every method; resumable), "
        "`python tools/bench.py quality --methods hybrid_fast,hybrid_beta --seeds 3,4`, "
        "parallel runs joined with `--merge DIR ...` (`--summary-only` to summarise), then "
        "`python tools/bench.py gt-report`. Raw items: `runs/bench_gt_quality*/results.json`; "
        "summary: [quality_gt.json](quality_gt.json). Every method searches the default space "
        f"(`{' '.join(meta['config']['space'])}`) with the same number of weight-training "
        f"clips ({b.get('clips')}); each found genotype's cells are trained with the "
        f"ground-truth recipe with seeds {meta.get('gt_seeds')} and the mean test top-1 is "
        "placed as a percentile of the table's random architectures (50 = the median random "
        "draw).\n",
        *_method_rows(s),
    ]
    if reading:
        rows += ["", reading]
    return [*rows, ""]


def _method_rows(s: dict[str, Any]) -> list[str]:
    """The per-method table of a gt_quality summary."""
    rows = [
        "| method | percentile mean +- SD | per seed | test top-1 per seed | MFLOPs | "
        "search wall s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in s["methods"].values():
        mean, sd = r["percentile_mean_sd"]
        per_seed = ", ".join(f"{p:.0f}" for p in r["percentiles"]) or "-"
        accs = ", ".join(f"{a:.3f}" for a in r["test_acc"]) or "-"
        failed = f" (failed: seeds {r['failed']})" if r["failed"] else ""
        rows.append(
            f"| {r['label']}{failed} | {_fmt(mean, '.1f')} +- {_fmt(sd, '.1f')} | {per_seed} | "
            f"{accs} | {_fmt(r['mflops'], '.1f')} | {_fmt(r['search_wall_s'], '.0f')} |"
        )
    return rows


def rewiring_section(s: dict[str, Any], reading: str = "") -> list[str]:
    """Alpha-guided against learned-connection-guided rewiring (gt_quality.py's rewiring rows)."""
    rows = [
        "## Rewiring: the supernet's alphas against each candidate's learned connection weights\n",
        "Commands (as run: four processes, one after the other): `python tools/bench.py "
        "quality --methods hybrid_evo,hybrid_assemble --seeds 0,1,2 --out "
        "runs/bench_gt_assemble`; `... --methods hybrid_evo,hybrid_assemble,hybrid_multi "
        "--seeds 3,4 --out runs/bench_gt_assemble2`; `... --methods hybrid_multi --seeds 0,1,2 "
        "--out runs/bench_gt_assemble3`; `... --methods hybrid_assemble_weakest --seeds "
        "0,1,2,3,4 --out runs/bench_gt_assemble4`; then `python tools/bench.py quality "
        "--methods hybrid_evo,hybrid_multi,hybrid_assemble,hybrid_assemble_weakest --out "
        "runs/bench_gt_assemble --merge runs/bench_gt_assemble2 runs/bench_gt_assemble3 "
        "runs/bench_gt_assemble4 --summary-only --summary tools/studies/results/rewiring_gt.json` "
        "and `python tools/bench.py gt-report`. The "
        "rows share today's hybrid search and one longer evolution than the "
        f"equal-compute rows above (`{' '.join(s['meta'].get('long_evolution', []))}`); they "
        "differ only in how children are rewired. Found cells are trained with the "
        "ground-truth recipe and placed in the table, as above. Summary: "
        "[rewiring_gt.json](rewiring_gt.json).\n",
        *_method_rows(s),
        "",
        *(
            f"- {t['method']} better than {t['against']}: one-sided exact permutation test "
            f"over seeds, p = {_fmt(t['p'], '.3f')}"
            for t in s.get("tests", [])
        ),
    ]
    for method, m in s.get("diagnostics", {}).items():
        if not m:
            continue
        rows += [
            "",
            f"| learned connection weights ({method}) | value |",
            "| --- | --- |",
            f"| candidates with weights | {m['candidates']} |",
            f"| SD of one candidate's weights, mean over candidates | {m['weight_sd_mean']:.3f} |",
            f"| range of all weights | {m['weight_min']:.3f} - {m['weight_max']:.3f} |",
            f"| rewires and drops that removed the parent's weakest connection | "
            f"{m['removed_weakest']} of {m['removals']} (uniform draws would give "
            f"{m['removed_weakest_uniform']:.1f}) |",
        ]
    if reading:
        rows += ["", reading]
    return [*rows, ""]


#: Sections whose figures come from commands run by hand (their text gives them).
HAND_WRITTEN = ("two_streams.md", "front/section.md")  # front: tools/bench.py front


def _with_reading(section: Any, path: Path) -> Any:
    """``section`` with the hand-written reading in ``path`` (if any) after its numbers."""
    text = path.read_text().strip() if path.is_file() else ""
    return lambda s: section(s, text)


def schedule_section(s: dict[str, Any], reading: str = "") -> list[str]:
    """SDAS schedules against DARTS: total search time, per-epoch times (schedule_bench.py)."""
    rows = [
        "## SDAS schedule: search time against DARTS\n",
        "Command: `python tools/bench.py schedule --repeats 3`, then `python tools/bench.py "
        f"gt-report`. The default recipe's schedule ({s['epochs']} epochs) at "
        f"{s['steps_per_epoch']} steps per epoch on `{' '.join(s['space'])}`, differentiable "
        "stage only, each run its own process, repeats interleaved; each variant's fastest "
        "repeat. Search s = the sum of the per-epoch times the search logs (training, "
        "architecture steps, fixing and its perturbation measurements, validation). Raw: "
        "[schedule.json](schedule.json).\n",
        "| variant | overrides | search s | x DARTS | all repeats s | s per epoch |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in s["rows"].items():
        ratio = "-" if r["x_darts"] is None else f"**{r['x_darts']:.2f}**"
        rows.append(
            f"| {name} | `{' '.join(r['overrides']) or '(recipe as shipped)'}` | "
            f"{r['search_s']:.1f} | {ratio} | {', '.join(f'{x:.1f}' for x in r['repeats_s'])} "
            f"| {' '.join(f'{x:.2f}' for x in r['epoch_s'])} |"
        )
    if reading:
        rows += ["", reading]
    return [*rows, ""]


def _latency_model_section(doc: dict) -> list[str]:
    from studies.latency_model import latency_model_section

    return latency_model_section(doc)


def signal_sections(dst: Path) -> list[str]:
    """The signal sections, from the JSON files in ``dst`` that exist."""
    lines: list[str] = []
    parts = (
        (
            "groundtruth_summary.json",
            _with_reading(groundtruth_section, dst / "groundtruth_reading.md"),
        ),
        ("scorers_summary.json", scorers_section),
        ("quality_gt.json", _with_reading(quality_section, dst / "quality_reading.md")),
        ("rewiring_gt.json", _with_reading(rewiring_section, dst / "rewiring_reading.md")),
        ("schedule.json", _with_reading(schedule_section, dst / "schedule_reading.md")),
        ("latency_model.json", _latency_model_section),
        ("patchmix_summary.json", _with_reading(patchmix_section, dst / "patchmix_reading.md")),
    )
    for name, section in parts:
        if (dst / name).is_file():
            lines += section(json.loads((dst / name).read_text()))
    for name in HAND_WRITTEN:  # sections measured by hand, kept as written
        if (dst / name).is_file():
            lines += [(dst / name).read_text().strip(), ""]
    return lines
