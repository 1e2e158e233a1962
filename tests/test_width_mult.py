"""model.width_mult scales a found genotype's own widths (stage widths and stem channels) instead
of replacing them, so the widths evolution chose survive into training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hybridnas.config import TrainRun
from hybridnas.models import build_model, model_spec, resolve_genotype, scaled_width
from hybridnas.space.genotype import Genotype, GenotypeError

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _genotype(**model) -> Genotype:
    cfg = OmegaConf.create({"genotype": "builtin", **model})
    return resolve_genotype(cfg, num_classes=10, frames=8, size=32)


@pytest.mark.parametrize(
    ("width", "mult", "expected"),
    [(20, 2.0, 40), (3, 1.5, 5), (7, 0.5, 4), (5, 0.1, 1), (10, 0.25, 3), (16, 1.0, 16)],
)
def test_scaled_width_rounds_half_up_and_keeps_one_channel(width, mult, expected):
    assert scaled_width(width, mult) == expected


def test_width_mult_scales_the_genotypes_own_widths():
    base = _genotype()
    wide = _genotype(width_mult=1.5)
    assert wide.stage_widths == tuple(scaled_width(w, 1.5) for w in base.stage_widths)
    assert wide.stage_widths == (12, 24, 48) and wide.stem_channels == 24
    assert (wide.normal, wide.reduce, wide.num_cells) == (base.normal, base.reduce, base.num_cells)
    net = build_model("genotype", num_classes=10, frames=8, size=32, genotype=wide)
    stem = next(m for m in net.modules() if isinstance(m, torch.nn.Conv3d))
    assert stem.out_channels == 24
    assert net(torch.randn(2, 3, 8, 32, 32)).shape == (2, 10)


def test_width_mult_one_is_the_identity_and_others_change_the_key():
    assert _genotype(width_mult=1.0).key() == _genotype().key()
    assert _genotype(width_mult=2.0).key() != _genotype().key()  # a checkpoint tells them apart


def test_width_mult_applies_on_top_of_explicit_widths():
    g = _genotype(stage_widths=[4, 8, 20], stem_channels=8, width_mult=2.0)
    assert g.stage_widths == (8, 16, 40) and g.stem_channels == 16


def test_width_mult_must_be_positive():
    with pytest.raises(GenotypeError, match="width_mult must be > 0"):
        _genotype(width_mult=0.0)


def test_train_config_carries_width_mult_into_the_model_spec():
    with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
        cfg = compose("train", overrides=["genotype=builtin", "model.width_mult=0.5"])
    run = TrainRun.from_cfg(cfg)
    spec = model_spec(run.model, run.data, num_classes=10)
    assert spec.genotype.stage_widths == (4, 8, 16) and spec.genotype.stem_channels == 8
    rebuilt = type(spec).from_dict(spec.to_dict())  # what a checkpoint stores and reloads
    assert rebuilt.genotype.stage_widths == (4, 8, 16)
