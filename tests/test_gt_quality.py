"""The quality-on-ground-truth bench: method summaries and their BENCHMARKS.md section.

The searches and ground-truth trainings themselves are the bench's job (minutes each); here the
bookkeeping around them is checked on a results file with hand-made items."""

from __future__ import annotations

import json

import pytest
from studies.gt_quality import METHODS, MODE, _search, permutation_p, summarize
from studies.harness import Results
from studies.modes import budgets
from studies.signal_report import quality_section, rewiring_section

from hybridnas.groundtruth.table import GroundTruth
from hybridnas.space.genotype import CellSpec, Genotype


def _table() -> GroundTruth:
    """100 architectures with test top-1 0.005, 0.015, ..., 0.995: percentile(a) = 100 a."""
    entries = [
        {"arch": f"a{i}", "seed": 0, "split": "evaluation", "test_acc": (i + 0.5) / 100}
        for i in range(100)
    ]
    return GroundTruth(entries, truth="mean")


def _fill(R: Results) -> None:
    for seed, (pct, acc) in enumerate([(80.0, 0.70), (60.0, 0.66), (40.0, 0.62)]):
        R.put(f"q_sdas_s{seed}", {"rc": 0, "wall_s": 10.0 + seed, "method": "sdas"})
        R.put(
            f"regret_sdas_s{seed}",
            {"rc": 0, "seed": seed, "percentile": pct, "test_acc": acc, "flops": 2e6},
        )
    R.put("q_darts_s0", {"rc": 1, "wall_s": 3.0, "method": "darts", "seed": 0})


def test_summary_is_per_method_over_seeds(tmp_path):
    R = Results(tmp_path, "gt_quality")
    R.doc["meta"] |= {"config": MODE, "budgets": budgets(MODE), "gt_seeds": [0, 1]}
    _fill(R)
    s = summarize(R, _table())
    sdas = s["methods"]["sdas"]
    # placed by test accuracy in the given table, not by the percentile stored at search time
    assert sdas["percentiles"] == pytest.approx([70.0, 66.0, 62.0])
    assert sdas["percentile_mean_sd"] == pytest.approx((66.0, 4.0))
    assert sdas["search_wall_s"] == pytest.approx(11.0)
    assert sdas["mflops"] == pytest.approx(2.0)
    # a failed search is reported as failed, never as a percentile
    assert s["methods"]["darts"]["failed"] == [0]
    assert s["methods"]["darts"]["percentiles"] == []
    assert "hybrid" not in s["methods"]  # never searched: no row
    text = "\n".join(quality_section(s))
    assert "66.0 +- 4.0" in text and "failed: seeds [0]" in text


def test_every_method_has_equal_weight_training_clips():
    b = budgets(MODE)
    assert b["clips"] == MODE["epochs"] * MODE["steps_per_epoch"] * 16
    # random search and evolution alone spend about the supernet's clips on proxies
    assert b["random_candidates"] * MODE["proxy_clips"] == b["clips"]
    assert abs(b["evo_clips"] - b["clips"]) <= MODE["children"] * MODE["proxy_clips"]
    assert abs(b["hybrid_clips"] - b["clips"]) <= MODE["children"] * MODE["proxy_clips"]


def test_unknown_method_is_refused(tmp_path):
    with pytest.raises(ValueError, match="known: " + ", ".join(METHODS)):
        _search(Results(tmp_path), "bogus", 0)


def test_schedule_summary_takes_each_variants_fastest_repeat(tmp_path):
    from studies.schedule_bench import overrides, summarize

    R = Results(tmp_path, "schedule")
    for variant, times in (("darts", [10.0, 8.0]), ("sdas_default", [4.0, 3.0]), ("sdas", [6.0])):
        for r, t in enumerate(times):
            R.put(
                f"{variant}_r{r}",
                {"rc": 0, "variant": variant, "search_s": t, "epoch_s": [t], "command": "c"},
            )
    R.put("sdas_r1", {"rc": 1, "variant": "sdas", "search_s": 0.5})  # failed: never the best
    rows = summarize(R)["rows"]
    assert rows["darts"]["search_s"] == 8.0 and rows["sdas_default"]["x_darts"] == 3.0 / 8.0
    assert rows["sdas"]["search_s"] == 6.0
    assert "search.decide_at=1.0" in overrides("sdas_w3_full")


def test_rewiring_summary_counts_removals_of_the_weakest_connection(tmp_path):
    R = Results(tmp_path, "gt_quality")
    R.doc["meta"] |= {"config": MODE, "budgets": budgets(MODE), "gt_seeds": [0, 1]}
    folder = tmp_path / "runs" / "q_hybrid_assemble_s0"
    found = {"rc": 0, "wall_s": 5.0, "genotype": str(folder / "genotype.json")}
    R.put("q_hybrid_assemble_s0", found)
    R.put(
        "regret_hybrid_assemble_s0",
        {"rc": 0, "seed": 0, "percentile": 70.0, "test_acc": 0.7, "flops": 2e6},
    )
    parent = {
        "normal": [[0, 2, 0.2], [1, 2, 0.8], [0, 3, 0.6], [2, 3, 0.7]],
        "reduce": [[0, 2, 0.5], [1, 2, 0.5]],
    }
    normal = CellSpec(((0, 2, "skip"), (1, 2, "skip"), (0, 3, "skip"), (2, 3, "skip")), (2, 3))
    reduce = CellSpec(((0, 2, "skip"), (1, 2, "skip")), (2,))
    genotype = Genotype(normal=normal, reduce=reduce).to_json()
    history = [
        {"key": "p", "connections": parent, "genotype": genotype},
        # a rewire can only remove (0, 3) or (2, 3): node 2 already takes both earlier nodes
        {"key": "c1", "parent": "p", "mutation": {"kind": "rewire", "cell": "normal",
         "removed": [0, 3]}, "connections": parent, "genotype": genotype},
        # a drop can remove any of the four: (0, 2) at 0.2 was the weakest
        {"key": "c2", "parent": "p", "mutation": {"kind": "drop_input", "cell": "normal",
         "removed": [2, 3]}, "connections": parent, "genotype": genotype},
        {"key": "c3", "parent": "p", "mutation": {"kind": "swap_op", "cell": "normal"},
         "genotype": genotype},
    ]  # fmt: skip
    folder.mkdir(parents=True)
    (folder / "evolution_history.jsonl").write_text("\n".join(map(json.dumps, history)))
    s = summarize(R, _table())
    d = s["diagnostics"]["hybrid_assemble"]
    assert (d["removals"], d["removed_weakest"]) == (2, 1)
    assert d["removed_weakest_uniform"] == pytest.approx(1 / 2 + 1 / 4)
    assert d["candidates"] == 3 and d["weight_min"] == 0.2 and d["weight_max"] == 0.8
    text = "\n".join(rewiring_section(s))
    assert "1 of 2 (uniform draws would give 0.8)" in text
    assert "hybrid_assemble" in s["methods"] and "evolution.cycles=5" in text


def test_permutation_p_is_exact_and_one_sided():
    assert permutation_p([3, 4, 5], [0, 1, 2]) == pytest.approx(1 / 20)  # the one best split
    assert permutation_p([0, 1, 2], [3, 4, 5]) == 1.0
    assert permutation_p([1.0], []) is None
