"""The typed stage configs: their defaults are the YAML's, unknown keys are refused by name,
and a stage runs from Python without a Hydra config."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hybridnas.config import (
    CHOICES,
    ConfigError,
    DataConfig,
    EvolutionConfig,
    ModelConfig,
    SearchConfig,
    SearchRun,
    SpaceConfig,
    TrainConfig,
    TrainRun,
    check_config,
    choices,
)
from hybridnas.config.data import VideoData, VideoLayout
from hybridnas.data.layouts import LAYOUTS
from hybridnas.engine.distributed import DistContext
from hybridnas.engine.tracking import Tracker

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _compose(tool: str, *overrides: str):
    with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
        return compose(tool, overrides=list(overrides))


def test_every_stage_config_from_python_defaults_equals_the_recipe_through_hydra():
    assert SearchRun.from_cfg(_compose("search", "recipe=sdas_video")) == SearchRun()
    train = TrainRun.from_cfg(_compose("train", "recipe=train_builtin", "genotype=builtin"))
    assert train == TrainRun(
        engine="none",
        model=ModelConfig(genotype="builtin", num_cells=3, stem_stride=(1, 2, 2)),
        train=TrainConfig(epochs=4),
    )
    assert {f.name for f in fields(EvolutionConfig)} >= {"fitness", "proxy", "faithfulness"}
    csv = DataConfig.from_cfg(_compose("train", "data=csv", "data.root=videos").data)
    assert csv == DataConfig(
        dataset=VideoData(name="csv", root="videos", size=32, scale=(36, 46)),
        batch_size=8,
        workers=2,
    )


def test_components_take_their_defaults_from_the_schema():
    from hybridnas.groundtruth.recipe import GroundTruthRecipe
    from hybridnas.search.differentiable.sdas import FixSchedule
    from hybridnas.space.macro import MacroSpec
    from hybridnas.space.supernet import SupernetConfig

    space, data, macro = SpaceConfig(), DataConfig(), MacroSpec()
    skeleton = ("stage_widths", "num_cells", "stem_channels", "stem_stride", "reduction_stride")
    for name in skeleton:
        assert getattr(macro, name) == getattr(space, name) == getattr(SupernetConfig(), name)
    assert (macro.frames, macro.size) == (data.frames, data.size)
    assert tuple(SupernetConfig().op_names) == space.op_names and SupernetConfig().steps == 3
    recipe = GroundTruthRecipe()
    assert (recipe.op_names, recipe.stage_widths, recipe.num_search_val) == (
        space.op_names,
        space.stage_widths,
        data.dataset.num_search_val,
    )
    with pytest.raises(TypeError):
        FixSchedule(epochs=10)  # no defaults of its own: it takes search.*
    schedule = FixSchedule.from_config(SearchConfig())
    assert (schedule.warmup_epochs, schedule.decide_at) == (1, 0.5)


def test_the_config_package_imports_no_implementation_module():
    code = (
        "import sys, hybridnas.config; "
        "print(sorted(m for m in sys.modules if m.startswith('hybridnas.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m for m in eval(out.stdout) if not m.startswith("hybridnas.config")}
    assert loaded <= {"hybridnas.compat"}, loaded


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("search.epochz=3", "unknown config key 'search.epochz'"),
        ("search.schedule=cosinus", "config key 'search.schedule' must be one of"),
        ("evolution.fitness.rerank_top=0", "evolution.fitness.rerank_top must be >= 1"),
        ("evolution.faithfulness.samples=3", "evolution.faithfulness.samples must be 0 or >= 8"),
        ("data.task=which_flies", "config key 'data.task' must be one of"),
    ],
)
def test_a_wrong_key_or_value_is_refused_in_one_line(override, message):
    cfg = _compose("search", "recipe=sdas_video")
    OmegaConf.set_struct(cfg, False)
    key, value = override.split("=")
    OmegaConf.update(cfg, key, int(value) if value.isdigit() else value)
    with pytest.raises(ConfigError) as err:
        SearchRun.from_cfg(cfg)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_choice_lists_come_from_the_literal_types():
    assert CHOICES["search.schedule"] == ("linear", "cosine", "step", "none")
    assert CHOICES["evolution.fitness.rerank_scorer"] == ("proxy", "oneshot", "none")
    cfg = _compose("search", "evolution.fitness.rerank_scorer=none")
    check_config(cfg, "search")
    assert SearchRun.from_cfg(cfg).evolution.fitness.rerank_scorer is None
    assert set(choices(VideoLayout)) == set(LAYOUTS)


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
    with pytest.raises(FileNotFoundError, match="needs data.root"):
        VideoData(name="csv").require_root()


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
