"""Run under torchrun: DDP weights plus hand-averaged alphas; each rank saves its state.

Usage: torchrun --nproc_per_node=2 ddp_alpha.py OUTDIR
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.engine.distributed import (
    all_gather_object,
    all_reduce_mean_,
    barrier,
    broadcast_,
    cleanup,
    init_distributed,
    seed_everything,
    wrap_ddp,
)


class MixedNet(nn.Module):
    """Two candidate ops mixed by softmax(alpha), as in a DARTS edge."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = nn.ModuleList([nn.Linear(8, 8), nn.Sequential(nn.Linear(8, 8), nn.Tanh())])
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        w = F.softmax(alpha, dim=-1)
        return self.head(sum(wi * op(x) for wi, op in zip(w, self.ops, strict=True)))


def main(out: Path) -> None:
    torch.set_num_threads(1)
    ctx = init_distributed()
    seed_everything(0, ctx.rank)  # different weights, alphas and data on each rank
    model = wrap_ddp(MixedNet(), ctx)  # DDP broadcasts rank 0's weights
    alpha = (1e-1 * torch.randn(2)).requires_grad_()
    broadcast_([alpha], ctx)
    opt_w = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt_a = torch.optim.Adam([alpha], lr=0.05)

    local_alpha_grads = []
    for _ in range(3):
        x, y = torch.randn(16, 8), torch.randint(0, 2, (16,))
        opt_w.zero_grad()
        F.cross_entropy(model(x, alpha.detach()), y).backward()
        opt_w.step()

        xv, yv = torch.randn(16, 8), torch.randint(0, 2, (16,))
        # model.module: an alpha-only step must not arm DDP's weight-gradient hooks.
        (grad,) = torch.autograd.grad(F.cross_entropy(model.module(xv, alpha), yv), [alpha])
        local_alpha_grads.append(grad.clone())
        all_reduce_mean_([grad], ctx)
        alpha.grad = grad
        opt_a.step()

    state = {
        "weights": {k: v.detach().clone() for k, v in model.module.state_dict().items()},
        "alpha": alpha.detach().clone(),
        "local_alpha_grads": torch.stack(local_alpha_grads),
        "world_size": ctx.world_size,
        "ranks": all_gather_object(ctx.rank, ctx),
    }
    torch.save(state, out / f"rank{ctx.rank}.pt")
    barrier(ctx)
    cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
