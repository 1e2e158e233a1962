"""``search.nse.*``: the keys of neural search-space evolution (``differentiable.nse``), each
refused in one line when out of range; ``SearchConfig.nse`` holds one."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from hybridnas.config import ConfigError
from hybridnas.ops.registry import is_op, list_ops


@dataclass(frozen=True)
class NSEConfig:
    """``search.nse.*``: neural search-space evolution (``differentiable.nse``). ``rounds`` 0 is
    a plain search; ``pool`` None is every registered op."""

    rounds: int = 0
    pool: tuple[str, ...] | None = None
    batch: int = 4
    keep: int = 4
    multi_branch_k: int = 1

    def __post_init__(self) -> None:
        if self.pool is not None:
            object.__setattr__(self, "pool", tuple(self.pool))
        for key, low, high in (
            ("rounds", 0, 32),
            ("batch", 1, 64),
            ("keep", 1, 64),
            ("multi_branch_k", 1, 4),
        ):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    f"search.nse.{key} must be an integer in [{low}, {high}], got {value!r}"
                )
        self._check_pool()
        if self.multi_branch_k > 1 and self.rounds == 0:
            raise ConfigError("search.nse.multi_branch_k > 1 needs search.nse.rounds >= 1")

    def _check_pool(self) -> None:
        unknown = [op for op in self.pool or () if not is_op(op)]
        if unknown:
            raise ConfigError(f"search.nse.pool: unknown op(s) {unknown}; known: {list_ops()}")
        ops = self.candidates()
        if len(set(ops)) != len(ops):
            raise ConfigError(f"search.nse.pool lists an op twice: {list(self.pool)}")
        if self.rounds and self.keep + self.batch > len(ops):
            raise ConfigError(
                f"search.nse.keep + search.nse.batch = {self.keep + self.batch} must be at most "
                f"the pool's {len(ops)} ops other than none"
            )

    def candidates(self) -> tuple[str, ...]:
        """The pool's ops other than ``none`` (which every round's supernet holds when the
        pool does): the ops rounds draw, rank and keep."""
        pool = tuple(list_ops()) if self.pool is None else self.pool
        return tuple(op for op in pool if op != "none")

    @property
    def has_none(self) -> bool:
        return self.pool is None or "none" in self.pool

    @classmethod
    def from_node(cls, node: Any) -> NSEConfig:
        """From a mapping (a DictConfig too); an unknown key is named."""
        d = (
            OmegaConf.to_container(node, resolve=True)
            if isinstance(node, DictConfig)
            else dict(node)
        )
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise ConfigError(f"unknown config key 'search.nse.{key}'")
        return cls(**d)
