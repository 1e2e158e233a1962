"""Perturbation-based op selection for SDAS fixing (DARTS-PT, Wang et al., ICLR 2021).

Alpha magnitude is a poor guide to which op a supernet actually relies on (skip and
parameter-free ops tend to win the softmax while contributing little). DARTS-PT instead
measures it: mask one op out of an edge's mixture (its weight set to 0, the others kept as
they are, not renormalised), measure the supernet's accuracy on search-validation batches, and
keep the op whose removal hurts the accuracy most.

Here that choice replaces ``best_op`` when SDAS fixes an edge (``search.select=perturbation``).
Which edge is fixed next is still decided by alpha confidence (``search.confidence``): ordering
the edges by perturbation too would cost one measurement per op of every free edge for each
decision (E times more forward passes), and DARTS-PT itself orders edges at random, finding
the op choice is what matters.

Distributed: every rank measures its own shard of the batches; the counts are summed across
ranks, so every rank holds identical numbers, and rank 0's decision is broadcast on top, so the
ranks agree by construction.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from hybridnas.data import build_loader
from hybridnas.engine.distributed import DistContext, all_reduce_mean_, broadcast_
from hybridnas.space.supernet import Architecture, Supernet

Batch = tuple[torch.Tensor, torch.Tensor]


@contextmanager
def kept_norm_stats(module: nn.Module) -> Iterator[None]:
    """Run ``module`` in train mode (batch statistics, as during the search) but put the
    BatchNorm running statistics back afterwards: a measurement must not move them."""
    saved = {
        name: buf.detach().clone()
        for name, buf in module.named_buffers()
        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")
    }
    was_training = module.training
    module.train()
    try:
        yield
    finally:
        buffers = dict(module.named_buffers())
        with torch.no_grad():
            for name, value in saved.items():
                buffers[name].copy_(value)
        module.train(was_training)


def select_batches(
    dataset: Dataset,
    n: int,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    ctx: DistContext,
    channels_last: bool = False,
) -> list[Batch]:
    """This rank's first ``n`` batches of ``dataset`` in the (seed, epoch) order, on
    ``ctx.device``: each (clips (B, C, T, H, W), labels (B,)). Other clips every epoch, the
    same on a resume."""
    loader = build_loader(
        dataset,
        batch_size=batch_size,
        train=True,
        seed=seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        drop_last=True,
    )
    loader.sampler.set_epoch(epoch)
    batches: list[Batch] = []
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    for x, y in loader:
        batches.append((x.to(ctx.device, memory_format=fmt), y.to(ctx.device)))
        if len(batches) == n:
            break
    return batches


@torch.no_grad()
def masked_stats(
    supernet: Supernet,
    arch: Architecture,
    batches: list[Batch],
    cell_type: str,
    edge: int,
    ops: list[int],
    ctx: DistContext,
) -> torch.Tensor:
    """(len(ops), 3) float64: per op masked out of ``edge``, the correct predictions, clips
    seen and summed cross-entropy over ``batches``, summed over every rank's batches."""
    stats = torch.zeros(len(ops), 3, dtype=torch.float64, device=ctx.device)
    with kept_norm_stats(supernet):
        for i, op in enumerate(ops):
            with arch.masked_op(cell_type, edge, op):
                for x, y in batches:
                    logits = supernet(x, arch)
                    stats[i, 0] += (logits.argmax(1) == y).sum()
                    stats[i, 1] += len(y)
                    stats[i, 2] += F.cross_entropy(logits.float(), y, reduction="sum")
    all_reduce_mean_([stats], ctx)  # the mean of sums: ratios are those of the sums
    return stats


def most_hurt(stats: torch.Tensor) -> int:
    """Row of ``stats`` (see :func:`masked_stats`) with the lowest accuracy; ties (likely on a
    few batches) go to the higher loss, then to the first row."""
    acc = stats[:, 0] / stats[:, 1].clamp_min(1)
    rows = range(len(stats))
    return min(rows, key=lambda r: (float(acc[r]), -float(stats[r, 2]), r))


@dataclass
class PerturbationChooser:
    """An ``OpChooser`` for :func:`hybridnas.search.differentiable.sdas.fix_edges`: the op whose
    masking lowers the search-val accuracy most. ``records`` keeps, per decided (cell, edge), the
    accuracy with each candidate masked; ``forwards`` counts supernet forward passes."""

    supernet: Supernet
    batches: list[Batch]
    ctx: DistContext
    records: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)
    forwards: int = 0

    def __call__(self, arch: Architecture, cell_type: str, edge: int, banned: set[str]) -> int:
        ops = [i for i, n in enumerate(arch.op_names) if n != "none" and n not in banned]
        if not ops:
            raise ValueError(f"edge {edge} of the {cell_type} cell has no allowed op")
        if len(ops) == 1:
            return ops[0]
        stats = masked_stats(self.supernet, arch, self.batches, cell_type, edge, ops, self.ctx)
        self.forwards += len(ops) * len(self.batches)
        choice = torch.tensor([ops[most_hurt(stats)]], device=self.ctx.device)
        broadcast_([choice], self.ctx)  # rank 0 decides; the counts already agree
        acc = (stats[:, 0] / stats[:, 1].clamp_min(1)).tolist()
        self.records[(cell_type, edge)] = {
            arch.op_names[o]: round(a, 6) for o, a in zip(ops, acc, strict=True)
        }
        return int(choice)
