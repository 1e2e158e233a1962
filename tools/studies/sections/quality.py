"""Section 2: the five search methods at equal compute (equal weight-training clips), several
seeds; the found genotypes are trained and scored by the ``train`` section."""

from __future__ import annotations

import sys

from studies.harness import Results, compose, measure_search, run_child
from studies.markdown import ReportInput, fmt, mean_sd, table
from studies.modes import QUALITY, budgets, differentiable_overrides, evo_overrides


def _hybrid(m: dict, b: dict, seed: int) -> list[str]:
    supernet = differentiable_overrides(m, b["hybrid_epochs"])
    return [
        *[o for o in supernet if o != "stage=differentiable"],
        "stage=hybrid",
        *evo_overrides(m, m["hybrid_population"], b["hybrid_cycles"]),
        f"seed={seed}",
    ]


def _evolution_alone(R: Results, m: dict, b: dict, seed: int) -> list[str]:
    """Evolution alone: no supernet, starts from a plain chain genotype, uniform guidance."""
    chain = R.out / "runs" / f"chain_s{seed}.json"
    if not chain.is_file():
        from hybridnas.config import SearchRun
        from hybridnas.search.evolution.loop import chain_genotype

        chain.parent.mkdir(parents=True, exist_ok=True)
        chain_genotype(SearchRun.from_cfg(compose("search", [*m["space"]]))).save(chain)
    return [
        *m["space"],
        "stage=evolution",
        f"genotype={chain}",
        "evolution.proxy.inherit=false",
        *evo_overrides(m, m["evo_population"], b["evo_cycles"]),
        f"seed={seed}",
    ]


def _random(R: Results, m: dict, b: dict, seed: int, common: dict) -> None:
    """Random search (hybridnas.search.evolution.random_search) through
    ``tools/bench.py random-search``."""
    key = f"q_random_s{seed}"
    if R.done(key):
        return
    run_dir = R.out / "runs" / key
    ov = [
        *m["space"],
        *evo_overrides(m, 1, 0),
        "evolution.proxy.inherit=false",
        f"seed={seed}",
        f"out_dir={run_dir}",
    ]
    n = b["random_candidates"]
    print(f"[bench] {key}: random search, {n} candidates", flush=True)
    cmd = [sys.executable, "tools/bench.py", "random-search", "--n", str(n), "--", *ov]
    rec = run_child(cmd, R.out / "logs" / f"{key}.log", R.threads)
    gpath = run_dir / "genotype.json"
    rec |= {
        **common,
        "method": "random",
        "kind": "search",
        "run_dir": str(run_dir),
        "genotype": str(gpath) if gpath.is_file() else None,
    }
    R.put(key, rec)


def run(R: Results, m: dict) -> None:
    b = budgets(m)
    R.doc["meta"]["budgets"] = b
    R.save()
    for seed in m["seeds"]:
        common = {"section": "quality", "seed": seed}
        if seed == 0 and "cost_sdas" in R.items:  # the cost runs are the seed-0 searches
            R.items.setdefault("q_sdas_s0", {**R.items["cost_sdas"], **common, "method": "sdas"})
            R.items.setdefault("q_darts_s0", {**R.items["cost_darts"], **common, "method": "darts"})
            R.save()
        for method, recipe in (("sdas", "sdas_video"), ("darts", "darts_video")):
            overrides = [*differentiable_overrides(m), f"seed={seed}"]
            measure_search(
                R, f"q_{method}_s{seed}", recipe, overrides, {**common, "method": method}
            )
        info = {**common, "method": "hybrid"}
        measure_search(R, f"q_hybrid_s{seed}", "sdas_video", _hybrid(m, b, seed), info)
        overrides = _evolution_alone(R, m, b, seed)
        info = {**common, "method": "evolution"}
        measure_search(R, f"q_evolution_s{seed}", "sdas_video", overrides, info)
        _random(R, m, b, seed, common)


def _intro(cfg: dict, b: dict) -> list[str]:
    recipe = " ".join(cfg.get("train", [])) or (
        "(as shipped: 4 epochs over the whole training split, SGD + cosine, EMA)"
    )
    return [
        f"**Equal compute = equal number of weight-training clips** (forward + backward) per "
        f"search, {b.get('clips')} clips here, not equal wall clock (wall clock is recorded, but "
        f"on a shared box it measures the neighbours as much as the method). Supernet clips are "
        f"counted at batch {b.get('batch')}; architecture steps (DARTS/SDAS alpha updates on "
        f"search-val batches) and proxy scoring (forward only) are not counted, which favours "
        f"the differentiable methods. Budgets: SDAS alone and DARTS: {cfg.get('epochs')} "
        f"epochs x {cfg.get('steps_per_epoch')} steps; hybrid: SDAS for {b.get('hybrid_epochs')} "
        f"epochs, then evolution with {cfg.get('hybrid_population')} seeds + "
        f"{b.get('hybrid_cycles')} cycles x {cfg.get('children')} children, "
        f"{cfg.get('proxy_clips')} proxy clips each ({b.get('hybrid_clips')} clips in all); "
        f"random search: {b.get('random_candidates')} uniform genotypes x "
        f"{cfg.get('proxy_clips')} proxy clips, best proxy accuracy wins; evolution alone: "
        f"{cfg.get('evo_population')} seeds + {b.get('evo_cycles')} cycles x "
        f"{cfg.get('children')} children from a plain chain genotype, uniform guidance, no "
        f"supernet and no weight inheritance ({b.get('evo_clips')} clips). Proxy nets run at "
        f"half width (see recipes/search.yaml `evolution.proxy`), so a proxy clip costs less "
        f"than a supernet clip.\n",
        f"Every found genotype is then trained with the same short recipe "
        f"(`recipe=train_builtin {recipe}` on the same data settings) and "
        f"scored once on the **test split** (500 clips) with the EMA weights of the **last** "
        f"epoch (not the best epoch: on the built-in data train.py validates on the test split, "
        f"so picking the best epoch would select on test). Seeds: {cfg.get('seeds')}.\n",
    ]


HEAD = [
    "method",
    "test top-1 mean ± sd",
    "per seed",
    "n",
    "search wall s",
    "search peak RSS MB",
    "params (k)",
    "MFLOPs",
    "CPU ms/clip",
]


def _row(r: ReportInput, mth: str, label: str) -> list[str]:
    ts = [v for v in r.section("train", ok=False) if v.get("method") == mth]
    ts = [v for v in ts if not v.get("baseline")]
    ss = [v for k, v in r.items.items() if k.startswith(f"q_{mth}_s") and v.get("rc") == 0]
    accs = [t.get("test_top1") for t in ts]
    m, sd = mean_sd(accs)
    sw, _ = mean_sd([s.get("wall_s") for s in ss])
    sm, _ = mean_sd([s.get("maxrss_mb") for s in ss])
    pm, _ = mean_sd([t.get("params") for t in ts])
    fm, _ = mean_sd([t.get("flops") for t in ts])
    lm, _ = mean_sd([t.get("cpu_ms_per_clip") for t in ts])
    return [
        label,
        f"{fmt(m, 3)} ± {fmt(sd, 3)}" if m is not None else "not measured",
        ", ".join(f"{fmt(a, 3)}" for a in accs) or "-",
        str(len(ts)),
        fmt(sw, 0),
        fmt(sm, 0),
        fmt(pm / 1e3 if pm else None, 1),
        fmt(fm / 1e6 if fm else None, 1),
        fmt(lm, 2),
    ]


def report(r: ReportInput) -> list[str]:
    L = ["## 2. Search quality at equal compute\n", *_intro(r.cfg, r.meta.get("budgets", {}))]
    L.append(table(HEAD, [_row(r, mth, label) for mth, label in QUALITY.items()]))
    return L
