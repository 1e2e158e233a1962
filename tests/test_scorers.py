"""Candidate scorers: each returns a finite, deterministic number that tells archs apart."""

from __future__ import annotations

import json
import math

import pytest
import torch

from hybridnas.groundtruth.recipe import GroundTruthRecipe, sample_uniform
from hybridnas.search.scorers.registry import (
    ScoreContext,
    get_scorer,
    list_scorers,
    rank_many,
    score_many,
)
from hybridnas.search.scorers.zero_cost import recalibrate_bn
from hybridnas.space.genotype import CellSpec
from hybridnas.space.network import build_network
from hybridnas.space.supernet import Supernet, SupernetConfig

RECIPE = GroundTruthRecipe(size=16, stage_widths=(4, 8, 8))
ZERO_COST = ["params", "flops", "synflow", "snip", "grad_norm", "naswot", "zico", "st_entropy"]


@pytest.fixture(scope="module")
def ctx() -> ScoreContext:
    torch.manual_seed(0)
    x = torch.randn(32, 3, 8, 16, 16)
    y = torch.randint(0, 10, (32,))
    return ScoreContext(x=x, y=y, batch_size=16, val_x=x[:16], val_y=y[:16])


@pytest.fixture(scope="module")
def genotypes():
    return [RECIPE.conform(g) for g in sample_uniform(RECIPE, 4, seed=1)]


def test_every_zero_cost_scorer_is_registered():
    assert set(ZERO_COST) <= set(list_scorers())
    with pytest.raises(ValueError, match="unknown scorer"):
        get_scorer("nope")


@pytest.mark.parametrize("name", ZERO_COST)
def test_scorer_is_finite_deterministic_and_discriminates(name, ctx, genotypes):
    torch.set_num_threads(1)
    scores = score_many(name, genotypes, ctx)
    assert all(math.isfinite(s) for s in scores), scores
    assert len(set(scores)) > 1, f"{name} gives every architecture the same score"
    assert score_many(name, genotypes[:1], ctx) == scores[:1]


def test_synflow_prefers_convs_over_parameter_free_cells(ctx):
    base = RECIPE.template()
    pools = CellSpec(
        edges=tuple((i, j, "max_pool_1x3x3") for j in (2, 3, 4) for i in (0, 1)),
        concat=(2, 3, 4),
    )
    convs = CellSpec(
        edges=tuple((i, j, "conv3d_3x3x3") for j in (2, 3, 4) for i in (0, 1)),
        concat=(2, 3, 4),
    )
    synflow = get_scorer("synflow")
    assert synflow(base.replace(normal=convs, reduce=convs), ctx) > synflow(
        base.replace(normal=pools, reduce=pools), ctx
    )


def test_oneshot_uses_supernet_weights_and_recalibrates_bn(ctx, genotypes):
    ops = list(RECIPE.op_names)
    sc = SupernetConfig(
        op_names=ops,
        steps=3,
        stage_widths=RECIPE.stage_widths,
        num_cells=3,
        stem_channels=RECIPE.stem_channels,
        stem_stride=RECIPE.stem_stride,
        frames=8,
        size=16,
    )
    torch.manual_seed(0)
    state = Supernet(sc).state_dict()
    ctx1 = ScoreContext(
        ctx.x, ctx.y, 16, ctx.val_x, ctx.val_y, supernet_state=state, supernet_ops=ops
    )
    acc = get_scorer("oneshot")(genotypes[0], ctx1)
    assert 0.0 <= acc <= 1.0
    with pytest.raises(ValueError, match="supernet_state"):
        get_scorer("oneshot")(genotypes[0], ctx)


def test_recalibrated_bn_matches_the_data_statistics(ctx, genotypes):
    model = build_network(genotypes[0])
    recalibrate_bn(model, ctx.x, 16)
    bn = model.stem[1]
    with torch.no_grad():
        feats = model.stem[0](ctx.x)
    assert torch.allclose(bn.running_mean, feats.mean((0, 2, 3, 4)), atol=1e-4)


def test_rank_ensemble_is_the_mean_rank():
    assert rank_many([[1, 2, 3], [30, 20, 10]]) == [2.0, 2.0, 2.0]
    assert rank_many([[1, 2, 3], [1, 2, 3]]) == [1.0, 2.0, 3.0]


def test_scoring_one_half_keeps_the_other_halfs_scores(tmp_path):
    from studies.cli import run_scorers

    from hybridnas.groundtruth.table import GroundTruth

    out = tmp_path / "scores.json"
    run_scorers(["params"], 6, out, None, "calibration")
    run_scorers(["params"], 6, out, None, "evaluation")
    scored = set(json.loads(out.read_text())["scores"]["params"])
    halves = {r.arch: r.split for r in GroundTruth.load().archs()}
    assert {halves[a] for a in scored} == {"calibration", "evaluation"}


def test_another_context_seed_is_filed_apart_and_changes_a_seeded_score(tmp_path):
    from studies.cli import run_scorers

    out = tmp_path / "scores.json"
    run_scorers(["naswot"], 3, out, None)
    run_scorers(["naswot"], 3, out, None, seed=1)
    scores = json.loads(out.read_text())["scores"]
    assert set(scores) == {"naswot", "naswot@seed1"}
    assert set(scores["naswot"]) == set(scores["naswot@seed1"])
    assert scores["naswot"] != scores["naswot@seed1"]  # another init, another kernel
