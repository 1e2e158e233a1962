"""Process-group set-up, DDP / DeepSpeed wrapping and the collectives the search needs.

Launch with ``torchrun``; without its environment everything runs as a single process.
Architecture weights (alphas) stay outside DDP and the DeepSpeed engine: their gradients are
averaged by hand with :func:`all_reduce_mean_` and stepped by a plain optimizer, so every
rank derives the same cells; every epoch the ranks compare SHA-256 digests of their alphas
(``differentiable.check_ranks_agree``) and stop if they differ.
"""

from __future__ import annotations

import ctypes
import os
import random
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistContext",
    "all_gather_object",
    "all_reduce_mean_",
    "barrier",
    "broadcast_",
    "build_deepspeed_engine",
    "cleanup",
    "die_with_launcher",
    "init_distributed",
    "seed_everything",
    "wrap_ddp",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job. ``backend`` is None for a single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, checkpoints and writes results."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>; Python's stdlib has no prctl wrapper


def die_with_launcher() -> bool:
    """Have the kernel SIGKILL this process when its parent (torchrun's agent) dies.

    torchrun starts each worker in its own session, so ``kill -9`` of the launcher's process
    group does not reach the workers: without this they train on and write the run folder
    while a new resume may already write it. Linux only (prctl); returns whether it is armed.
    """
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):  # not Linux
        return False
    if os.getppid() != parent:  # the launcher died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)
    return True


def init_distributed(backend: str = "auto") -> DistContext:
    """Join the process group described by torchrun's env (RANK, WORLD_SIZE, LOCAL_RANK).

    ``backend="auto"`` picks nccl when CUDA is available, else gloo. On CUDA the process is
    pinned to ``cuda:LOCAL_RANK``. Without torchrun's env, returns a single-process context
    and creates no process group.
    """
    use_cuda = torch.cuda.is_available()
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        return DistContext(device=device)
    if "TORCHELASTIC_RUN_ID" in os.environ:  # a torchrun worker: end with the launcher
        die_with_launcher()
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)  # env:// rendezvous set up by torchrun
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        device=device,
        backend=backend,
    )


def cleanup() -> None:
    """Destroy the process group, if any (call once at the end of training)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: nn.Module, ctx: DistContext, **ddp_kwargs: Any) -> nn.Module:
    """Move ``model`` to ``ctx.device`` and wrap it in DDP (unchanged for one process).

    DDP broadcasts rank 0's parameters and buffers at construction. For a step that only
    needs gradients of the alphas, call ``model.module`` so DDP's gradient hooks are not
    armed by a forward that has no matching weight backward.
    """
    model = model.to(ctx.device)
    if not ctx.is_distributed:
        return model
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **ddp_kwargs)


def _ensure_process_group(ctx: DistContext) -> None:
    """DeepSpeed needs a process group even for one process: make a world of one in memory."""
    # DeepSpeed's engine asserts LOCAL_RANK is set, which only launchers do.
    os.environ.setdefault("LOCAL_RANK", str(ctx.local_rank))
    if dist.is_initialized():
        return
    backend = ctx.backend or ("nccl" if ctx.device.type == "cuda" else "gloo")
    dist.init_process_group(backend=backend, store=dist.HashStore(), rank=0, world_size=1)


def build_deepspeed_engine(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ctx: DistContext,
    *,
    zero_stage: int,
    grad_clip: float | None,
    micro_batch_size: int,
    grad_accum: int = 1,
    bf16: bool = False,
) -> Any:
    """Wrap ``model`` and a torch ``optimizer`` in a DeepSpeed engine on the existing group.

    The optimizer must be a torch optimizer instance (a config "AdamW" would compile
    DeepSpeed's FusedAdam). Returns the engine: call ``engine(x)``, ``engine.backward(loss)``,
    ``engine.step()``.
    """
    import deepspeed

    from hybridnas.compat import disable_deepspeed_shm_build

    disable_deepspeed_shm_build()
    _ensure_process_group(ctx)
    world_size = dist.get_world_size()
    config = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch_size * grad_accum * world_size,
        "zero_optimization": {"stage": zero_stage},
        "gradient_clipping": float(grad_clip or 0.0),
        "bf16": {"enabled": bf16},
        # ZeRO otherwise refuses optimizers DeepSpeed has not tested (any torch optimizer).
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    engine, *_ = deepspeed.initialize(
        model=model, optimizer=optimizer, config=config, dist_init_required=False
    )
    return engine


def all_reduce_mean_(tensors: Iterable[torch.Tensor], ctx: DistContext) -> None:
    """Average ``tensors`` across ranks in place (e.g. alpha gradients kept outside DDP)."""
    if not ctx.is_distributed:
        return
    for t in tensors:
        # gloo has no ReduceOp.AVG: sum, then divide.
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(ctx.world_size)


def broadcast_(tensors: Iterable[torch.Tensor], ctx: DistContext, src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values, in place."""
    if not ctx.is_distributed:
        return
    for t in tensors:
        dist.broadcast(t.data, src=src)  # .data: leaf tensors requiring grad


def all_gather_object(obj: Any, ctx: DistContext) -> list:
    """Every rank's ``obj`` (picklable), in rank order."""
    if not ctx.is_distributed:
        return [obj]
    out: list = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    """Wait for all ranks."""
    if not ctx.is_distributed:
        return
    if ctx.backend == "nccl":
        dist.barrier(device_ids=[ctx.device.index])  # avoids NCCL guessing the device
    else:
        dist.barrier()


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed python, numpy and torch (all devices) with ``seed + rank``.

    Offsetting by rank gives each rank its own data order and augmentation; shared weights
    are made equal by DDP's / DeepSpeed's initial broadcast and alphas by :func:`broadcast_`.
    """
    seed = seed + rank
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_cpu_threads(threads: int = 0) -> int:
    """Intra-op threads for CPU runs; 0 means auto: the cores per local rank, less one core
    kept free for data loading and everything else on the machine (at least 1).

    Why not every core: as soon as another process competes for the cores, torch's OpenMP
    threads stall each other and a step gets 10-20x slower (measured on 2 cores: 1.4 s with 1
    thread, 29 s with 2). Returns the count set.
    """
    if threads <= 0:
        under_torchrun = "TORCHELASTIC_RUN_ID" in os.environ
        if not under_torchrun and "OMP_NUM_THREADS" in os.environ:
            return torch.get_num_threads()  # the user chose
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        threads = max(1, ((os.cpu_count() or 1) - 1) // local_ranks)
    torch.set_num_threads(threads)
    return threads
