"""Checks on a composed Hydra config before any work starts, and the run folder."""

from __future__ import annotations

import logging
import time
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from omegaconf import DictConfig, ListConfig, OmegaConf

from hybridnas.config.base import ConfigError, choices
from hybridnas.config.data import BuiltinData, VideoData, dataset_config
from hybridnas.config.search import SearchRun, Stage, Tracking
from hybridnas.config.store import data_defaults, tool_defaults
from hybridnas.config.train import TrainRun

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _literal_keys(cls: type, prefix: str = "") -> dict[str, tuple]:
    """``{"search.method": ("sdas", "darts"), ...}``: the choices of every Literal field of
    ``cls`` and its nested sections, by config key."""
    out: dict[str, tuple] = {}
    for name, kind in get_type_hints(cls).items():
        if is_dataclass(kind):
            out |= _literal_keys(kind, f"{prefix}{name}.")
        elif allowed := choices(kind):
            out[f"{prefix}{name}"] = allowed
    return out


# every choice a tool config holds, derived from the schema's Literal types
CHOICES = {
    **_literal_keys(SearchRun),
    **_literal_keys(TrainRun),
    "tracking": choices(Tracking),
    "stage": choices(Stage),
}


def _leaves(node: Any, prefix: str = ""):
    if isinstance(node, DictConfig):
        for key in node:
            yield from _leaves(node._get_node(key), f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | ListConfig):
        return "list"
    return type(value).__name__


def check_types(cfg: DictConfig, schema: DictConfig, skip: tuple[str, ...] = ("hydra",)) -> None:
    """Every key of ``cfg`` must exist in ``schema`` with a value of the same kind.

    Hydra already refuses unknown keys given on the command line; this also catches keys a
    recipe file invents and values of the wrong type (``search.epochs=ten``).
    """
    for key, _ in _leaves(cfg):
        if key.split(".")[0] in skip:
            continue
        value = OmegaConf.select(cfg, key, throw_on_missing=False)
        if OmegaConf.select(schema, key, default="__absent__") == "__absent__":
            raise ConfigError(f"unknown config key '{key}'")
        expected = OmegaConf.select(schema, key)
        if expected is None or value is None:
            continue
        if _kind(expected) != _kind(value) and not (
            _kind(expected) == "number" and _kind(value) == "number"
        ):
            raise ConfigError(
                f"config key '{key}' expects a {_kind(expected)} (like {expected!r}), got {value!r}"
            )
        if _kind(expected) == "number" and isinstance(expected, int) and isinstance(value, float):
            raise ConfigError(f"config key '{key}' expects an integer, got {value!r}")


def check_tool_choices(cfg: DictConfig) -> None:
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and value not in allowed:
            raise ConfigError(f"config key '{key}' must be one of {list(allowed)}, got {value!r}")


def load_schema(tool: str) -> DictConfig:
    """The keys a tool understands: its primary YAML's own keys over the schema's defaults
    (``search_schema`` or ``train_schema``), and every dataset's keys under ``data``."""
    schema = OmegaConf.load(RECIPES / f"{tool}.yaml")
    schema.pop("defaults", None)
    sections = {"search": SearchRun, "train": TrainRun}
    base = tool_defaults(sections[tool]()) if tool in sections else {}
    schema = OmegaConf.merge(base, schema)
    schema.data = OmegaConf.merge(data_defaults(VideoData()), data_defaults(BuiltinData()))
    return schema


def check_config(cfg: DictConfig, tool: str) -> None:
    """Refuse a config before any training: wrong tool, unknown key, wrong type, bad choice."""
    if cfg.get("tool") != tool:
        raise ConfigError(
            f"recipe '{cfg.get('recipe_name')}' is for tools/{cfg.get('tool')}.py, "
            f"not tools/{tool}.py"
        )
    check_types(cfg, load_schema(tool))
    check_tool_choices(cfg)


def check_data_root(cfg: DictConfig) -> None:
    """A clear error before any work when an on-disk dataset has no (or an empty) root."""
    data = dataset_config(cfg.data)
    if isinstance(data, VideoData):
        data.require_root()


# Keys a resumed run may change: they say how to run, not what is computed.
RUNTIME_KEYS = (
    "resume",
    "overwrite",
    "out_dir",
    "run_name",
    "recipe_name",
    "threads",
    "tracking",
    "wandb_project",
    "data.workers",
    "data.cache_dir",
    "search.ckpt_every_steps",
    "search.log_every_steps",
    "train.ckpt_every_steps",
    "train.log_every_steps",
)


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out |= _flat(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: node}


def config_changes(cfg: DictConfig, run_dir: Path) -> list[str]:
    """``key: old -> new`` for each setting that differs from the run's config.yaml, except
    :data:`RUNTIME_KEYS` (keys only one side has are skipped: another code version wrote it)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return []
    old = _flat(OmegaConf.to_container(OmegaConf.load(path), resolve=True))
    new = _flat(OmegaConf.to_container(cfg, resolve=True))
    return [
        f"{k}: {old[k]!r} -> {new[k]!r}"
        for k in sorted(old.keys() & new.keys())
        if old[k] != new[k] and k not in RUNTIME_KEYS
    ]


def check_run_dir(cfg: DictConfig, strict_resume: bool) -> list[str]:
    """Refuse, before anything is written, a run that would clobber another, a resume with
    nothing to resume, and (``strict_resume``) a resume with other settings. Returns the
    changed settings of an accepted resume."""
    run_dir = Path(cfg.out_dir)
    has_ckpt = any((run_dir / "checkpoints").glob("*.pt"))
    if cfg.resume and cfg.overwrite:
        raise ConfigError("resume=true and overwrite=true contradict each other: pick one")
    if has_ckpt and not cfg.resume and not cfg.overwrite:
        raise ConfigError(
            f"{run_dir} already holds a run: pass resume=true to continue it, overwrite=true to "
            "start afresh, or another run_name"
        )
    if not cfg.resume:
        return []
    if not has_ckpt:
        raise ConfigError(
            f"resume=true but {run_dir} holds no checkpoint (checkpoints/*.pt) to resume from: "
            "drop resume=true to start a new run there"
        )
    changes = config_changes(cfg, run_dir)
    if changes and strict_resume:
        raise ConfigError(
            f"resume=true: {run_dir} was started with other settings ({'; '.join(changes)}): "
            "resume with the settings it was started with, or start afresh (overwrite=true or "
            "another out_dir)"
        )
    return changes


def _move_aside(run_dir: Path) -> Path:
    """Rename the previous run's folder to <name>.replaced-<time> and recreate it empty."""
    run_dir = run_dir.resolve()
    if Path.cwd().resolve().is_relative_to(run_dir):
        raise ConfigError(f"overwrite=true would move {run_dir}, the working directory: cd out")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}")
    n = 1
    while dest.exists():
        dest, n = run_dir.with_name(f"{run_dir.name}.replaced-{stamp}-{n}"), n + 1
    run_dir.rename(dest)
    run_dir.mkdir()
    reopen_run_logs(run_dir)
    return dest


def _run_logs(run_dir: Path) -> list[logging.FileHandler]:
    """The open log files inside ``run_dir`` (Hydra's job log, opened before the tool runs)."""
    run_dir = Path(run_dir).resolve()
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).is_relative_to(run_dir)
    ]


def _holds_a_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds anything besides the log file this very process just opened."""
    if not run_dir.is_dir():
        return False
    own = {Path(h.baseFilename) for h in _run_logs(run_dir)}
    files = (p for p in run_dir.iterdir() if p.name != "run.lock")  # this process's own lock
    return any(p.resolve() not in own or p.stat().st_size > 0 for p in files)


def reopen_run_logs(run_dir: Path) -> None:
    """Point the log files opened inside ``run_dir`` at that path again: after the folder was
    moved aside their open handles still write into the moved copy."""
    for handler in _run_logs(run_dir):
        handler.close()  # reopened at its path on the next record (append mode)


def _write_hydra_record(cfg: DictConfig, run_dir: Path) -> None:
    """What Hydra's ``output_subdir`` would hold, written only once the run is accepted
    (Hydra writes it before the tool can refuse the run)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    folder = run_dir / ".hydra"
    folder.mkdir(exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml")
    OmegaConf.save(HydraConfig.instance().cfg, folder / "hydra.yaml")
    OmegaConf.save(HydraConfig.get().overrides.task, folder / "overrides.yaml")


def prepare_run_dir(cfg: DictConfig, is_main: bool, strict_resume: bool = True) -> Path:
    """Check the run folder (:func:`check_run_dir`), then create it and write the resolved
    config; ``overwrite=true`` first moves the previous run aside, so the new one starts in a
    clean folder. Call it only once everything else about the run has been checked."""
    changes = check_run_dir(cfg, strict_resume)
    run_dir = Path(cfg.out_dir)
    if not is_main:
        return run_dir
    if cfg.overwrite and _holds_a_run(run_dir):
        print(f"[hybridnas] overwrite=true: moved the previous run to {_move_aside(run_dir)}")
    if changes:
        print(f"[hybridnas] resuming with changed settings: {'; '.join(changes)}")
    for stale in (run_dir / "checkpoints").glob(".*.tmp"):  # from a save killed mid-write
        stale.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    _write_hydra_record(cfg, run_dir)
    return run_dir
