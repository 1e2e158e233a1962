"""One face for the three ways network weights are trained: plain, DDP, DeepSpeed.

``trainer(x, *extra)`` runs the (wrapped) forward, ``trainer.step(loss)`` does backward, clipping
and the optimizer step, ``trainer.module`` is the plain model, and ``state_dict`` /
``load_state_dict`` carry model and optimizer state for checkpoints. Checkpoints always hold
full (unpartitioned) tensors so they load with ``weights_only=True`` on any world size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hybridnas.engine.distributed import DistContext, build_deepspeed_engine, wrap_ddp

ENGINES = ("none", "ddp", "deepspeed")


class WeightTrainer:
    """Train ``model``'s weights with ``optimizer`` through the chosen engine."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        ctx: DistContext,
        *,
        engine: str = "ddp",
        zero_stage: int = 0,
        grad_clip: float | None = 5.0,
        micro_batch_size: int = 1,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.module, self.ctx, self.engine_name = model, ctx, engine
        self.grad_clip = grad_clip
        self.optimizer = optimizer
        self.wrapped: Any = model
        if engine == "ddp" and ctx.world_size > 1:
            # Fixed edges leave whole ops without gradients: DDP must not wait for them.
            self.wrapped = wrap_ddp(model, ctx, find_unused_parameters=True)
        elif engine == "deepspeed":
            self.wrapped = build_deepspeed_engine(
                model,
                optimizer,
                ctx,
                zero_stage=zero_stage,
                grad_clip=grad_clip,
                micro_batch_size=micro_batch_size,
            )
            self.optimizer = self.wrapped.optimizer

    @property
    def param_groups(self) -> list[dict]:
        return self.optimizer.param_groups

    def set_lr(self, lr: float) -> None:
        for group in self.param_groups:
            group["lr"] = lr

    def __call__(self, *args: Any) -> torch.Tensor:
        return self.wrapped(*args)

    def step(self, loss: torch.Tensor) -> None:
        """Backward, clip, step, zero the grads."""
        if self.engine_name == "deepspeed":
            self.wrapped.backward(loss)
            self.wrapped.step()
            return
        loss.backward()
        if self.grad_clip:
            params = [p for p in self.module.parameters() if p.grad is not None]
            nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        """Full model weights and optimizer state (DeepSpeed: gathered to full tensors)."""
        if self.engine_name == "deepspeed":
            return _deepspeed_state(self.wrapped)
        return {"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.engine_name == "deepspeed":
            _load_deepspeed_state(self.wrapped, state)
            return
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])

    def save_engine_state(self, folder: str, tag: str) -> None:
        """DeepSpeed only (collective, every rank): its partitioned optimizer state, which
        cannot be rebuilt from full weights (ZeRO-1/2 keep fp32 master partitions)."""
        if self.engine_name == "deepspeed":
            self.wrapped.save_checkpoint(folder, tag=tag)

    def load_engine_state(self, folder: str, tag: str) -> None:
        if self.engine_name == "deepspeed":
            path, _ = self.wrapped.load_checkpoint(folder, tag=tag)
            if path is None:
                raise FileNotFoundError(f"no DeepSpeed checkpoint {tag!r} in {folder}")


def _deepspeed_state(engine: Any) -> dict:
    """Model weights gathered from any ZeRO stage. The optimizer state stays with DeepSpeed's
    own partitioned checkpoint (``WeightTrainer.save_engine_state``); weights are what resumes
    and fine-tuning need, and they load with ``weights_only=True``."""
    import deepspeed

    params = list(engine.module.parameters())
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        model = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
    return {"model": model, "optimizer": None}


def _load_deepspeed_state(engine: Any, state: dict) -> None:
    import deepspeed

    params = list(engine.module.parameters())
    with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
        engine.module.load_state_dict(state["model"])
