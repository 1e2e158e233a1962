"""CONet-style channel-width search: EVBMF rank of conv weights and the grow/shrink rule.

Hosseini & Plataniotis (2021), "CONet: Channel Optimization for Convolutional Neural Networks".
Per layer, the rank is the share of singular values EVBMF keeps in the conv weight unfolded by
output and by input channels; a stage's width grows while its rank keeps rising during a trial
(slope >= delta) and the kept mapping stays well conditioned (condition <= mu), else shrinks.
"""

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from hybridnas.search.scorers.evbmf import EVBMFResult, evbmf
from hybridnas.space.macro import round_width


def _unfoldings(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight (Co, Ci, *k) -> (Co x Ci*prod(k), Ci x Co*prod(k)); Linear (Co, Ci) works too."""
    if weight.dim() < 2:
        raise ValueError(
            f"need a weight with >= 2 dims (Co, Ci, *k), got shape {tuple(weight.shape)}"
        )
    w = weight.detach().cpu().double()
    by_out = w.reshape(w.shape[0], -1)
    by_in = w.transpose(0, 1).reshape(w.shape[1], -1)
    return by_out, by_in


def _factorise(weight: torch.Tensor) -> tuple[EVBMFResult, EVBMFResult]:
    """EVBMF of both unfoldings of a conv weight."""
    by_out, by_in = _unfoldings(weight)
    return evbmf(by_out), evbmf(by_in)


def layer_rank(weight: torch.Tensor) -> float:
    """Mean over the two unfoldings of (EVBMF rank / full rank); weight (Co, Ci, *k).

    In practice below 1/(1 + L/M) per unfolding (EVB keeps at most ceil(L/(1+L/M)) - 1 values),
    and ~0 for an i.i.d. freshly initialised weight, which EVBMF reads as pure noise.
    """
    return float(np.mean([r.rank / r.full_rank for r in _factorise(weight)]))


def mapping_condition(weight: torch.Tensor) -> float:
    """Mean over the two unfoldings of max/min kept singular value (EVB estimates); >= 1.

    An unfolding with nothing kept carries no information on conditioning and counts as 1.
    """
    conds = [
        float(r.singular_values.max() / r.singular_values.min()) if r.rank > 0 else 1.0
        for r in _factorise(weight)
    ]
    return float(np.mean(conds))


def rank_slope(ranks: Sequence[float]) -> float:
    """Rank average slope over a trial's epochs: (max_e r_e - r_0) / (argmax_e r_e + 1e-4)."""
    if len(ranks) == 0:
        raise ValueError("rank_slope needs at least one epoch's rank")
    r = np.asarray(ranks, dtype=np.float64)
    best = int(np.argmax(r))
    return float((r[best] - r[0]) / (best + 1e-4))


@dataclass
class ChannelScaler:
    """Grow/shrink rule over width groups (stages), with a step size phi per group.

    A group grows by (1 + phi) unless its rank slope < delta or its mapping condition > mu, in
    which case it shrinks by (1 - phi). Its phi halves when the direction flips, and also when the
    rounded, clamped width cannot move (so a group stuck at a bound still converges). A group
    with phi < gamma is frozen; the search is done when every known group is frozen.
    """

    phi0: float = 0.2
    delta: float = 0.0075
    mu: float = 10.0
    gamma: float = 0.01
    min_width: int = 16
    max_width: int = 256
    divisor: int = 4
    phi: dict[str, float] = field(default_factory=dict)
    direction: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.min_width <= self.max_width:
            raise ValueError(
                f"need 0 < min_width <= max_width, got {self.min_width}, {self.max_width}"
            )

    def _clamp(self, width: float) -> int:
        return int(min(self.max_width, max(self.min_width, round_width(width, self.divisor))))

    def _step_group(self, name: str, slope: float, condition: float, width: int) -> int:
        """New width of one group; updates its phi and direction."""
        phi = self.phi.setdefault(name, self.phi0)
        if phi < self.gamma:
            return width
        move = -1 if (slope < self.delta or condition > self.mu) else 1
        if self.direction.get(name, move) != move:
            phi /= 2
        new = self._clamp(width * (1 + move * phi))
        if new == width:
            phi /= 2
        self.phi[name], self.direction[name] = phi, move
        return new

    def step(
        self,
        group_slopes: Mapping[str, float],
        group_conditions: Mapping[str, float],
        widths: Mapping[str, int],
    ) -> dict[str, int]:
        """One trial's update: {group: slope}, {group: condition}, {group: width} -> new widths.

        Groups missing from group_conditions count as well conditioned.
        """
        return {
            name: self._step_group(
                name, group_slopes[name], group_conditions.get(name, 1.0), int(width)
            )
            for name, width in widths.items()
        }

    @property
    def done(self) -> bool:
        """True once some group has been seen and every group's phi is below gamma."""
        return bool(self.phi) and all(p < self.gamma for p in self.phi.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-able state (config, per-group phi and last direction)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> "ChannelScaler":
        """Inverse of :meth:`to_dict`."""
        state = dict(state)
        state["phi"] = {str(k): float(v) for k, v in state.get("phi", {}).items()}
        state["direction"] = {str(k): int(v) for k, v in state.get("direction", {}).items()}
        return cls(**state)
