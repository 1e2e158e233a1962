"""Training engine: checkpoints, experiment tracking, distributed helpers."""

from hybridnas.engine.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from hybridnas.engine.tracking import Tracker, read_wandb_history, read_wandb_records

__all__ = [
    "CheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "Tracker",
    "read_wandb_history",
    "read_wandb_records",
]
