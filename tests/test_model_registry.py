"""The model registry: every registered name builds through ``create_model`` and maps a tiny
clip to logits; a name that is not registered is refused in one line naming the choices."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from hybridnas.config import ConfigError
from hybridnas.models import (
    ModelSpec,
    create_model,
    list_models,
    model_spec,
    register_model,
    resolve_genotype,
)
from hybridnas.models.registry import model_entry

CLIP = {"frames": 4, "size": 32}


def tiny_genotype():
    cfg = OmegaConf.create({"genotype": "builtin", "num_cells": 3, "stem_stride": [1, 2, 2]})
    return resolve_genotype(cfg, num_classes=5, **CLIP)


def test_the_seven_names_of_the_old_if_chain_are_registered():
    assert set(list_models()) == {
        "genotype", "x3d_xs", "x3d_xs_ti", "r2plus1d", "r2plus1d_18", "c3d", "frame2d",
    }  # fmt: skip


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds_and_runs_a_tiny_clip(name):
    entry = model_entry(name)
    given = {**CLIP, "genotype": tiny_genotype() if name == "genotype" else None}
    kwargs = {kw: given[key] for key, kw in entry.spec_keys.items() if given.get(key) is not None}
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, **kwargs).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, CLIP["frames"], CLIP["size"], CLIP["size"]))
    assert logits.shape == (2, 5)
    assert torch.isfinite(logits).all()


def test_builders_take_keywords_only():
    with pytest.raises(TypeError):
        create_model("c3d", 5)


def test_a_wrong_name_is_refused_naming_every_registered_model():
    with pytest.raises(ConfigError) as err:
        create_model("resnet50", num_classes=5)
    message = str(err.value)
    assert "\n" not in message and "'resnet50'" in message
    assert all(name in message for name in list_models())


def test_a_wrong_model_name_in_the_train_config_is_refused_before_any_genotype_is_read():
    m = OmegaConf.create({"name": "x3d", "genotype": "no/such/file.json"})
    data = OmegaConf.create(CLIP)
    with pytest.raises(ConfigError, match=r"model.name 'x3d' is not a registered model"):
        model_spec(m, data, num_classes=5)


def test_a_name_registers_once():
    register_model("test_only_net")(lambda *, num_classes: torch.nn.Linear(1, num_classes))
    try:
        with pytest.raises(ValueError, match="registered twice"):
            register_model("test_only_net")(lambda *, num_classes: None)
    finally:
        from hybridnas.models import registry

        registry._REGISTRY.pop("test_only_net")


def test_a_spec_rebuilds_the_same_network_through_the_registry():
    torch.manual_seed(0)
    spec = ModelSpec("c3d", 5, 4, 32, c3d_width=4, dropout=0.1)
    first = spec.build()
    torch.manual_seed(0)
    again = ModelSpec.from_dict(spec.to_dict()).build()  # what a checkpoint carries
    assert [m.out_channels for m in first.modules() if isinstance(m, torch.nn.Conv3d)][0] == 4
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
