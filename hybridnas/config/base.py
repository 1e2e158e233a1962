"""What every config section shares: the error it raises, its ``Literal`` choices checked in
one place, and building a section from a Hydra node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A configuration key is unknown, of the wrong type or out of range; names the key."""


def choices(kind: Any) -> tuple:
    """The values a ``Literal`` type (or ``Literal | None``) allows, None left out."""
    if get_origin(kind) is Literal:
        return get_args(kind)
    return tuple(v for arg in get_args(kind) for v in choices(arg))


def check_choices(section: Any, prefix: str) -> None:
    """Refuse, naming the key, a field of ``section`` outside its ``Literal`` choices."""
    for name, kind in get_type_hints(type(section)).items():
        allowed = choices(kind)
        value = getattr(section, name)
        if allowed and value is not None and value not in allowed:
            key = f"{prefix}.{name}".lstrip(".")
            raise ConfigError(f"config key '{key}' must be one of {list(allowed)}, got {value!r}")


def plain(node: Any) -> dict[str, Any]:
    """A Hydra node (or mapping) as a dict of plain values, interpolations resolved."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node)


def build(cls: type, node: Mapping[str, Any] | DictConfig, prefix: str, **nested: Any) -> Any:
    """``cls(**node)`` with lists made tuples; an unknown key is a ConfigError naming it."""
    known = {f.name for f in fields(cls)}
    kw = {}
    for key, value in plain(node).items():
        if key not in known:
            raise ConfigError(f"unknown config key '{prefix}.{key}'")
        kw[key] = tuple(value) if isinstance(value, list) else value
    return cls(**{**kw, **nested})
