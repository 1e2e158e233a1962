"""Training engine: checkpoints, experiment tracking, distributed helpers; the run scaffold
of the tools (``engine.run.open_run``) and the one collective save/restore of the loops
(``engine.resume``)."""

from hybridnas.engine.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from hybridnas.engine.distributed import (
    DistContext,
    all_gather_object,
    all_reduce_mean_,
    barrier,
    broadcast_,
    build_deepspeed_engine,
    cleanup,
    init_distributed,
    seed_everything,
    wrap_ddp,
)
from hybridnas.engine.tracking import Tracker, read_wandb_history, read_wandb_records

__all__ = [
    "CheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "DistContext",
    "all_gather_object",
    "all_reduce_mean_",
    "barrier",
    "broadcast_",
    "build_deepspeed_engine",
    "cleanup",
    "init_distributed",
    "seed_everything",
    "wrap_ddp",
    "Tracker",
    "read_wandb_history",
    "read_wandb_records",
]
