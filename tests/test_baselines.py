"""Baselines build, run on the built-in clip shape and take a training step; the genotype
network built through the same entry point does too."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from hybridnas.models import build_model, list_models, resolve_genotype


@pytest.mark.parametrize("name", list_models())
def test_model_forward_and_one_train_step(name):
    torch.manual_seed(0)
    g = None
    if name == "genotype":
        cfg = OmegaConf.create({"genotype": "builtin", "num_cells": 3, "stem_stride": [1, 2, 2]})
        g = resolve_genotype(cfg, num_classes=10, frames=8, size=32)
    model = build_model(name, num_classes=10, frames=8, size=32, genotype=g)
    x, y = torch.randn(2, 3, 8, 32, 32), torch.tensor([1, 7])
    logits = model(x)
    assert logits.shape == (2, 10)
    # logits, not probabilities: pytorchvideo's default Softmax head must be off
    assert not torch.allclose(logits.softmax(1).sum(1), logits.sum(1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    F.cross_entropy(logits, y).backward()
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_kinetics_sized_baselines_have_the_published_shape():
    x3d = build_model("x3d_xs", num_classes=400, frames=4, size=160)
    params = sum(p.numel() for p in x3d.parameters())
    assert 3.5e6 < params < 4.0e6  # X3D-XS: 3.8M parameters (Feichtenhofer 2020)
    r2p1 = build_model("r2plus1d", num_classes=400, frames=16, size=224, r2plus1d_width=64)
    # a full-size clip through the net on the meta device: the shapes, without the FLOPs
    r2p1 = r2p1.to("meta")
    assert r2p1(torch.randn(1, 3, 16, 224, 224, device="meta")).shape == (1, 400)


def test_c3d_width_sets_its_stages_and_flops():
    from hybridnas.measure.counts import count_flops

    narrow = build_model("c3d", num_classes=10, frames=8, size=32, c3d_width=8)
    wide = build_model("c3d", num_classes=10, frames=8, size=32, c3d_width=16)
    convs = [m.out_channels for m in wide.modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs == [16, 32, 64, 64, 128, 128]  # C3D's 1, 1, 2, 2 blocks, widths w..8w
    ratio = count_flops(wide, (3, 8, 32, 32)) / count_flops(narrow, (3, 8, 32, 32))
    assert 3.5 < ratio < 4.0  # ~w^2 (the first conv, 3 -> w, only grows with w)
    assert wide(torch.randn(1, 3, 16, 64, 64)).shape == (1, 10)  # any clip shape


def test_c3d_width_travels_through_the_train_config():
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from hybridnas.config import TrainRun
    from hybridnas.models import ModelSpec, model_spec

    recipes = Path(__file__).resolve().parent.parent / "recipes"
    with initialize_config_dir(config_dir=str(recipes), version_base="1.3"):
        cfg = compose("train", overrides=["model.name=c3d", "model.c3d_width=10"])
    run = TrainRun.from_cfg(cfg)
    spec = ModelSpec.from_dict(model_spec(run.model, run.data, num_classes=10).to_dict())
    assert spec.c3d_width == 10
    assert spec.build()[0].out_channels == 10


SMALL = dict(spatial_strides=(2, 1, 2, 2, 2))
RECIPE_KW = {  # recipes/recipe/train_builtin_baseline.yaml
    "c3d": dict(c3d_width=10),
    "r2plus1d": dict(r2plus1d_width=8, **SMALL),
    "x3d_xs": dict(x3d_width_factor=0.5, **SMALL),
}


def _last_stage_map(model: torch.nn.Module) -> tuple[int, ...]:
    """(T, H, W) of the feature map a pytorchvideo net hands its head, on one 8 x 32 x 32 clip."""
    seen = []
    model.blocks[-2].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[2:])))
    model(torch.randn(1, 3, 8, 32, 32))
    return seen[0]


@pytest.mark.parametrize("name", ["x3d_xs", "r2plus1d"])
def test_small_input_strides_keep_a_map_before_the_head(name):
    # the published strides (32 in all) leave 1x1 on 32 px: the cause of near-chance training
    assert _last_stage_map(build_model(name, num_classes=10, frames=8, size=32))[1:] == (1, 1)
    small = build_model(name, num_classes=10, frames=8, size=32, **RECIPE_KW[name])
    assert _last_stage_map(small)[1:] == (2, 2)


def test_spatial_strides_are_checked_against_the_clip():
    with pytest.raises(ValueError, match="downsample by 32, more than the 16 px"):
        build_model("x3d_xs", num_classes=10, frames=4, size=16)
    with pytest.raises(ValueError, match="5 positive strides"):
        build_model("r2plus1d", num_classes=10, frames=8, size=32, spatial_strides=(2, 2))


def test_baseline_recipe_keys_reach_the_network():
    from pathlib import Path

    from omegaconf import OmegaConf

    from hybridnas.models import ModelSpec

    recipe = Path(__file__).resolve().parent.parent / "recipes/recipe/train_builtin_baseline.yaml"
    m = OmegaConf.load(recipe).model
    assert list(m.spatial_strides) == [2, 1, 2, 2, 2] and m.x3d_width_factor == 0.5
    spec = ModelSpec("x3d_xs", 10, 8, 32, spatial_strides=(2, 1, 2, 2, 2), x3d_width_factor=0.5)
    spec = ModelSpec.from_dict(spec.to_dict())  # what a checkpoint carries
    assert spec.spatial_strides == (2, 1, 2, 2, 2)
    assert _last_stage_map(spec.build())[1:] == (2, 2)


def test_x3d_recipe_has_no_head_dropout():
    """recipes/recipe/train_builtin_x3d.yaml's dropout (0.01, as measured) and layout keys must
    reach the net as such."""
    from pathlib import Path

    recipe = Path(__file__).resolve().parent.parent / "recipes/recipe/train_builtin_x3d.yaml"
    assert recipe.read_text().splitlines()[1].startswith("# python tools/train.py recipe=")
    m = OmegaConf.load(recipe).model
    model = build_model(
        "x3d_xs_ti",
        num_classes=10,
        frames=8,
        size=32,
        dropout=m.dropout,
        x3d_width_factor=m.x3d_width_factor,
        spatial_strides=tuple(m.spatial_strides),
    )
    drops = [mod.p for mod in model.modules() if isinstance(mod, torch.nn.Dropout)]
    assert drops and max(drops) <= 0.01
    assert _last_stage_map(model)[1:] == (2, 2)


@pytest.mark.parametrize("name", ["x3d_xs_ti", "r2plus1d_18", "c3d", "genotype"])
def test_dropout_zero_means_none_and_null_the_networks_own(name):
    from hybridnas.models import BUILTIN_GENOTYPE
    from hybridnas.space.genotype import Genotype

    def head_dropout(dropout):
        g = Genotype.load(BUILTIN_GENOTYPE) if name == "genotype" else None
        kw = {"spatial_strides": (2, 1, 2, 2, 2)} if name != "c3d" and g is None else {}
        model = build_model(
            name, num_classes=10, frames=8, size=32, genotype=g, dropout=dropout, **kw
        )
        return max([m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)], default=0)

    assert head_dropout(0.0) == 0.0
    assert head_dropout(None) == (0.5 if name in ("x3d_xs_ti", "r2plus1d_18") else 0.0)
    assert head_dropout(0.3) == 0.3


def _fit_and_score(model: torch.nn.Module, n_train: int = 768, epochs: int = 3) -> float:
    """SGD (Nesterov momentum 0.9, lr 0.05 cosine to 0, weight decay 3e-4, batch 32) on the
    first ``n_train`` built-in training clips; top-1 on the first 200 test clips."""
    from hybridnas.data.builtin import MovingDigits

    train, test = MovingDigits("train"), MovingDigits("test")
    x = torch.stack([train[i][0] for i in range(n_train)])
    y = torch.tensor([train[i][1] for i in range(n_train)])
    opt = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4, nesterov=True
    )
    steps, k = epochs * (n_train // 32), 0
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n_train)
        for b in range(n_train // 32):
            idx = perm[b * 32 : (b + 1) * 32]
            for group in opt.param_groups:
                group["lr"] = 0.05 * 0.5 * (1 + math.cos(math.pi * k / steps))
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            k += 1
    model.eval()
    with torch.no_grad():
        xt = torch.stack([test[i][0] for i in range(200)])
        yt = torch.tensor([test[i][1] for i in range(200)])
        return (model(xt).argmax(1) == yt).float().mean().item()


@pytest.mark.slow
def test_c3d_trains_well_above_chance():
    """72 SGD steps on 768 clips (minutes on a busy shared core); chance is 0.10, measured 0.460.
    R(2+1)D and X3D-XS are not asserted. With pytorchvideo's initialisation (``r2plus1d``,
    ``x3d_xs``) they stay near chance here (R(2+1)D-50 0.130 measured here); from PyTorch's
    (``r2plus1d_18``, ``x3d_xs_ti``) they train, but need the full recipes' epochs to leave
    chance well, too slow for a test (README, baselines)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_model("c3d", num_classes=10, frames=8, size=32, **RECIPE_KW["c3d"])
        acc = _fit_and_score(model)
    finally:
        torch.set_num_threads(before)  # not left at 1 for the tests after this one
    print(f"c3d: top-1 {acc:.3f} (chance 0.10)")
    assert acc > 0.30


def test_r2plus1d_18_is_basic_2plus1d_blocks_from_pytorch_init():
    from pytorchvideo.models.resnet import ResBlock

    from hybridnas.models.baselines import Basic2plus1dBlock

    model = build_model("r2plus1d_18", num_classes=10, frames=8, size=32, **RECIPE_KW["r2plus1d"])
    res = [m for m in model.modules() if isinstance(m, ResBlock)]
    assert len(res) == 8 and all(isinstance(r.branch2, Basic2plus1dBlock) for r in res)
    assert _last_stage_map(model) == (2, 2, 2)  # temporal strides 1, 1, 2, 2 on 8 frames
    # pytorchvideo's Net zeroes each branch's last BN (and starts the classifier at std 0.01):
    # with that start the net stays at chance on the built-in data; the builder undoes it
    assert all(torch.all(r.branch2.norm_b.weight == 1) for r in res)
    assert model.blocks[-1].proj.weight.std() > 0.05
    assert model(torch.randn(2, 3, 16, 48, 48)).shape == (2, 10)  # any clip shape


def test_r2plus1d_18_fits_a_tiny_batch():
    """12 AdamW steps on 8 clips take the loss to a tenth of its start (measured 0.10; with
    pytorchvideo's initialisation left in place 0.56, so this also guards the reset)."""
    torch.manual_seed(0)
    model = build_model("r2plus1d_18", num_classes=10, frames=8, size=32, **RECIPE_KW["r2plus1d"])
    x, y = torch.randn(8, 3, 8, 32, 32), torch.arange(8)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(12):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
