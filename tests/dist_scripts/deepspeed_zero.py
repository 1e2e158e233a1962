"""Run under torchrun: 3 DeepSpeed steps per ZeRO stage (0-3) with a torch optimizer.

Usage: torchrun --nproc_per_node=2 deepspeed_zero.py OUTDIR [STAGES, e.g. 0,1,2,3]
Each rank saves, per stage, its losses and the full (gathered) parameters before and after.
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.engine.distributed import (
    build_deepspeed_engine,
    cleanup,
    init_distributed,
    seed_everything,
)


def full_params(engine) -> dict[str, torch.Tensor]:
    """Full parameter values; under ZeRO-3 each rank holds a shard until gathered."""
    import deepspeed

    params = list(engine.module.parameters())
    with deepspeed.zero.GatheredParameters(params, enabled=engine.zero_optimization_stage() == 3):
        return {k: v.detach().clone() for k, v in engine.module.named_parameters()}


def run_stage(stage: int, rank: int, ctx) -> dict:
    torch.manual_seed(0)  # same initial weights on every rank
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    engine = build_deepspeed_engine(
        model, optimizer, ctx, zero_stage=stage, grad_clip=1.0, micro_batch_size=16
    )
    before = full_params(engine)
    torch.manual_seed(100 + rank)  # each rank its own fixed batch
    x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
    losses = []
    for _ in range(3):
        loss = F.cross_entropy(engine(x), y)
        engine.backward(loss)
        engine.step()
        losses.append(loss.item())
    final_loss = F.cross_entropy(engine(x), y).item()
    return {"losses": losses + [final_loss], "before": before, "after": full_params(engine)}


def main(out: Path, stages: list[int]) -> None:
    torch.set_num_threads(1)
    ctx = init_distributed()
    seed_everything(0, ctx.rank)
    results = {stage: run_stage(stage, ctx.rank, ctx) for stage in stages}
    torch.save(results, out / f"rank{ctx.rank}.pt")
    cleanup()


if __name__ == "__main__":
    stages = [int(s) for s in sys.argv[2].split(",")] if len(sys.argv) > 2 else [0, 1, 2, 3]
    main(Path(sys.argv[1]), stages)
