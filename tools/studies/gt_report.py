"""Figures and statistics of the ground-truth table (its section of BENCHMARKS.md).

write_gt_report(GroundTruth.load(), Path("tools/studies/results"))
  -> gt_accuracy_hist.png, gt_accuracy_vs_flops.png, groundtruth_summary.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from hybridnas.groundtruth.table import GroundTruth, percentile_of


def op_counts(genotype: dict[str, Any], cell: str) -> dict[str, int]:
    """How many edges of ``cell`` ("normal" / "reduce") use each op."""
    counts: dict[str, int] = {}
    for _, _, op in genotype["cells"][cell]["edges"]:
        counts[op] = counts.get(op, 0) + 1
    return counts


def op_correlations(gt: GroundTruth) -> list[dict[str, Any]]:
    """Spearman rho between an op's edge count in a cell type and test accuracy, per (cell, op),
    over all architectures, strongest first."""
    recs = gt.archs()
    acc = np.array([r.test_acc for r in recs])
    rows = []
    for cell in ("normal", "reduce"):
        ops = sorted({op for r in recs for op in op_counts(r.genotype, cell)})
        for op in ops:
            x = np.array([op_counts(r.genotype, cell).get(op, 0) for r in recs])
            rho, p = stats.spearmanr(x, acc)
            rows.append({"cell": cell, "op": op, "rho": float(rho), "p": float(p)})
    return sorted(rows, key=lambda r: -abs(r["rho"]))


def mean_truth_figures(gt: GroundTruth) -> dict[str, float]:
    """How much the mean over an architecture's seeds helps: the SD of that mean due to seeds
    (seed SD / sqrt(seeds)), the spread ratio against it, and the Spearman-Brown reliability of
    the mean (its expected correlation with a re-run of the same number of seeds)."""
    a, b = gt.pairs()
    seeds = float(np.mean([len(r.seed_accs) for r in gt.archs()]))
    r = float(np.corrcoef(a, b)[0, 1]) if len(a) > 2 else float("nan")
    mean_seed_sd = gt.seed_sd() / np.sqrt(seeds)
    mean_arch_sd = GroundTruth(gt.entries, truth="mean").arch_sd()
    return {
        "seeds_per_arch": seeds,
        "pair_pearson": r,
        "mean_arch_sd": mean_arch_sd,
        "mean_seed_sd": float(mean_seed_sd),
        "mean_spread_ratio": mean_arch_sd / max(float(mean_seed_sd), 1e-9),
        "mean_reliability": seeds * r / (1 + (seeds - 1) * r),
    }


def selection_ceiling(gt: GroundTruth, top: float = 0.1) -> dict[str, float]:
    """What picking the best architectures can show under the recipe's seed noise: the archs in
    the top ``top`` share by seed 0, placed by their seed-1 accuracy among all seed-1
    accuracies (percentile; 50 = no better than a random draw). A search that knew each
    architecture's seed-0 result exactly would score this on a fresh training."""
    a, b = gt.pairs()
    if len(a) < 10:
        return {}
    chosen = b[a >= np.quantile(a, 1 - top)]
    pct = [percentile_of(b, x) for x in chosen]
    return {"share": top, "archs": len(chosen), "seed1_percentile_mean": float(np.mean(pct))}


def summary(gt: GroundTruth) -> dict[str, Any]:
    """The numbers the report quotes: sizes, spreads, noise ceiling, trivial-proxy taus."""
    acc = gt.accuracies()
    a, b = gt.pairs()
    recs = gt.archs()
    single = GroundTruth(gt.entries, truth="seed0")  # the spread the recipe has per training
    flops = {r.arch: float(r.entry["flops"]) for r in recs}
    params = {r.arch: float(r.entry["params"]) for r in recs}
    return {
        "recipe": gt.entries[0]["recipe"],
        "entries": len(gt.entries),
        "archs": len(gt),
        "halves": {h: len(gt.archs(h)) for h in ("calibration", "evaluation")},
        "pairs": len(a),
        "pairs_within_0.05": int(np.sum(np.abs(a - b) <= 0.05)),
        "pairs_over_0.15": int(np.sum(np.abs(a - b) > 0.15)),
        "pair_max_diff": float(np.max(np.abs(a - b))) if len(a) else float("nan"),
        "test_acc": {
            "mean": float(acc.mean()),
            "min": float(acc.min()),
            "max": float(acc.max()),
            "quartiles": [float(q) for q in np.percentile(acc, [25, 50, 75])],
        },
        "truth": gt.truth,
        "arch_sd": single.arch_sd(),
        "seed_sd": gt.seed_sd(),
        "spread_ratio": single.arch_sd() / max(gt.seed_sd(), 1e-9),
        **mean_truth_figures(gt),
        "noise_ceiling": gt.noise_ceiling().to_dict(),
        "selection_ceiling": selection_ceiling(gt),
        "train_seconds_median": float(np.median([e["train_seconds"] for e in gt.entries])),
        "flops_tau_evaluation": gt.tau(flops).to_dict(),
        "params_tau_evaluation": gt.tau(params).to_dict(),
        "op_correlations": op_correlations(gt),
    }


def write_gt_report(gt: GroundTruth, out: Path) -> dict[str, Any]:
    """Write the two figures and groundtruth_summary.json into ``out``; return the summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    s = summary(gt)
    acc = gt.accuracies()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.hist(acc, bins=20, color="tab:blue", alpha=0.8)
    ax.axvline(0.1, color="grey", ls=":", label="chance")
    ax.set_xlabel(f"test top-1 ({gt.truth})")
    ax.set_ylabel("architectures")
    ax.set_title(f"{len(gt)} uniformly drawn architectures")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "gt_accuracy_hist.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for half, colour in (("calibration", "tab:orange"), ("evaluation", "tab:blue")):
        recs = gt.archs(half)
        ax.scatter(
            [r.entry["flops"] / 1e6 for r in recs],
            [r.test_acc for r in recs],
            s=10,
            color=colour,
            label=half,
        )
    ax.set_xlabel("MFLOPs per clip")
    ax.set_ylabel(f"test top-1 ({gt.truth})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "gt_accuracy_vs_flops.png", dpi=120)
    plt.close(fig)
    (out / "groundtruth_summary.json").write_text(json.dumps(s, indent=2))
    scores = out / "scores.json"
    if scores.is_file():
        summary_path = out / "scorers_summary.json"
        summary_path.write_text(json.dumps(scorer_summary(gt, scores), indent=2))
    return s


def scorer_summary(gt: GroundTruth, scores_path: Path) -> dict[str, Any]:
    """Rank agreement rows of every scorer in ``scores_path`` plus the two calibration-chosen
    mean-rank ensembles (one of non-trivial scorers, one that may include params / flops),
    and the noise ceiling."""
    from studies.scorer_bench import (
        agreement_rows,
        best_of_n,
        choose_ensemble,
        ensemble_scores,
    )

    doc = json.loads(scores_path.read_text())
    scores, cost = doc["scores"], doc["ms"]
    chosen = {}  # without and with the trivial baselines as members
    for key, baselines in (("ensemble", False), ("ensemble_with_baselines", True)):
        members, calib_tau = choose_ensemble(doc["scores"], gt, baselines=baselines)
        chosen[key] = {"members": members, "calibration_tau": calib_tau}
        if members:
            name = "ensemble:" + "+".join(members)
            scores = {**scores, name: ensemble_scores(members, scores)}
            cost = {**cost, name: sum(cost[m] for m in members)}
    oracle = {r.arch: r.test_acc for r in gt.archs()}
    selection = {
        str(n): {
            "random": best_of_n(None, gt, n),
            "oracle": best_of_n(oracle, gt, n),
            **{name: best_of_n(s, gt, n) for name, s in scores.items()},
        }
        for n in (10, 30)
    }
    return {
        "noise_ceiling": gt.noise_ceiling().to_dict(),
        "selection": selection,
        **chosen,
        "rows": agreement_rows(scores, cost, gt),
        "reading": (out_reading := (scores_path.parent / "scorers_reading.md")).is_file()
        and out_reading.read_text().strip()
        or "",
    }
