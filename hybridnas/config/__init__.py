"""The one config schema: frozen dataclasses (each default declared once, ``Literal`` choices
checked in ``base.check_choices``), registered in Hydra's ConfigStore, and the checks on a
composed Hydra config and its run folder. Imports no implementation module."""

from hybridnas.config.base import ConfigError, check_choices, choices
from hybridnas.config.checks import (
    CHOICES,
    RECIPES,
    RUNTIME_KEYS,
    check_config,
    check_data_root,
    check_run_dir,
    check_types,
    config_changes,
    load_schema,
    prepare_run_dir,
    reopen_run_logs,
)
from hybridnas.config.data import BuiltinData, DataConfig, VideoData, dataset_config
from hybridnas.config.search import (
    DEFAULT_OPS,
    EvolutionConfig,
    FaithfulnessConfig,
    FitnessConfig,
    ProxyConfig,
    SearchConfig,
    SearchRun,
    SpaceConfig,
)
from hybridnas.config.store import register_schemas
from hybridnas.config.train import ModelConfig, PatchMixConfig, TrainConfig, TrainRun

register_schemas()

__all__ = [
    "CHOICES",
    "DEFAULT_OPS",
    "RECIPES",
    "RUNTIME_KEYS",
    "BuiltinData",
    "ConfigError",
    "DataConfig",
    "EvolutionConfig",
    "FaithfulnessConfig",
    "FitnessConfig",
    "ModelConfig",
    "PatchMixConfig",
    "ProxyConfig",
    "SearchConfig",
    "SearchRun",
    "SpaceConfig",
    "TrainConfig",
    "TrainRun",
    "VideoData",
    "check_choices",
    "check_config",
    "check_data_root",
    "check_run_dir",
    "check_types",
    "choices",
    "config_changes",
    "dataset_config",
    "load_schema",
    "prepare_run_dir",
    "register_schemas",
    "reopen_run_logs",
]
