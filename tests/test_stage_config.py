"""The typed stage configs: their defaults are the YAML's, unknown keys are refused by name,
and a stage runs from Python without a Hydra config."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hybridnas.config import ConfigError
from hybridnas.engine.distributed import DistContext
from hybridnas.engine.tracking import Tracker
from hybridnas.stage_config import (
    DataConfig,
    EvolutionConfig,
    ModelConfig,
    SearchConfig,
    SearchRun,
    SpaceConfig,
    TrainConfig,
    TrainRun,
)

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.mark.parametrize(
    ("tool", "section", "cls"),
    [
        ("search", "search", SearchConfig),
        ("search", "model", SpaceConfig),
        ("search", "evolution", EvolutionConfig),
        ("train", "train", TrainConfig),
        ("train", "model", ModelConfig),
    ],
)
def test_dataclass_defaults_are_the_yaml_defaults(tool, section, cls):
    node = OmegaConf.load(RECIPES / f"{tool}.yaml")[section]
    if cls is ModelConfig:
        node.genotype = None  # ${genotype} in the YAML
    built = EvolutionConfig.from_cfg(node) if cls is EvolutionConfig else cls(**node)
    assert {f.name for f in fields(cls)} == set(node.keys())
    assert built == cls()


def test_tool_configs_build_and_unknown_keys_are_named():
    with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
        search = compose("search", overrides=["search.epochs=2", "data.batch_size=4"])
        train = compose("train", overrides=["genotype=builtin"])
    run = SearchRun.from_cfg(search)
    assert run.search.epochs == 2 and run.data.batch_size == 4 and run.data.size == 32
    assert isinstance(run.model.op_names, tuple) and run.evolution.proxy.stage_clips == (512, 512)
    assert TrainRun.from_cfg(train).model.genotype == "builtin"
    OmegaConf.set_struct(search, False)
    search.search.epochz = 3
    with pytest.raises(ConfigError, match="unknown config key 'search.epochz'"):
        SearchRun.from_cfg(search)
    with pytest.raises(ValueError, match="unknown data config keys"):
        DataConfig.from_cfg({"name": "builtin", "sise": 16})


def test_differentiable_stage_runs_from_python_without_hydra(tmp_path, monkeypatch):
    from hybridnas.search.differentiable.loop import run_differentiable

    monkeypatch.setenv("HYBRIDNAS_CACHE", str(tmp_path / "cache"))
    data = DataConfig(
        dataset={"name": "builtin", "frames": 4, "size": 16, "digit_px": 6, "num_train": 16,
                 "num_search_val": 16, "num_test": 8},
        batch_size=8,
    )  # fmt: skip
    run = SearchRun(
        data=data,
        model=SpaceConfig(op_names=("none", "skip", "conv3d_3x3x3"), steps=2,
                          stage_widths=(4, 8, 8), num_cells=3),
        search=SearchConfig(epochs=1, warmup_epochs=0, arch_warmup_epochs=0, steps_per_epoch=1),
    )  # fmt: skip
    torch.set_num_threads(1)
    tracker = Tracker(tmp_path, None, enabled=False)
    genotype, st = run_differentiable(run, DistContext(), tmp_path, tracker)
    assert st.global_step == 1 and (tmp_path / "genotype.json").is_file()
    assert genotype.frames == 4 and genotype.size == 16
