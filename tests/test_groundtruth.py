"""The ground-truth table: recipe, builder (resumable), table API, and the shipped table."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from studies.build import build_table, job_order, read_done

from hybridnas.groundtruth.recipe import (
    GroundTruthRecipe,
    arch_id,
    load_clips,
    recipe_with,
    sample_uniform,
    split_of,
    train_and_score,
)
from hybridnas.groundtruth.table import TABLE_PATH, GroundTruth, spread_summary
from hybridnas.measure.rank import rank_agreement
from hybridnas.space.genotype import Genotype

TINY = GroundTruthRecipe(num_train=64, num_search_val=32, num_test=32, train_clips=64, epochs=1)


def test_uniform_sample_is_valid_distinct_and_covers_the_ops():
    r = GroundTruthRecipe()
    gs = sample_uniform(r, 40, seed=3)
    assert len({g.key() for g in gs}) == 40
    used = {op for g in gs for c in (g.normal, g.reduce) for _, _, op in c.edges}
    assert used == set(r.op_names) - {"none"}
    for g in gs:
        for cell in (g.normal, g.reduce):
            for j in range(2, 2 + r.steps):
                sources = [i for i, _ in cell.inputs_of(j)]
                assert len(sources) == 2 and len(set(sources)) == 2
        Genotype.from_dict(json.loads(g.to_json()))  # validates


def test_split_is_a_stable_function_of_the_architecture():
    gs = sample_uniform(GroundTruthRecipe(), 60, seed=0)
    halves = [split_of(g) for g in gs]
    assert set(halves) == {"calibration", "evaluation"}
    assert 15 < halves.count("evaluation") < 45
    assert [split_of(Genotype.from_dict(g.to_dict())) for g in gs] == halves
    other_skeleton = recipe_with(["stage_widths=[8,16,32]", "stem_kernel=[1,3,3]", "size=32"])
    assert [split_of(other_skeleton.conform(g)) for g in gs] == halves


def test_the_shipped_table_keeps_its_halves():
    gt = GroundTruth.load()
    for r in gt.archs():
        assert split_of(Genotype.from_dict(r.genotype)) == r.split, r.arch


def test_job_order_holds_every_arch_and_every_pair_once():
    jobs = job_order(150, 30)
    assert sorted(i for i, s in jobs if s == 0) == list(range(150))
    assert sorted(i for i, s in jobs if s == 1) == list(range(30))
    # pairs are spread through the list, not all at the end
    first_pairs = [k for k, (_, s) in enumerate(jobs) if s == 1][:3]
    assert first_pairs == [5, 11, 17]


def test_recipe_hash_changes_with_any_field():
    assert GroundTruthRecipe().hash() != GroundTruthRecipe(epochs=4).hash()
    assert GroundTruthRecipe().hash() == GroundTruthRecipe().hash()


def test_a_field_added_later_keeps_the_shipped_hash_until_it_is_changed():
    assert GroundTruthRecipe().hash() == "d045ed0e9c6e"  # the shipped table's recipe
    spatial = recipe_with(["stem_kernel=[1,3,3]"])
    assert spatial.hash() != GroundTruthRecipe().hash()
    assert spatial.template().macro.stem_kernel == (1, 3, 3)
    assert recipe_with(["task=which_moves", "bn_stats_clips=0"]).hash() == "d045ed0e9c6e"
    assert recipe_with(["task=motion_code"]).hash() != GroundTruthRecipe().hash()


def test_rank_agreement_and_its_interval():
    x = np.arange(30, dtype=float)
    perfect = rank_agreement(x, x)
    assert perfect.tau == pytest.approx(1.0) and perfect.tau_ci[0] == pytest.approx(1.0)
    assert rank_agreement(x, -x).tau == pytest.approx(-1.0)
    noisy = rank_agreement(x, x + np.random.default_rng(0).normal(0, 10, 30))
    assert noisy.tau_ci[0] < noisy.tau < noisy.tau_ci[1]
    assert math.isnan(rank_agreement(np.ones(30), x).tau)  # uncomputable, never 0


def test_train_and_score_records_everything_and_repeats_exactly():
    torch.set_num_threads(1)
    g = sample_uniform(TINY, 1, seed=0)[0]
    clips = load_clips(TINY)
    a = train_and_score(g, TINY, 0, clips)
    b = train_and_score(g, TINY, 0, clips)
    for key in ("test_acc", "val_acc", "params", "flops", "ms_per_clip", "train_seconds"):
        assert key in a
    assert a["recipe"] == TINY.hash() and a["arch"] == arch_id(TINY.conform(g))
    assert (a["test_acc"], a["val_acc"], a["train_loss"]) == (
        b["test_acc"],
        b["val_acc"],
        b["train_loss"],
    )
    assert a["params"] > 0 and a["flops"] > 0


def test_build_appends_and_resumes(tmp_path):
    out = tmp_path / "gt.jsonl"
    build_table(out, n_archs=2, n_pairs=1, workers=1, recipe=TINY)
    lines = out.read_text().splitlines()
    assert len(lines) == 3
    assert read_done(out, TINY.hash()) == {
        (json.loads(x)["arch"], json.loads(x)["seed"]) for x in lines
    }
    build_table(out, n_archs=2, n_pairs=1, workers=1, recipe=TINY)  # nothing left to do
    assert out.read_text().splitlines() == lines
    gt = GroundTruth.load(out)
    assert len(gt) == 2 and len(gt.pairs()[0]) == 1
    assert gt.percentile(2.0) == 100.0 and gt.percentile(-1.0) == 0.0


def test_truth_can_be_the_seed_mean():
    rows = [
        {"arch": "a", "seed": 0, "split": "evaluation", "test_acc": 0.5, "recipe": "r"},
        {"arch": "a", "seed": 1, "split": "evaluation", "test_acc": 0.7, "recipe": "r"},
        {"arch": "b", "seed": 0, "split": "evaluation", "test_acc": 0.55, "recipe": "r"},
    ]
    assert GroundTruth(rows, truth="seed0").archs()[0].test_acc == 0.5
    assert GroundTruth(rows).archs()[0].test_acc == pytest.approx(0.6)  # the mean by default
    assert GroundTruth(rows, truth="mean").archs()[1].test_acc == 0.55
    with pytest.raises(ValueError, match="truth"):
        GroundTruth(rows, truth="max")


def _paired(seed1: np.ndarray) -> GroundTruth:
    """100 archs with seed-0 accuracy i / 100 and the given seed-1 accuracies."""
    rows = []
    for i, b in enumerate(seed1):
        for seed, acc in ((0, i / 100), (1, float(b))):
            rows.append({"arch": f"a{i}", "seed": seed, "split": "evaluation", "test_acc": acc})
    return GroundTruth(rows)


def test_recipe_overrides_are_typed_hashed_and_checked():
    r = recipe_with(["epochs=12", "lr=0.05", "stage_widths=[8,16,32]", "optimizer=adamw"])
    assert (r.epochs, r.lr, r.stage_widths, r.optimizer) == (12, 0.05, (8, 16, 32), "adamw")
    assert r.hash() != GroundTruthRecipe().hash() and recipe_with([]) == GroundTruthRecipe()
    with pytest.raises(ValueError, match="key=value"):
        recipe_with(["epoch=12"])
    with pytest.raises(ValueError, match="epochs=many"):
        recipe_with(["epochs=many"])


def test_spread_summary_separates_seed_noise_from_architecture_spread():
    tight = spread_summary(_paired(np.arange(100) / 100 + 0.01))
    assert tight["pairs"] == 100 and tight["seed_sd"] == pytest.approx(0.01 / np.sqrt(2))
    assert tight["ratio"] > 20
    noisy = spread_summary(_paired(np.random.default_rng(0).permutation(100) / 100))
    assert noisy["ratio"] < 1.5
    assert spread_summary(_paired(np.arange(100) / 100), {"a1", "a2"})["pairs"] == 2
    with pytest.raises(ValueError, match="at least 2"):
        spread_summary(_paired(np.arange(100) / 100), {"a1"})


def test_selection_ceiling_tells_a_reliable_recipe_from_noise():
    from studies.gt_report import selection_ceiling

    reliable = selection_ceiling(_paired(np.arange(100) / 100))
    assert reliable["archs"] == 10 and reliable["seed1_percentile_mean"] > 90
    noise = np.random.default_rng(0).permutation(100) / 100  # seed 1 unrelated to seed 0
    assert 25 < selection_ceiling(_paired(noise))["seed1_percentile_mean"] < 75


def test_table_mixes_no_recipes(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [
        {"arch": "a", "seed": 0, "split": "evaluation", "test_acc": 0.5, "recipe": "r1"},
        {"arch": "b", "seed": 0, "split": "evaluation", "test_acc": 0.6, "recipe": "r2"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert len(GroundTruth.load(path)) == 1


# ---------------------------------------------------------------- the shipped table


def _shipped() -> GroundTruth:
    if not TABLE_PATH.is_file():
        pytest.fail(f"the ground-truth table is not shipped at {TABLE_PATH}")
    return GroundTruth.load()


def test_shipped_table_size_and_recipe():
    gt = _shipped()
    assert len(gt) >= 150, len(gt)
    assert len(gt.pairs()[0]) == len(gt)  # every architecture trained with two seeds
    assert {e["recipe"] for e in gt.entries} == {GroundTruthRecipe().hash()}
    assert min(len(gt.archs("calibration")), len(gt.archs("evaluation"))) >= 50


def test_shipped_table_ranks_architectures_above_its_seed_noise():
    """The goal is a spread between architectures >= 3x the spread between seeds; this recipe
    reaches 1.4x with two seeds for every architecture, its seed-vs-seed Kendall tau is 0.21
    (BENCHMARKS.md gives the figures): not met. What the shipped table must at least show:
    more spread between architectures than between seeds of one architecture."""
    gt = _shipped()
    assert gt.arch_sd() > gt.seed_sd(), (gt.arch_sd(), gt.seed_sd())


@pytest.mark.slow
def test_retraining_two_entries_reproduces_them_within_seed_noise():
    torch.set_num_threads(1)
    gt = _shipped()
    recipe = GroundTruthRecipe()
    clips = load_clips(recipe)
    records = gt.archs()[:2]
    tolerance = max(3 * gt.seed_sd(), 0.02)
    for rec in records:
        entry = train_and_score(Genotype.from_dict(rec.genotype), recipe, 0, clips)
        assert entry["arch"] == rec.arch
        assert abs(entry["test_acc"] - rec.test_acc) <= tolerance, (entry["test_acc"], rec.test_acc)


def test_groundtruth_command_probes_a_recipe_variant_beside_the_shipped_table(tmp_path, capsys):
    from studies.cli import main

    tiny = ["num_train=64", "num_search_val=32", "num_test=32", "train_clips=64", "epochs=1"]
    tiny.append("stage_widths=[4,8,8]")  # another skeleton: other arch ids for the same cells
    sets = [arg for kv in tiny for arg in ("--set", kv)]
    with pytest.raises(SystemExit, match="--out"):
        main(["groundtruth", "--archs", "2", "--pairs", "2", *sets])
    out = tmp_path / "probe.jsonl"
    main(
        ["groundtruth", "--out", str(out), "--archs", "2", "--pairs", "2", "--workers", "1", *sets]
    )
    printed = capsys.readouterr().out
    assert "variant: 2 pairs" in printed and "shipped: 2 pairs" in printed
    assert len(out.read_text().splitlines()) == 4


def test_groundtruth_command_stops_on_data_settings_the_generator_refuses(tmp_path):
    from studies.cli import main

    out = tmp_path / "probe.jsonl"
    args = ["groundtruth", "--out", str(out), "--archs", "2", "--pairs", "2", "--workers", "2"]
    with pytest.raises(SystemExit, match="too large for data.size=16"):
        main([*args, "--set", "render_size=16", "--set", "size=16"])
    with pytest.raises(SystemExit, match="key=value"):
        main([*args, "--set", "frame=16"])
    assert not out.exists() or out.read_text() == ""


def test_bn_statistics_are_recomputed_exactly_over_the_given_clips():
    from torch import nn

    from hybridnas.groundtruth.recipe import recompute_bn_stats

    torch.manual_seed(0)
    conv, bn = nn.Conv3d(3, 4, 1), nn.BatchNorm3d(4)
    model = nn.Sequential(conv, bn).eval()
    x = torch.randn(40, 3, 2, 4, 4) * 3 + 1
    recompute_bn_stats(model, x, batch_size=10)
    with torch.no_grad():
        assert torch.allclose(bn.running_mean, conv(x).mean((0, 2, 3, 4)), atol=1e-5)
    assert not model.training  # left as it was found
    recipe = dataclasses.replace(TINY, bn_stats_clips=32)
    assert recipe.hash() != TINY.hash()
    g = sample_uniform(recipe, 1, 0)[0]
    timing = ("ms_per_clip", "train_seconds")
    exact, again, running = (
        {k: v for k, v in train_and_score(g, r, 0).items() if k not in timing}
        for r in (recipe, recipe, TINY)
    )
    assert exact == again  # an entry repeats exactly
    # the same weights scored with other BatchNorm statistics: the recompute took effect
    assert (exact["test_acc"], exact["val_acc"]) != (running["test_acc"], running["val_acc"])


def test_regret_refuses_a_table_built_with_another_recipe(tmp_path):
    from hybridnas.groundtruth import regret

    entry = json.loads(TABLE_PATH.read_text().splitlines()[0])
    table = tmp_path / "other.jsonl"
    table.write_text(json.dumps({**entry, "recipe": "000000000000"}) + "\n")
    with pytest.raises(SystemExit, match="rebuild the table"):
        regret("builtin", table=table)
