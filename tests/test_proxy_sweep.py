"""Proxy variants of the bench: schedules, clip order, readings, and that training trains."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from studies.proxy_sweep import (
    ProxyVariant,
    clip_order,
    lr_factor,
    read_scores,
    train_variant,
)
from torch import nn

from hybridnas.groundtruth.recipe import GroundTruthRecipe
from hybridnas.space.genotype import CellSpec

RECIPE = GroundTruthRecipe()


def test_onecycle_warms_up_then_decays_to_zero():
    total = 40
    f = [lr_factor("onecycle", s, total, 0.25) for s in range(total)]
    assert f[0] == pytest.approx(0.1)  # 1 / 10 warm-up steps
    assert max(f) == pytest.approx(1.0) and f.index(max(f)) == 9
    assert all(a >= b for a, b in zip(f[9:], f[10:], strict=False))
    assert f[-1] < 0.01
    assert {lr_factor("constant", s, total, 0.25) for s in range(total)} == {1.0}
    with pytest.raises(ValueError):
        ProxyVariant(schedule="cosine")


def test_clip_order_stored_order_first_then_every_clip_once_per_pass():
    order = clip_order(10, 25, seed=3)
    assert order[:10].tolist() == list(range(10))
    assert sorted(order[10:20].tolist()) == list(range(10))
    assert len(order) == 25
    assert clip_order(10, 4).tolist() == [0, 1, 2, 3]


class Fixed(nn.Module):
    """Logits that put ``margin`` on class 0 whatever the input."""

    def __init__(self, margin: float) -> None:
        super().__init__()
        self.margin = margin
        self.bn = nn.BatchNorm1d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(len(x), 10)
        logits[:, 0] = self.margin
        return logits


def test_readings_accuracy_and_negated_loss_on_each_prefix():
    x = torch.zeros(8, 1)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    v = ProxyVariant(val_clips=(4, 8), readings=("acc_batch", "loss_eval"))
    out = read_scores(Fixed(3.0), x, y, v, batch_size=3)
    assert set(out) == {"acc_batch_4", "acc_batch_8", "loss_eval_4", "loss_eval_8"}
    assert out["acc_batch_4"] == 1.0 and out["acc_batch_8"] == 0.5
    # class 0 right: small loss; over all 8, half wrong: larger loss (negated: lower score)
    assert out["loss_eval_4"] > out["loss_eval_8"]
    sharper = read_scores(Fixed(6.0), x, y, v)
    assert sharper["loss_eval_4"] > out["loss_eval_4"]


@pytest.fixture(scope="module")
def tiny() -> tuple:
    torch.manual_seed(0)
    # two classes a proxy can learn in a few dozen steps: bright vs dark clips
    y = torch.arange(96) % 2
    x = torch.randn(96, 3, 8, 16, 16) * 0.3 + (2 * y - 1).float()[:, None, None, None, None]
    train = SimpleNamespace(x=x[:64], y=y[:64])
    val = SimpleNamespace(x=x[64:], y=y[64:])
    cell = CellSpec(
        edges=tuple((i, j, "conv3d_3x3x3") for j in (2, 3, 4) for i in (0, 1)), concat=(2, 3, 4)
    )
    return RECIPE.template().replace(normal=cell, reduce=cell), train, val


def test_training_learns_and_early_readings_are_recorded(tiny):
    genotype, train, val = tiny
    v = ProxyVariant(
        width_scale=1.0, clips=128, batch_size=16, lr=0.05, schedule="onecycle",
        early=(16,), val_clips=(32,), readings=("acc_batch", "loss_batch"),
    )  # fmt: skip
    out = train_variant(genotype, v, train, val)
    assert set(out) == {
        "e16_acc_batch_32", "e16_loss_batch_32", "acc_batch_32", "loss_batch_32"
    }  # fmt: skip
    assert out["loss_batch_32"] > out["e16_loss_batch_32"]  # loss fell after step 1
    assert out["acc_batch_32"] > 0.8
    # a variant is a pure function of (genotype, variant, data, seed)
    assert train_variant(genotype, v, train, val) == out


def test_a_diverged_variant_stops_instead_of_scoring(tiny):
    genotype, train, val = tiny
    broken = SimpleNamespace(x=train.x.clone(), y=train.y)
    broken.x[3] = float("nan")
    v = ProxyVariant(clips=32, batch_size=16, val_clips=(16,), readings=("loss_batch",))
    with pytest.raises(FloatingPointError, match="non-finite loss at step 0"):
        train_variant(genotype, v, broken, val)


def test_batch_readings_leave_running_averages_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 1), nn.BatchNorm1d(4), nn.Flatten(), nn.Linear(12, 10))
    x, y = torch.randn(16, 2, 3) * 5 + 3, torch.randint(0, 10, (16,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    eval_only = read_scores(model, x, y, ProxyVariant(val_clips=(16,), readings=("acc_eval",)))
    both = read_scores(
        model, x, y, ProxyVariant(val_clips=(16,), readings=("acc_batch", "loss_eval"))
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    plain = read_scores(model, x, y, ProxyVariant(val_clips=(16,), readings=("loss_eval",)))
    assert both["loss_eval_16"] == plain["loss_eval_16"]
    assert set(eval_only) == {"acc_eval_16"} and model.training


def test_registered_proxy_1cycle_learns_is_deterministic_and_needs_held_out_clips(monkeypatch):
    from hybridnas.search.scorers import proxy_variants
    from hybridnas.search.scorers.registry import ScoreContext, get_scorer

    torch.manual_seed(0)
    y = torch.randint(0, 2, (96,))
    x = torch.randn(96, 3, 4, 16, 16) + 1.5 * y[:, None, None, None, None].float()
    g = RECIPE.conform(GroundTruthRecipe().template()).replace(frames=4)
    ctx = ScoreContext(
        x=x[:16], y=y[:16], train_x=x[:64], train_y=y[:64], val_x=x[64:], val_y=y[64:]
    )
    torch.set_num_threads(1)
    score = get_scorer("proxy_1cycle")(g, ctx)
    assert -0.5 < score <= 0  # minus the held-out loss, far below an untrained net's ~ln(10)
    assert get_scorer("proxy_1cycle")(g, dataclasses.replace(ctx)) == score  # trained anew
    with pytest.raises(ValueError, match="held-out"):
        get_scorer("proxy_1cycle")(g, ScoreContext(x=x, y=y))
    # the two-seed mean, on a task hard enough that seeds end at different held-out losses
    hard = dataclasses.replace(ctx, train_x=torch.randn(64, 3, 4, 16, 16), val_x=x[64:] / 5)
    seed0 = get_scorer("proxy_1cycle")(g, hard)
    seed1 = get_scorer("proxy_1cycle")(g, dataclasses.replace(hard, seed=1))
    assert seed0 != seed1
    trainings = []
    real = proxy_variants.train_variant
    monkeypatch.setattr(
        proxy_variants, "train_variant", lambda *a, **k: trainings.append(1) or real(*a, **k)
    )
    assert get_scorer("proxy_1cycle_x2")(g, hard) == pytest.approx((seed0 + seed1) / 2)
    assert len(trainings) == 1  # the seed-0 run is shared with proxy_1cycle on this context
