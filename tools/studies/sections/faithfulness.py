"""Section 4: Kendall tau of each proxy's accuracy against the trained (full-recipe) test
accuracy, over the genotypes the ``train`` section trained."""

from __future__ import annotations

import time

from studies.harness import Results, compose, loadavg
from studies.markdown import ReportInput, fmt, table


def _proxy_config(run, m: dict, pover: dict):
    """The run's proxy at this benchmark proxy's stages and width, without inheritance."""
    from dataclasses import replace

    return replace(
        run.evolution.proxy,
        stage_clips=tuple(pover["stage_clips"]),
        width_scale=pover["width_scale"],
        val_clips=m["proxy_val_clips"],
        batch_size=min(16, m["proxy_clips"]),
        inherit=False,
    )


def _score(trained: list[tuple[str, dict]], pcfg, splits) -> tuple[list, list, list, float]:
    """Each trained genotype's proxy accuracy (no inheritance, seed 0), with its test top-1."""
    from hybridnas.search.scorers.proxy import build_proxy, load_proxy_data, train_stage
    from hybridnas.space.genotype import Genotype

    data = load_proxy_data(*splits, pcfg, 0)
    start = time.perf_counter()
    proxy_acc, full_acc, names = [], [], []
    for k, v in trained:
        t = build_proxy(Genotype.load(v["genotype"]), pcfg, 0)
        for _ in pcfg.stage_clips:
            acc = train_stage(t, data, pcfg)
        proxy_acc.append(acc)
        full_acc.append(v["test_top1"])
        names.append(k)
    return proxy_acc, full_acc, names, time.perf_counter() - start


def run(R: Results, m: dict) -> None:
    from scipy.stats import kendalltau

    from hybridnas.data import build_dataset

    trained = [
        (k, v)
        for k, v in R.items.items()
        if v.get("section") == "train" and not v.get("baseline") and "test_top1" in v
    ]
    if len(trained) < 3:
        print("[bench] faithfulness: fewer than 3 trained genotypes, skipped", flush=True)
        return
    from hybridnas.config import SearchRun

    run = SearchRun.from_cfg(compose("search", [*m["space"]]))
    splits = [build_dataset(run.data.dataset, s) for s in ("train", "search_val")]
    for pname, pover in m["faith_proxies"].items():
        key = f"faith_{pname}"
        if R.items.get(key, {}).get("n") == len(trained):
            continue
        proxy_acc, full_acc, names, seconds = _score(trained, _proxy_config(run, m, pover), splits)
        tau, p = kendalltau(proxy_acc, full_acc)
        R.put(
            key,
            {
                "section": "faithfulness",
                "proxy": pname,
                **pover,
                "n": len(trained),
                "tau": None if tau != tau else round(float(tau), 3),
                "p_value": None if p != p else round(float(p), 3),
                "proxy_acc": proxy_acc,
                "full_acc": full_acc,
                "runs": names,
                "seconds": round(seconds, 1),
                "load_after": loadavg(),
            },
        )
        print(f"[bench] faithfulness {pname}: tau {tau:.3f}", flush=True)


def report(r: ReportInput) -> list[str]:
    L = ["## 4. Proxy faithfulness\n"]
    fa = r.section("faithfulness", ok=False)
    if not fa:
        return [*L, "Not measured in this run.\n"]
    L.append(
        f"Kendall's tau between each proxy's accuracy (search-val subset, "
        f"{r.cfg.get('proxy_val_clips')} clips, scored as the evolution scores) and the "
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
            fmt(f["tau"], 3),
            fmt(f["p_value"], 3),
            fmt(f["seconds"], 0),
        ]
        for f in fa
    ]
    head = ["proxy", "stage clips", "width scale", "n", "Kendall tau", "p", "seconds"]
    L.append(table(head, rows))
    L.append(
        "\nMade by the `faithfulness` section of tools/bench.py (in-process, "
        "`hybridnas.search.scorers.proxy.build_proxy` + `train_stage`, scipy `kendalltau`).\n"
    )
    return L
