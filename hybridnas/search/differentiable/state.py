"""What the differentiable stage's loop mutates (``SearchState``), apart from the loop, so the
edge-fixing steps (fixing.py) can read it without importing the loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hybridnas.config import SearchRun
from hybridnas.engine.backend import WeightTrainer
from hybridnas.engine.distributed import DistContext
from hybridnas.measure.latency_table import LatencyTable
from hybridnas.search.differentiable.architect import Architect, LossFn
from hybridnas.search.differentiable.sdas import FixSchedule
from hybridnas.space.supernet import Architecture, Supernet


@dataclass
class SearchState:
    """Everything the loop mutates; ``checkpoint_state`` / ``restore`` make it resumable."""

    cfg: SearchRun
    ctx: DistContext
    run_dir: Path
    supernet: Supernet
    arch: Architecture
    trainer: WeightTrainer
    architect: Architect
    schedule: FixSchedule
    train_loader: Any
    val_loader: Any
    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    alpha_history: list[torch.Tensor] = field(default_factory=list)
    fix_events: list[dict] = field(default_factory=list)
    epoch_times: list[float] = field(default_factory=list)
    running: dict = field(default_factory=dict)
    rank_digests: list[str] = field(default_factory=list)
    loss_fn: LossFn = F.cross_entropy
    latency_table: LatencyTable | None = None
