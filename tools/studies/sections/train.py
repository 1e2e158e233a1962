"""Section 2 (continued): every found genotype and every hand-designed baseline trained with
the same small recipe, then scored on the test split."""

from __future__ import annotations

from studies.harness import Results, measure_train
from studies.markdown import ReportInput, fmt, last_error, short, table
from studies.modes import BASELINES, QUALITY


def run(R: Results, m: dict) -> None:
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
        info = {"section": "train", "method": name, "seed": 0, "baseline": True}
        measure_train(R, m, f"t_{name}_s0", [f"model.name={name}"], 0, info)


def _baseline_row(label: str, t: dict | None) -> list[str]:
    if not t or "test_top1" not in t:
        why = (t or {}).get("eval_error") or (
            "not measured" if not t else "training failed: " + last_error(t)
        )
        return [label, why, "", "", "", ""]
    return [
        label,
        fmt(t["test_top1"], 3),
        fmt(t["params"] / 1e3, 1),
        fmt(t["flops"] / 1e6, 1),
        fmt(t["cpu_ms_per_clip"], 2),
        fmt(t["wall_s"], 0),
    ]


def _commands(r: ReportInput, first: dict) -> list[str]:
    def cmd(key: str) -> str:
        return short(r.items.get(key, {}).get("command", "n/a"), r.out)

    return [
        "\nCommands: training `" + short(first["command"], r.out) + "` (the genotype or "
        "`model.name=<baseline>` changes); searches: the `command` of each `q_*` row in "
        "results.json, e.g. hybrid: `"
        + cmd("q_hybrid_s0")
        + "`, evolution alone: `"
        + cmd("q_evolution_s0")
        + "`, random: `"
        + cmd("q_random_s0")
        + "`.\n",
        "Test top-1 and cost per model: `python tools/evaluate.py "
        "ckpt=<run>/checkpoints/last.pt split=test <data settings>`; params/FLOPs/ms per clip "
        "from `hybridnas.measure.counts` (`count_params`, `count_flops` = torch FlopCounter, "
        "`measure_latency` batch 1, median of torch.utils.benchmark blocks).\n",
    ]


def report(r: ReportInput) -> list[str]:
    L = ["\nHand-designed baselines, same training recipe and data, trained once (seed 0):\n"]
    rows = [_baseline_row(label, r.items.get(f"t_{n}_s0")) for n, label in BASELINES.items()]
    head = ["model", "test top-1", "params (k)", "MFLOPs", "CPU ms/clip (batch 1)", "train wall s"]
    L.append(table(head, rows))
    trained = r.section("train", ok=False)
    if trained:
        L += _commands(r, trained[0])
    return L
