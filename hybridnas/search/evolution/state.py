"""What the evolutionary stage works on: ``EvolutionState`` (what a cycle changes, saved every
cycle) and ``Context`` (what every step reads and nothing changes), apart from the loop so its
output writers (outputs.py) can read them without importing it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hybridnas.config import SearchRun
from hybridnas.engine.distributed import DistContext
from hybridnas.measure.latency_table import LatencyTable
from hybridnas.search.evolution.fitness import LatencyBudget, Scoring
from hybridnas.search.evolution.macro_mutations import MacroRanges
from hybridnas.search.evolution.mutations import Guidance
from hybridnas.search.scorers.proxy import ProxyConfig, ProxyData


@dataclass
class EvolutionState:
    """Everything a cycle changes. Individuals are plain dicts (checkpoint-friendly)."""

    population: list[dict] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    cycle: int = 0
    scaler: dict = field(default_factory=dict)
    cycle_times: list[float] = field(default_factory=list)
    base_step: int = 0

    def seen(self) -> dict[str, dict]:
        return {h["key"]: h for h in self.history}

    def best(self) -> dict:
        """Best of everything evaluated by the cheap fitness (first one wins a tie)."""
        return max(self.history, key=lambda h: h["fitness"])

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Context:
    """What every step needs and nothing changes: config, data, guidance, supernet weights,
    and how candidates are scored (``scoring``)."""

    cfg: SearchRun
    ctx: DistContext
    run_dir: Path
    proxy: ProxyConfig
    data: ProxyData
    guidance: Guidance
    supernet: tuple | None
    budget: LatencyBudget | None
    scoring: Scoring
    table: LatencyTable | None = None
    macro: MacroRanges = field(default_factory=MacroRanges)
