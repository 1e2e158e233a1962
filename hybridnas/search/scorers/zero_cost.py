"""Training-free scorers and the supernet-path scorer, registered in registry.py. Names:

- ``params``, ``flops``: the trivial baselines every proxy must beat.
- ``synflow`` (Tanaka et al. 2020): |theta| weights, all-ones input in float64, BatchNorm in
  eval mode; sum |theta * dR/dtheta| with R the summed output. Reported as log10.
- ``snip``: sum |theta * dL/dtheta| on one minibatch. ``grad_norm``: sum of per-layer
  gradient norms on one minibatch.
- ``naswot`` (Mellor et al. 2021): log|det K| of the Hamming-similarity kernel of the ReLU
  input codes over one minibatch.
- ``zico`` (Li et al. 2023): per layer log(sum mean|g| / std(g)) over >= 2 minibatches.
- ``st_entropy``: a data-free spatio-temporal entropy in the spirit of E3D (Wang et al.
  2023): the log-variance the network's convolutions can expand a unit Gaussian signal to,
  summed over the layers on the deepest path, with the temporal kernel extent counted apart
  from the spatial one (see ``st_entropy``).
- ``oneshot``: the candidate as a path through a trained supernet (inherited weights, no
  training), BatchNorm statistics re-estimated on training clips, accuracy on held-out clips.
- ``temporal_sensitivity``, ``naswot_motion``: aimed at temporal modelling (temporal.py).
- ``ensemble:<a>+<b>+...``: the mean rank of several scorers over a population
  (``registry.rank_many``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.measure.counts import count_flops, count_params
from hybridnas.search.scorers.registry import ScoreContext, network_for, register_scorer
from hybridnas.space.genotype import Genotype


def _weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Conv and linear weights: the layers zero-cost proxies sum over."""
    return [
        (name + ".weight", m.weight)
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv3d | nn.Linear) and m.weight.requires_grad
    ] + [
        (name + ".itgm", p)
        for name, m in model.named_modules()
        if type(m).__name__ == "ITGMConv3d"
        for p in (m.spatial_weight,)
    ]


# ---------------------------------------------------------------- trivial baselines


@register_scorer("params")
def params_score(genotype: Genotype, ctx: ScoreContext) -> float:
    return float(count_params(network_for(genotype, ctx)))


@register_scorer("flops")
def flops_score(genotype: Genotype, ctx: ScoreContext) -> float:
    return float(count_flops(network_for(genotype, ctx), tuple(ctx.x.shape[1:])))


# ---------------------------------------------------------------- gradient-based


@register_scorer("synflow")
def synflow(genotype: Genotype, ctx: ScoreContext) -> float:
    model = network_for(genotype, ctx).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    out = model(torch.ones(1, *ctx.x.shape[1:], dtype=torch.float64))
    out.sum().backward()
    total = _sum_abs_product(model)
    return math.log10(total) if total > 0 else float("-inf")


def _sum_abs_product(model: nn.Module) -> float:
    """sum over weights of |theta * grad| (the saliency synflow and snip share)."""
    with torch.no_grad():
        return sum(
            float((w * w.grad).abs().sum()) for _, w in _weights(model) if w.grad is not None
        )


def _loss_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


@register_scorer("snip")
def snip(genotype: Genotype, ctx: ScoreContext) -> float:
    model = network_for(genotype, ctx)
    _loss_grads(model, *ctx.batches(1)[0])
    return _sum_abs_product(model)


@register_scorer("grad_norm")
def grad_norm(genotype: Genotype, ctx: ScoreContext) -> float:
    model = network_for(genotype, ctx)
    _loss_grads(model, *ctx.batches(1)[0])
    return sum(float(w.grad.detach().norm()) for _, w in _weights(model) if w.grad is not None)


@register_scorer("zico")
def zico(genotype: Genotype, ctx: ScoreContext) -> float:
    model = network_for(genotype, ctx)
    grads: dict[str, list[torch.Tensor]] = {}
    batches = ctx.batches(2)
    if len(batches) < 2:
        raise ValueError("zico needs at least two minibatches of clips")
    for x, y in batches:
        _loss_grads(model, x, y)
        for name, w in _weights(model):
            if w.grad is not None:
                grads.setdefault(name, []).append(w.grad.detach().flatten().clone())
    total = 0.0
    for g in grads.values():
        stack = torch.stack(g)
        std = stack.std(0)
        ratio = stack.abs().mean(0)[std > 0] / std[std > 0]
        if ratio.numel() and float(ratio.sum()) > 0:
            total += math.log(float(ratio.sum()))
    return total


# ---------------------------------------------------------------- activation-based


@register_scorer("naswot")
@torch.no_grad()
def naswot(genotype: Genotype, ctx: ScoreContext) -> float:
    return naswot_logdet(network_for(genotype, ctx), ctx.batches(1)[0][0])


@torch.no_grad()
def naswot_logdet(model: nn.Module, x: torch.Tensor) -> float:
    """log|det K| of the Hamming-similarity kernel K (N, N) of the binary ReLU input codes of
    ``model`` (train mode) on clips x (N, C, T, H, W)."""
    model.train()
    n = len(x)
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        codes = (inputs[0].reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(kernel).logabsdet)


# ---------------------------------------------------------------- structural


@register_scorer("st_entropy")
def st_entropy(genotype: Genotype, ctx: ScoreContext) -> float:
    """Data-free: for each conv, the Gaussian entropy gain log(C_in/groups * kh * kw) of its
    spatial part plus ``TEMPORAL_WEIGHT`` * log(kt) of its temporal part, accumulated along
    the deepest path through each cell (nodes take the max over their inputs: a sum of two
    branches cannot carry more entropy than the richer one plus a constant)."""
    model = network_for(genotype, ctx)
    return _conv_entropy(model.stem) + sum(_cell_entropy(cell) for cell in model.cells)


TEMPORAL_WEIGHT = 2.0  # E3D weighs temporal extent apart from space; tuned on calibration only


def _conv_entropy(module: nn.Module) -> float:
    h = 0.0
    for m in module.modules():
        if isinstance(m, nn.Conv3d):
            kt, kh, kw = m.kernel_size
            h += math.log(m.in_channels / m.groups * kh * kw) + TEMPORAL_WEIGHT * math.log(kt)
        elif type(m).__name__ == "ITGMConv3d":
            c_out, c_in, kh, kw = m.spatial_weight.shape
            h += math.log(c_in * kh * kw) + TEMPORAL_WEIGHT * math.log(m.temporal_length)
    return h


def _cell_entropy(cell: nn.Module) -> float:
    """Deepest-path entropy gain through one cell (edges are listed in node order)."""
    depth = {0: 0.0, 1: 0.0}
    for k, (i, j, _op) in enumerate(cell.spec.edges):
        depth[j] = max(depth.get(j, float("-inf")), depth[i] + _conv_entropy(cell.ops[k]))
    return max(depth.values())


# ---------------------------------------------------------------- one-shot


@register_scorer("oneshot")
def oneshot(genotype: Genotype, ctx: ScoreContext) -> float:
    """Accuracy of the candidate's path through the trained supernet on ``val_x``, after
    re-estimating BatchNorm statistics on the training clips (cumulative average)."""
    from hybridnas.search.scorers.proxy import inherit_weights

    if ctx.supernet_state is None or ctx.val_x is None:
        raise ValueError("oneshot needs ctx.supernet_state and ctx.val_x")
    model = network_for(genotype, ctx)
    inherit_weights(model, ctx.supernet_state, ctx.supernet_steps, ctx.supernet_ops)
    recalibrate_bn(model, ctx.x, ctx.batch_size)
    model.eval()
    with torch.no_grad():
        pred = torch.cat(
            [model(ctx.val_x[b : b + 64]).argmax(1) for b in range(0, len(ctx.val_x), 64)]
        )
    return float((pred == ctx.val_y).float().mean())


@torch.no_grad()
def recalibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them as a cumulative
    average over ``x`` in train mode (SPOS)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    for b in range(0, len(x), batch_size):
        model(x[b : b + batch_size])
