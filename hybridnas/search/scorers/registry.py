"""The scorer interface: what a scorer may look at, and the registry of names.

::

    ctx = ScoreContext(x=clips, y=labels)              # clips (N, C, T, H, W), a few minibatches
    score = get_scorer("synflow")(genotype, ctx)       # float, higher = predicted better

Every scorer builds the candidate's network with a seed fixed by the genotype (``network_for``,
so a score is a function of the genotype and the context only) and returns one float. The
scorers register themselves on import (zero_cost.py, temporal.py, proxy_variants.py); the
package's ``__init__`` imports all three, so every name is known once anything of
``hybridnas.search.scorers`` is imported.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from hybridnas.space.genotype import Genotype
from hybridnas.space.network import Network, build_network

Scorer = Callable[[Genotype, "ScoreContext"], float]
_SCORERS: dict[str, Scorer] = {}


@dataclass
class ScoreContext:
    """What scorers may look at: training clips x (N, C, T, H, W) with labels y (N,), split
    into minibatches of ``batch_size``; held-out clips for ``oneshot`` and the trained scorers;
    the trained supernet's state with its ``steps`` and ``op_names`` for ``oneshot``; every
    training clip a trained scorer may cycle through (``train_x`` / ``train_y``; None: x, y).
    ``trained`` keeps what trained scorers computed on this context, so an ensemble whose
    members share a training (proxy_1cycle and proxy_1cycle_x2) runs it once; it is not an
    init field, so ``dataclasses.replace`` (other data, another seed) starts an empty one."""

    x: torch.Tensor
    y: torch.Tensor
    batch_size: int = 16
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    supernet_state: Mapping[str, torch.Tensor] | None = None
    supernet_steps: int = 3
    supernet_ops: Sequence[str] = field(default_factory=tuple)
    seed: int = 0
    train_x: torch.Tensor | None = None
    train_y: torch.Tensor | None = None
    trained: dict[tuple[str, str], float] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def batches(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The first ``n`` minibatches (fewer if the clips run out)."""
        b = self.batch_size
        return [
            (self.x[i : i + b], self.y[i : i + b]) for i in range(0, b * n, b) if i < len(self.x)
        ]


def register_scorer(name: str) -> Callable[[Scorer], Scorer]:
    def wrap(fn: Scorer) -> Scorer:
        _SCORERS[name] = fn
        return fn

    return wrap


def list_scorers() -> list[str]:
    return sorted(_SCORERS)


def get_scorer(name: str) -> Scorer:
    """The scorer registered as ``name``; ``ensemble:a+b`` is only valid with ``rank_many``."""
    if name not in _SCORERS:
        raise ValueError(f"unknown scorer {name!r}; known: {', '.join(list_scorers())}")
    return _SCORERS[name]


def network_for(genotype: Genotype, ctx: ScoreContext) -> Network:
    """The candidate's network at a seed fixed by its genotype (same score on every call)."""
    torch.manual_seed((zlib.crc32(genotype.key().encode()) ^ ctx.seed) % 2**31)
    return build_network(genotype)


# ---------------------------------------------------------------- populations


def score_many(name: str, genotypes: Sequence[Genotype], ctx: ScoreContext) -> list[float]:
    """Scores of ``genotypes`` (ensembles as mean rank: ``ensemble:synflow+naswot``)."""
    if name.startswith("ensemble:"):
        return rank_many([score_many(n, genotypes, ctx) for n in name[9:].split("+")])
    fn = get_scorer(name)
    return [fn(g, ctx) for g in genotypes]


def rank_many(columns: Sequence[Sequence[float]]) -> list[float]:
    """Mean rank (0 = worst) of each item over several score columns."""
    ranks = np.mean([stats.rankdata(np.asarray(c, dtype=float)) for c in columns], axis=0)
    return [float(r) for r in ranks]


def load_supernet_context(ctx: ScoreContext, run_dir: str | Path) -> ScoreContext:
    """Fill ``ctx``'s supernet fields from a search run folder (its last search checkpoint,
    loaded with weights_only=True, and the steps / op names of its config.yaml)."""
    import yaml

    from hybridnas.engine.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    ctx.supernet_state = load_checkpoint(run_dir / "checkpoints" / "search_last.pt")["weights"][
        "model"
    ]
    ctx.supernet_steps = int(cfg["model"]["steps"])
    ctx.supernet_ops = tuple(cfg["model"]["op_names"])
    return ctx
