"""Checks on a composed Hydra config before any work starts, and the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

RECIPES = Path(__file__).resolve().parent.parent / "recipes"

CHOICES = {
    "engine": ("none", "ddp", "deepspeed"),
    "tracking": ("auto", "online", "offline", "none"),
    "stage": ("hybrid", "differentiable", "evolution"),
    "zero_stage": (0, 1, 2, 3),
    "search.method": ("sdas", "darts"),
    "search.schedule": ("linear", "cosine", "step", "none"),
    "search.confidence": ("top1", "margin"),
    "search.order": (1, 2),
}


class ConfigError(ValueError):
    """A configuration key is unknown, of the wrong type or out of range; names the key."""


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


def check_choices(cfg: DictConfig) -> None:
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is not None and value not in allowed:
            raise ConfigError(f"config key '{key}' must be one of {list(allowed)}, got {value!r}")


def load_schema(tool: str) -> DictConfig:
    """The primary YAML of a tool plus every data config: the keys it understands."""
    schema = OmegaConf.load(RECIPES / f"{tool}.yaml")
    schema.pop("defaults", None)
    data = [OmegaConf.load(p) for p in sorted((RECIPES / "data").glob("*.yaml"))]
    schema.data = OmegaConf.merge(*data) if data else {}
    return schema


def check_config(cfg: DictConfig, tool: str) -> None:
    """Refuse a config before any training: wrong tool, unknown key, wrong type, bad choice."""
    if cfg.get("tool") != tool:
        raise ConfigError(
            f"recipe '{cfg.get('recipe_name')}' is for tools/{cfg.get('tool')}.py, "
            f"not tools/{tool}.py"
        )
    check_types(cfg, load_schema(tool))
    check_choices(cfg)


def prepare_run_dir(cfg: DictConfig, is_main: bool) -> Path:
    """Create the run folder and write the resolved config; refuse to clobber a run."""
    run_dir = Path(cfg.out_dir)
    has_ckpt = any((run_dir / "checkpoints").glob("*.pt")) if run_dir.exists() else False
    if has_ckpt and not cfg.resume and not cfg.overwrite:
        raise ConfigError(
            f"{run_dir} already holds a run: pass resume=true to continue it, overwrite=true to "
            "start afresh, or another run_name"
        )
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if has_ckpt and cfg.overwrite and not cfg.resume:
            for ckpt in (run_dir / "checkpoints").glob("*.pt"):
                ckpt.unlink()
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    return run_dir
