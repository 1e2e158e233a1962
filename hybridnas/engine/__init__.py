"""Training engine: checkpoints, experiment tracking, distributed helpers."""

from hybridnas.engine.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)

__all__ = [
    "CheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]
