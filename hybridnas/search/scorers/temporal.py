"""Training-free scorers aimed at temporal modelling (registered in registry.py).

The built-in task (moving digits) is only solvable by seeing motion, so these look at how a
candidate's freshly initialised network (seeded as every scorer seeds it) treats time:

- ``temporal_sensitivity``: how much the pooled penultimate features of real clips change
  when the clip's frames are shuffled, relative to how much they differ between clips.
- ``naswot_motion``: ``naswot`` computed on frame differences (a motion-only input).
"""

from __future__ import annotations

import torch
from torch import nn

from hybridnas.search.scorers.registry import ScoreContext, network_for, register_scorer
from hybridnas.search.scorers.zero_cost import naswot_logdet
from hybridnas.space.genotype import Genotype

SENSITIVITY_CLIPS = 32  # clips per view; the batch is these clips and their shuffled copies
SHUFFLE_SEED = 0  # which frame permutation (fixed, so the score is a function of the genotype)


def frame_permutation(frames: int, seed: int = SHUFFLE_SEED) -> torch.Tensor:
    """A fixed permutation (frames,) of the time axis that moves at least one frame."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(frames, generator=gen)
        if frames < 2 or not torch.equal(perm, torch.arange(frames)):
            return perm


def frame_differences(x: torch.Tensor) -> torch.Tensor:
    """Motion-only clips: x (N, C, T, H, W) -> (N, C, T, H, W) with frame t holding
    x[t] - x[t-1] and frame 0 zeros (a static clip becomes all zeros)."""
    return torch.cat([torch.zeros_like(x[:, :, :1]), x[:, :, 1:] - x[:, :, :-1]], dim=2)


@torch.no_grad()
def pooled_features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The classifier's input: clips x (N, C, T, H, W) -> pooled features (N, D), with the
    model in train mode (BatchNorm normalises with the batch's own statistics)."""
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    store: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda _m, inputs, _out: store.append(inputs[0]))
    try:
        model.train()(x)
    finally:
        handle.remove()
    return store[0]


def order_sensitivity(model: nn.Module, x: torch.Tensor, perm: torch.Tensor) -> float:
    """Mean distance between the pooled features of each clip of x (N, C, T, H, W) and of the
    same clip with frames reordered by ``perm`` (T,), divided by the mean distance between
    the features of different clips (clip i vs clip i-1). Both views go through one batch.
    0: the network ignores frame order; about 1: reordering matters as much as content."""
    n = len(x)
    if n < 2:
        raise ValueError("order_sensitivity needs at least two clips")
    f = pooled_features(model, torch.cat([x, x[:, :, perm]]))
    real, shuffled = f[:n], f[n:]
    between = (real - real.roll(1, 0)).norm(dim=1).mean()
    return float((real - shuffled).norm(dim=1).mean() / between.clamp_min(1e-12))


@register_scorer("temporal_sensitivity")
def temporal_sensitivity(genotype: Genotype, ctx: ScoreContext) -> float:
    """Frame-order sensitivity at init on the first ``SENSITIVITY_CLIPS`` clips of ctx.x."""
    x = ctx.x[:SENSITIVITY_CLIPS]
    return order_sensitivity(network_for(genotype, ctx), x, frame_permutation(x.shape[2]))


@register_scorer("naswot_motion")
def naswot_motion(genotype: Genotype, ctx: ScoreContext) -> float:
    """``naswot`` on the frame differences of the first minibatch of ctx.x."""
    x = ctx.batches(1)[0][0]
    return naswot_logdet(network_for(genotype, ctx), frame_differences(x))
