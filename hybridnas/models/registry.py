"""The model registry: every network the tools can train, by name (timm's pattern).

A builder is a keyword-only ``create_<name>(*, num_classes, ...)`` function returning an
``nn.Module`` for (B, C, T, H, W) clips -> (B, num_classes) logits; ``@register_model(name,
spec_keys=...)`` files it under ``name`` and says which flat ``model.*`` settings it reads
(``spec_keys``: the ModelSpec field -> the builder's keyword), so a config builds it without an
if-chain (see :func:`hybridnas.models.spec.build_model`). ``create_model(name, **kwargs)``
calls the builder with ``kwargs`` as given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from hybridnas.config import ConfigError

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class ModelEntry:
    """One registered network: its builder and the ModelSpec fields it reads."""

    name: str
    builder: Callable[..., nn.Module]
    spec_keys: Mapping[str, str] = field(default_factory=dict)  # ModelSpec field -> keyword


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, *, spec_keys: Mapping[str, str] | None = None
) -> Callable[[Builder], Builder]:
    """Decorator: file ``builder`` under ``name``; ``spec_keys`` maps each ModelSpec field it
    reads (``frames``, ``size``, ``dropout``, ``c3d_width`` ...) to its keyword."""

    def add(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, builder, dict(spec_keys or {}))
        return builder

    return add


def list_models() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    """The entry of ``name``; a :class:`ConfigError` listing the registered names otherwise."""
    if name not in _REGISTRY:
        raise ConfigError(
            f"model.name {name!r} is not a registered model: choose one of {list_models()}"
        )
    return _REGISTRY[name]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """The network ``name`` built by its registered builder with ``kwargs``."""
    return model_entry(name).builder(**kwargs)
