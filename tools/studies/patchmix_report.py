"""BENCHMARKS' "PatchMix" section from patchmix_summary.json (tools/studies/patchmix_bench.py) and
the searched policy (patchmix_policy.yaml, tools/patchmix_search.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

METHOD_ORDER = (
    "none",
    "mixup",
    "cutmix",
    "patchmix_searched",
    "patchmix_random",
    "patchmix_searched_no_patch_loss",
)
SET_LABEL = {
    "small": "small: 500 clips, 6 epochs",
    "full": "full: 1500 clips, 3 epochs",
    "small_long": "small, 18 epochs (extra)",
}


def _cell(m: dict[str, Any] | None) -> tuple[str, str]:
    if not m:
        return "not run", "-"
    seeds = ", ".join(f"{a:.3f}" for a in m["per_seed"])
    return f"**{m['mean']:.3f} +- {m['sd']:.3f}** (n={m['n']})", seeds


def results_table(s: dict[str, Any]) -> list[str]:
    sets = [k for k in SET_LABEL if k in s["results"]]
    head = "| method | " + " | ".join(f"{SET_LABEL[k]} | per seed" for k in sets) + " |"
    rows = [head, "|" + " --- |" * (1 + 2 * len(sets))]
    for method in METHOD_ORDER:
        cells = [c for k in sets for c in _cell(s["results"][k].get(method))]
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return rows


def policy_lines(p: dict[str, Any]) -> list[str]:
    pol, cost = p["policy"], p["search"]
    grid = "x".join(str(g) for g in pol["grid"])
    lines = [
        f"Chosen policy: grid {grid} (g_t x g_h x g_w), pattern `{pol['pattern']}`, pairing "
        f"`{pol['pairing']}` (fitness {p['fitness']:.4f} = minus the mean KL(mixed label || "
        f"fixed model), on {cost['clips']} held-out search_val clips). Cost: "
        f"{cost['evaluations']} policies evaluated in **{cost['search_s']:.0f} s** on one thread "
        f"(population {cost['population']}, {cost['generations']} x population children), "
        f"plus the fixed model ({cost['checkpoint']}, held-out top-1 "
        f"{cost['fixed_model_heldout_top1']:.3f}), reused from the small-set `none` seed-0 "
        "run: no extra "
        "training. Best and worst policies:\n",
        "| rank | grid | pattern | pairing | fitness |",
        "| --- | --- | --- | --- | --- |",
    ]
    ranked = p["ranked"]
    shown = list(enumerate(ranked, 1))
    shown = shown[:5] + shown[-3:] if len(shown) > 8 else shown
    for i, r in shown:
        g = "x".join(str(x) for x in r["grid"])
        lines.append(f"| {i} | {g} | {r['pattern']} | {r['pairing']} | {r['fitness']:.4f} |")
    return lines


def patchmix_section(s: dict[str, Any], reading: str = "") -> list[str]:
    """The comparison table, the policy search and the hand-written reading."""
    lines = [
        "## PatchMix\n",
        "The shipped found net (`genotype=builtin`, recipe `train_builtin`: 3 cells, strided "
        f"stem) trained with each mixing method, seeds {s['seeds']}; test top-1 of the **last** "
        "epoch on the 500 test clips, mean +- SD over seeds. Common recipe (declared, not the "
        f"shipped 12-epoch one, to fit 30 runs on a shared 2-core CPU): `{s['common']}`; "
        "methods: none; `train.mixup=0.8`; `train.cutmix=1.0`; `train.mix=patchmix "
        "train.patchmix.policy=tools/studies/results/patchmix_policy.yaml` (searched); "
        "`train.mix=patchmix` (random grid: 2x2x2 tubes, a random half from the partner, "
        "random pairs); both PatchMix rows with `train.patchmix.patch_loss=0.5`. Command: "
        "`python tools/bench.py patchmix run --policy tools/studies/results/patchmix_policy.yaml`"
        " (one run at a time, resumable), raw rows with each run's command in "
        "[patchmix_runs.jsonl](patchmix_runs.jsonl).\n",
        *results_table(s),
        "",
    ]
    if s.get("policy"):
        lines += policy_lines(s["policy"]) + [""]
    if reading:
        lines += [reading, ""]
    return lines


def load_policy_record(path: Path) -> dict[str, Any] | None:
    from omegaconf import OmegaConf

    if not path.is_file():
        return None
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
