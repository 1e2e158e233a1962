"""Smoke test of the benchmark machinery (tools/studies: harness, modes, sections, report):
one micro measurement in a child process, the results file, the equal-compute budgets, and the
report writer on a small synthetic results.json. No search or training runs here (< 60 s)."""

import json
import sys
from pathlib import Path

import pytest
from helpers import tool
from studies import harness
from studies.modes import MODES, budgets


def test_run_child_measures_its_own_peak_memory(tmp_path):
    big = harness.run_child(
        [sys.executable, "-c", "b = bytearray(120_000_000); b[::4096] = b'x' * len(b[::4096])"],
        tmp_path / "big.log",
    )
    small = harness.run_child([sys.executable, "-c", "pass"], tmp_path / "small.log")
    assert big["rc"] == 0 and small["rc"] == 0
    assert big["maxrss_mb"] > 110  # the child's own ru_maxrss, not this process's
    assert small["maxrss_mb"] < big["maxrss_mb"] - 90
    assert big["wall_s"] > 0 and "python" in big["command"]


def test_results_survive_and_resume(tmp_path):
    r = harness.Results(tmp_path, "quick")
    r.put("a", {"rc": 0, "x": 1})
    again = harness.Results(tmp_path)
    assert again.items["a"]["x"] == 1 and again.doc["meta"]["mode"] == "quick"
    assert not (tmp_path / "results.tmp").exists()


def test_equal_compute_budgets():
    for mode in MODES.values():
        b = budgets(mode)
        assert b["hybrid_clips"] == b["clips"]  # hybrid: half supernet, half evolution
        assert b["random_candidates"] * mode["proxy_clips"] == b["clips"]
        assert b["evo_clips"] <= b["clips"]


def _synthetic(tmp_path: Path) -> Path:
    items = {"rss_floor": {"rc": 0, "maxrss_mb": 300.0, "cpu_s": 4.0}}
    for i, (name, t) in enumerate(
        {"darts": 40.0, "pcdarts": 30.0, "sdas": 18.0, "sdas_pc": 12.0}.items()
    ):
        items[f"cost_{name}"] = {
            "rc": 0,
            "section": "cost",
            "method": name,
            "search_s": t,
            "wall_s": t + 5,
            "cpu_s": 2 * t,
            "epoch_s": [t / 4] * 4,
            "maxrss_mb": 900.0 - 50 * i,
            "val_acc": 0.2,
            "command": f"/x/python tools/search.py recipe={name} out_dir=/b/runs/cost_{name}",
        }
    for t in (4, 8):
        items[f"frames_sdas_t{t}"] = {
            **items["cost_sdas"],
            "section": "frames",
            "frames": t,
            "search_s": 18.0 * t / 4,
        }
    for n, mth in enumerate(["hybrid", "sdas", "darts", "random", "evolution", "x3d_xs"]):
        for seed in (0, 1):
            items[f"t_{mth}_s{seed}"] = {
                "rc": 0,
                "section": "train",
                "method": mth,
                "seed": seed,
                "baseline": mth == "x3d_xs",
                "test_top1": 0.1 * n + 0.01 * seed,
                "params": 1000 * (n + 1),
                "flops": 10**6 * (n + 1),
                "cpu_ms_per_clip": 1.0 + n,
                "wall_s": 10.0,
                "command": "/x/python tools/train.py out_dir=/b/runs/t",
                "genotype": "g.json",
            }
    items["faith_p1"] = {
        "section": "faithfulness",
        "proxy": "p1",
        "stage_clips": [32],
        "width_scale": 0.5,
        "n": 10,
        "tau": 0.4,
        "p_value": 0.1,
        "seconds": 3,
    }
    items["evo_ranks_1"] = {
        "section": "evo_ranks",
        "ranks": 1,
        "mean_cycle_s": 4.0,
        "rc": 0,
        "command": "python -m torch.distributed.run tools/bench_evolution.py",
    }
    items["evo_ranks_2"] = {**items["evo_ranks_1"], "ranks": 2, "mean_cycle_s": 2.5}
    meta = {
        "mode": "quick",
        "started": "t0",
        "finished": "t1",
        "last_run_s": 60.0,
        "load_at_start": [1.0, 1.0, 1.0],
        "load_at_end": [1.0, 1.0, 1.0],
        "machine": {"cpus": 2, "torch": "x", "gpu": None},
        "config": MODES["quick"],
        "budgets": budgets(MODES["quick"]),
    }
    src = tmp_path / "bench"
    src.mkdir()
    (src / "results.json").write_text(json.dumps({"meta": meta, "items": items}))
    return src


def test_report_writer(tmp_path):
    from studies.report import write_report

    src = _synthetic(tmp_path)
    dst = tmp_path / "report"
    md = write_report(src, dst).read_text()
    assert "SDAS / DARTS total search time: 0.45" in md
    assert "meets the issue-4 aim" in md
    assert "Kendall tau" in md and "Not measured" in md  # GPU section says so without CUDA
    assert "2 ranks / 1 rank cycle time: **0.62**" in md
    for png in ("epoch_times.png", "cost_vs_frames.png", "pareto.png"):
        assert (dst / png).stat().st_size > 1000
    assert json.loads((dst / "results.json").read_text())["meta"]["mode"] == "quick"
    # re-running from the same results gives the same report
    assert write_report(src, dst).read_text() == md


def test_bench_cli_lists_the_sections_and_keeps_the_ground_truth_commands(capsys):
    with pytest.raises(SystemExit) as exit_:
        tool("bench").main(["run", "--help"])
    assert exit_.value.code == 0
    assert "cost,cost_long,quality,train,faithfulness,evo_ranks" in capsys.readouterr().out
    from studies.cli import COMMANDS

    assert {"groundtruth", "regret", "gt-report"} <= set(COMMANDS)


@pytest.mark.parametrize(("name", "usage"), [("nse", "{run,summary}"), ("patchmix", "--policy")])
def test_study_scripts_are_bench_subcommands(capsys, name, usage):
    with pytest.raises(SystemExit) as exit_:
        tool("bench").main([name, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert f"tools/bench.py {name}" in out and usage in out
