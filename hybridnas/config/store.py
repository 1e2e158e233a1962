"""The schema's defaults registered in Hydra's ConfigStore, so the primary YAMLs name them
instead of repeating them: ``search_schema`` and ``train_schema`` (every section a tool's
stages take, at the dataclasses' defaults) and ``data/builtin_schema``, ``data/video_schema``.

The nodes are plain (untyped) trees: OmegaConf cannot type ``Literal`` fields, and a typed
node would make Hydra refuse a bad value in a multi-line error before the tool runs. The tool
refuses it instead, in one line naming the key (``check_config``, the dataclasses).
"""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore

from hybridnas.config.data import BuiltinData, DataConfig, VideoData
from hybridnas.config.search import SearchRun
from hybridnas.config.train import TrainRun


def yaml_value(value: Any) -> Any:
    """A default as a YAML tree: dataclasses as mappings, tuples as lists."""
    if is_dataclass(value):
        value = asdict(value)
    if isinstance(value, dict):
        return {k: yaml_value(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [yaml_value(v) for v in value]
    return value


def data_defaults(dataset: BuiltinData | VideoData) -> dict[str, Any]:
    """``data.*`` of a dataset at its defaults, with the loader's keys."""
    loader = DataConfig(dataset=dataset)
    return yaml_value({**asdict(dataset), "batch_size": loader.batch_size, "workers": 0})


def tool_defaults(run: SearchRun | TrainRun) -> dict[str, Any]:
    """Every key of a tool's stage config but ``data`` at its default."""
    return {f.name: yaml_value(getattr(run, f.name)) for f in fields(run) if f.name != "data"}


SCHEMAS = {
    ("", "search_schema"): lambda: tool_defaults(SearchRun()),
    ("", "train_schema"): lambda: tool_defaults(TrainRun()),
    ("data", "builtin_schema"): lambda: data_defaults(BuiltinData()),
    ("data", "video_schema"): lambda: data_defaults(VideoData()),
}


def register_schemas() -> None:
    """Store the nodes (idempotent: a second call stores the same nodes again)."""
    store = ConfigStore.instance()
    for (group, name), node in SCHEMAS.items():
        store.store(group=group or None, name=name, node=node())
