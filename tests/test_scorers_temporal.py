"""Temporal scorers: they see frame order and motion, are deterministic, and ignore stills."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from studies.scorer_bench import ZERO_COST

from hybridnas.groundtruth.recipe import GroundTruthRecipe
from hybridnas.search.scorers.registry import ScoreContext, get_scorer, list_scorers
from hybridnas.search.scorers.temporal import (
    frame_differences,
    frame_permutation,
    order_sensitivity,
)
from hybridnas.space.genotype import CellSpec, Genotype
from hybridnas.space.network import build_network

RECIPE = GroundTruthRecipe(size=16, stage_widths=(4, 8, 8))
NAMES = ["temporal_sensitivity", "naswot_motion"]


def cells_of(op: str) -> Genotype:
    """The recipe's skeleton with every edge of both cell types set to ``op``."""
    cell = CellSpec(edges=tuple((i, j, op) for j in (2, 3, 4) for i in (0, 1)), concat=(2, 3, 4))
    return RECIPE.template().replace(normal=cell, reduce=cell)


@pytest.fixture(scope="module")
def ctx() -> ScoreContext:
    torch.manual_seed(0)
    x = torch.randn(32, 3, 8, 16, 16)
    return ScoreContext(x=x, y=torch.randint(0, 10, (32,)), batch_size=16)


def test_registered_and_benchmarked_by_default():
    assert set(NAMES) <= set(list_scorers())
    assert set(NAMES) <= set(ZERO_COST)


@pytest.mark.parametrize("name", NAMES)
def test_finite_deterministic_and_discriminating(name, ctx):
    torch.set_num_threads(1)
    fn = get_scorer(name)
    gs = [cells_of(op) for op in ("conv3d_3x3x3", "max_pool_1x3x3", "p3d_c")]
    scores = [fn(g, ctx) for g in gs]
    assert all(math.isfinite(s) for s in scores), scores
    assert len(set(scores)) == len(scores), scores
    assert fn(gs[0], ctx) == scores[0]


def test_frame_permutation_moves_frames_and_is_fixed():
    perm = frame_permutation(8)
    assert sorted(perm.tolist()) == list(range(8))
    assert not torch.equal(perm, torch.arange(8))
    assert torch.equal(perm, frame_permutation(8))


def test_frame_differences_shape_and_static_clips_vanish():
    x = torch.randn(2, 3, 8, 4, 4)
    d = frame_differences(x)
    assert d.shape == x.shape
    assert torch.equal(d[:, :, 0], torch.zeros_like(d[:, :, 0]))
    assert torch.allclose(d[:, :, 3], x[:, :, 3] - x[:, :, 2])
    still = x[:, :, :1].expand_as(x)
    assert torch.count_nonzero(frame_differences(still)) == 0


def test_order_blind_network_scores_zero_and_temporal_convs_do_not(ctx):
    """With a per-frame stem (1x3x3) and only spatial / parameter-free ops, frame order cannot
    reach the pooled features: sensitivity is zero up to rounding. Temporal convs break it."""
    torch.set_num_threads(1)
    x, perm = ctx.x[:16], frame_permutation(8)
    scores = {}
    for op in ("max_pool_1x3x3", "skip", "conv3d_3x3x3", "dil_temporal_d2"):
        torch.manual_seed(0)
        net = build_network(cells_of(op).replace(stem_kernel=(1, 3, 3)))
        scores[op] = order_sensitivity(net, x, perm)
    assert scores["max_pool_1x3x3"] < 1e-4 and scores["skip"] < 1e-4, scores
    assert scores["conv3d_3x3x3"] > 0.05 and scores["dil_temporal_d2"] > 0.05, scores


def test_temporal_cells_score_higher_than_spatial_cells(ctx):
    torch.set_num_threads(1)
    fn = get_scorer("temporal_sensitivity")
    temporal = min(fn(cells_of(op), ctx) for op in ("conv3d_3x3x3", "dil_temporal_d2"))
    spatial = max(fn(cells_of(op), ctx) for op in ("max_pool_1x3x3", "skip"))
    assert temporal > spatial


def test_naswot_motion_ignores_a_still_background(ctx):
    """Adding the same image to every frame leaves the frame differences, hence the score,
    unchanged."""
    torch.set_num_threads(1)
    fn, g = get_scorer("naswot_motion"), cells_of("conv3d_3x3x3")
    still = torch.randn(32, 3, 1, 16, 16).expand(-1, -1, 8, -1, -1)
    moved = ScoreContext(x=ctx.x + still, y=ctx.y, batch_size=16)
    assert fn(g, moved) == pytest.approx(fn(g, ctx), rel=1e-9)
    assert get_scorer("naswot")(g, moved) != get_scorer("naswot")(g, ctx)  # it does see stills


def test_choose_ensemble_admits_the_baselines_only_when_asked():
    from studies.scorer_bench import choose_ensemble

    from hybridnas.groundtruth.table import GroundTruth

    rng = np.random.default_rng(0)
    archs = [f"a{k}" for k in range(40)]
    acc = rng.random(40)
    gt = GroundTruth(
        [
            {"arch": a, "seed": 0, "split": "calibration", "test_acc": float(t), "recipe": "r"}
            for a, t in zip(archs, acc, strict=True)
        ]
    )
    scores = {
        "params": dict(zip(archs, acc, strict=True)),  # perfect on calibration
        "noise_a": dict(zip(archs, rng.random(40), strict=True)),
        "noise_b": dict(zip(archs, rng.random(40), strict=True)),
    }
    assert "params" not in choose_ensemble(scores, gt)[0]
    assert "params" in choose_ensemble(scores, gt, baselines=True)[0]
