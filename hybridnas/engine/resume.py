"""The one collective save/restore of a resumable loop (differentiable search, evolution,
training): every rank takes part, rank 0 writes, every rank resumes the same checkpoint.

:func:`save_resumable` adds each rank's RNG state to the loop's state, refuses NaN/inf on
every rank together, and publishes the file atomically with its manifest (and the DeepSpeed
engine part when the loop trains through one; see :func:`checkpoint.save_multipart`).
:func:`restore_resumable` has rank 0 verify the manifest (falling back to the previous
checkpoint when the last one is torn), loads it with ``weights_only=True`` on every rank, hands
it to the loop's ``put_back``, then the engine part, then restores this rank's RNG streams.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hybridnas.engine.backend import WeightTrainer
from hybridnas.engine.checkpoint import (
    ENGINE_DIR,
    capture_rng_state,
    check_finite,
    load_multipart,
    restore_rng_state,
    save_multipart,
)
from hybridnas.engine.distributed import DistContext, all_gather_object

SAVED_BESIDE = ("rng", "manifest")  # what the save adds to a loop's state


def _deepspeed(trainer: WeightTrainer | None) -> bool:
    return trainer is not None and trainer.engine_name == "deepspeed"


def save_resumable(
    path: str | os.PathLike,
    state: dict,
    ctx: DistContext,
    *,
    step: str,
    diverged: str,
    trainer: WeightTrainer | None = None,
) -> None:
    """Collective: write the loop's ``state`` plus every rank's RNG to ``path``.

    ``step`` names this save uniquely and is the same on every rank (e.g. "e0003b000012");
    ``diverged`` starts the message when a tensor is NaN/inf (every rank refuses together,
    before anything is written); ``trainer``'s DeepSpeed state is saved as the engine part.
    """
    rng = all_gather_object(capture_rng_state(), ctx)  # every rank resumes its own streams
    state = {**state, "rng": rng}
    check_finite(state, f"{diverged}: refusing to save {path}")
    engine = trainer.save_engine_state if _deepspeed(trainer) else None
    save_multipart(path, state, step, ctx, engine)


def restore_resumable(
    path: str | os.PathLike,
    ctx: DistContext,
    put_back: Callable[[dict], None] | None = None,
    *,
    trainer: WeightTrainer | None = None,
    map_location: Any = "cpu",
) -> dict:
    """Collective: the state :func:`save_resumable` wrote at ``path`` (without its RNG and
    manifest), once ``put_back(state)`` restored the loop from it (it may refuse; then nothing
    more is restored), ``trainer``'s engine part loaded and this rank's RNG streams restored.

    Raises:
        CheckpointError: neither the checkpoint nor the previous one is whole.
    """
    path = Path(path)
    ckpt, tag = load_multipart(path, ctx, _deepspeed(trainer), map_location=map_location)
    state = {k: v for k, v in ckpt.items() if k not in SAVED_BESIDE}
    if put_back is not None:
        put_back(state)
    if trainer is not None:
        trainer.load_engine_state(str(path.parent / ENGINE_DIR), tag)
    rng = ckpt["rng"]
    if isinstance(rng, dict):  # one state for all ranks (evolution checkpoints before this)
        rng = [rng]
    restore_rng_state(rng[ctx.rank] if ctx.rank < len(rng) else rng[0])
    return state
