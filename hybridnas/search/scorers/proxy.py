"""A cheap proxy that ranks candidate genotypes (EcoNAS), and the CONet width trial.

The proxy network is the candidate at reduced widths (``width_scale``, at least ``min_width``)
on clips at reduced resolution (``size``), trained a few hundred clips per stage with SGD.
EcoNAS found reduced channels and resolution with few epochs rank more faithfully than fewer
samples; on a 2-core CPU we cannot afford full epochs, so each stage trains on the next
``stage_clips[k]`` clips of one fixed permutation of the training split, and a staged schedule
(successive halving) spends the later stages only on the best candidates.

Accuracy is scored on a fixed subset of ``search_val`` with BatchNorm in batch-statistics mode:
after a few dozen steps the running averages still describe the random init, not the weights.

With ``connection_weights`` (AssembleNet-guided rewiring) the proxy nets sum their node inputs
with learned sigmoid weights, trained at ``connection_lr_mult`` times the lr
(``hybridnas.space.network.read_connection_weights`` reads them off a trained proxy).

Everything a candidate sees is a function of its genotype and a seed, so a candidate scores the
same on any rank and after a resume.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from hybridnas.config import ProxyConfig
from hybridnas.data.bad import BadItem
from hybridnas.search.scorers.channels import (
    ChannelScaler,
    layer_rank,
    mapping_condition,
    rank_slope,
)
from hybridnas.space.cells import edge_list
from hybridnas.space.genotype import Genotype
from hybridnas.space.network import Network, build_network


@dataclass
class ProxyData:
    """Clips resized to the proxy resolution, held in memory: train (N, C, T, s, s) with labels
    in a fixed shuffled order, and the validation subset."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor


def _readable(dataset: Any, order: Sequence[int], n: int, in_order: bool) -> list[tuple]:
    """The first ``n`` readable (index, clip, label) of ``order``; an item that fails to decode
    comes back as a BadItem and is skipped and recorded, as the training loaders do. Sorted by
    index unless ``in_order``."""
    items, bad = [], []
    for i in order:
        if len(items) == n:
            break
        item = dataset[int(i)]
        if isinstance(item, BadItem):
            bad.append(item)
        else:
            items.append((int(i), *item))
    if bad and hasattr(dataset, "record_bad"):
        dataset.record_bad(bad)
    if not items:
        root = getattr(dataset, "root", "") or type(dataset).__name__
        raise RuntimeError(f"no usable clip in {root}: all {len(bad)} items tried were unreadable")
    return items if in_order else sorted(items, key=lambda item: item[0])


def _stack(items: list[tuple], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    _, xs, ys = zip(*items, strict=True)
    x = torch.stack(xs)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(x.shape[2], size, size), mode="trilinear", align_corners=False)
    return x.contiguous(), torch.as_tensor(ys, dtype=torch.long)


def load_proxy_data(train_set: Any, val_set: Any, cfg: ProxyConfig, seed: int) -> ProxyData:
    """Take as many training clips as the stages consume (in a seeded random order) and the
    first ``val_clips`` of a seeded permutation of the validation split."""
    rng = np.random.default_rng([seed, 7])
    train_order, val_order = rng.permutation(len(train_set)), rng.permutation(len(val_set))
    train = _readable(train_set, train_order, sum(cfg.stage_clips), in_order=True)
    val = _readable(val_set, val_order, cfg.val_clips, in_order=False)
    return ProxyData(*_stack(train, cfg.size), *_stack(val, cfg.size))


def proxy_genotype(genotype: Genotype, width_scale: float, min_width: int) -> Genotype:
    """The candidate at reduced widths (stage widths and stem scaled, at least min_width)."""

    def scale(w: int) -> int:
        return max(min_width, int(round(w * width_scale)))

    return genotype.replace(
        stage_widths=tuple(scale(w) for w in genotype.stage_widths),
        stem_channels=scale(genotype.stem_channels),
    )


def candidate_seed(genotype: Genotype, seed: int) -> int:
    """A seed fixed by the architecture and the run seed (same on every rank, every resume)."""
    return (zlib.crc32(genotype.key().encode()) ^ (seed * 0x9E3779B1)) % 2**31


# ---------------------------------------------------------------- weight inheritance


def _supernet_name(name: str, genotype: Genotype, steps: int, op_names: Sequence[str]) -> str:
    """Supernet parameter name of a Network parameter: cells.c.ops.e.* ->
    cells.c.mixed_ops.<DARTS edge index>.ops.<op index>.*; stem, pre0/1 and head keep names."""
    parts = name.split(".")
    if len(parts) > 3 and parts[0] == "cells" and parts[2] == "ops":
        cell = int(parts[1])
        spec = genotype.reduce if cell in genotype.reduction_indices() else genotype.normal
        i, j, op = spec.edges[int(parts[3])]
        if (i, j) not in edge_list(steps) or op not in op_names:
            return ""
        k = edge_list(steps).index((i, j))
        return ".".join(
            ["cells", parts[1], "mixed_ops", str(k), "ops", str(op_names.index(op)), *parts[4:]]
        )
    return name


def inherit_weights(
    model: Network, supernet_state: Mapping[str, torch.Tensor], steps: int, op_names: Sequence[str]
) -> int:
    """Copy supernet weights into ``model`` wherever a tensor fits: same number of dims and the
    supernet's at least as large in each, taking the leading slice (so a narrower proxy still
    inherits). Returns how many tensors were copied."""
    copied = 0
    own = model.state_dict()
    with torch.no_grad():
        for name, tensor in own.items():
            src = supernet_state.get(_supernet_name(name, model.genotype, steps, op_names))
            if src is None or src.dim() != tensor.dim() or tensor.dim() == 0:
                continue
            if any(s < t for s, t in zip(src.shape, tensor.shape, strict=True)):
                continue
            tensor.copy_(src[tuple(slice(0, n) for n in tensor.shape)])
            copied += 1
    return copied


# ---------------------------------------------------------------- training and scoring


@dataclass
class Trained:
    """A proxy network in training: the model, its optimizer and how many stages it has had."""

    model: Network
    optimizer: torch.optim.Optimizer
    stages: int = 0
    accuracy: float = 0.0


def build_proxy(
    genotype: Genotype,
    cfg: ProxyConfig,
    seed: int,
    supernet: tuple[Mapping[str, torch.Tensor], int, Sequence[str]] | None = None,
    device: torch.device | str = "cpu",
) -> Trained:
    """The reduced network of ``genotype`` (seeded init, supernet weights inherited if given)."""
    torch.manual_seed(candidate_seed(genotype, seed))
    model = build_network(
        proxy_genotype(genotype, cfg.width_scale, cfg.min_width),
        connection_weights=cfg.connection_weights,
    )
    if supernet is not None and cfg.inherit:
        inherit_weights(model, *supernet)
    model.to(device)
    gates = [p for n, p in model.named_parameters() if n.endswith("connection_logits")]
    rest = [p for n, p in model.named_parameters() if not n.endswith("connection_logits")]
    groups = [{"params": rest}]
    if gates:  # no weight decay: it would pull every connection towards 0.5 regardless of use
        groups.append({"params": gates, "lr": cfg.lr * cfg.connection_lr_mult, "weight_decay": 0})
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return Trained(model, opt)


def _train_clips(t: Trained, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
    t.model.train()
    device = next(t.model.parameters()).device
    for b in range(0, len(x) - batch_size + 1, batch_size):
        xb, yb = x[b : b + batch_size].to(device), y[b : b + batch_size].to(device)
        loss = F.cross_entropy(t.model(xb), yb)
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(t.model.parameters(), 5.0)
        t.optimizer.step()


@torch.no_grad()
def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    """Top-1 accuracy with BatchNorm on batch statistics (see the module docstring)."""
    model.train()  # batch statistics; no dropout in the proxy nets
    device = next(model.parameters()).device
    correct = 0
    for b in range(0, len(x), batch_size):
        logits = model(x[b : b + batch_size].to(device))
        correct += int((logits.argmax(1).cpu() == y[b : b + batch_size]).sum())
    return correct / max(len(x), 1)


def train_stage(t: Trained, data: ProxyData, cfg: ProxyConfig) -> float:
    """Train the next stage's clips, then score; returns (and stores) the accuracy."""
    k = t.stages
    start = sum(cfg.stage_clips[:k]) % max(len(data.train_x), 1)
    n = cfg.stage_clips[k]
    idx = torch.arange(start, start + n) % len(data.train_x)
    _train_clips(t, data.train_x[idx], data.train_y[idx], cfg.batch_size)
    t.stages += 1
    t.accuracy = score(t.model, data.val_x, data.val_y)
    return t.accuracy


# ---------------------------------------------------------------- CONet width trial


def stage_of_layers(model: Network) -> dict[str, list[torch.Tensor]]:
    """Conv weights (>= 3x3-ish, not 1x1x1 preprocessing) of each cell's ops, grouped by stage
    ("stage0", "stage1", ...); the stage follows the reduction cells."""
    groups: dict[str, list[torch.Tensor]] = {}
    stage = 0
    for idx, cell in enumerate(model.cells):
        stage += int(idx in model.genotype.reduction_indices())
        for m in cell.ops.modules():
            if isinstance(m, nn.Conv3d) and m.weight.shape[0] > 1 and m.weight.shape[1] > 1:
                groups.setdefault(f"stage{stage}", []).append(m.weight)
    return groups


def stage_ranks(model: Network) -> tuple[dict[str, float], dict[str, float]]:
    """Mean EVBMF layer rank and mean mapping condition per stage (one BLAS thread: the SVDs
    are small and threads only fight the other ranks)."""
    ranks, conds = {}, {}
    with threadpool_limits(1):
        for name, weights in stage_of_layers(model).items():
            ranks[name] = float(np.mean([layer_rank(w) for w in weights]))
            conds[name] = float(np.mean([mapping_condition(w) for w in weights]))
    return ranks, conds


def conet_step(
    genotype: Genotype,
    data: ProxyData,
    cfg: ProxyConfig,
    scaler: ChannelScaler,
    seed: int,
    trial_stages: int = 2,
    device: torch.device | str = "cpu",
) -> tuple[Genotype, dict[str, Any]]:
    """One CONet trial: train the proxy of ``genotype`` ``trial_stages`` stages, recording the
    per-stage rank after each; rank slope and the final mapping condition drive the scaler's
    grow/shrink rule on the real stage widths. Returns the re-widthed genotype and a report."""
    t = build_proxy(genotype, cfg, seed, device=device)
    trace = [stage_ranks(t.model)[0]]
    for _ in range(trial_stages):
        train_stage(t, data, _cycled(cfg, trial_stages))
        trace.append(stage_ranks(t.model)[0])
    _, conds = stage_ranks(t.model)
    slopes = {g: rank_slope([r[g] for r in trace]) for g in trace[0]}
    widths = {f"stage{s}": w for s, w in enumerate(genotype.stage_widths)}
    new = scaler.step(slopes, conds, {g: w for g, w in widths.items() if g in slopes})
    new_widths = tuple(new.get(g, w) for g, w in widths.items())
    report = {
        "slopes": slopes,
        "conditions": conds,
        "old": list(genotype.stage_widths),
        "new": list(new_widths),
    }
    return genotype.replace(stage_widths=new_widths), report


def _cycled(cfg: ProxyConfig, n: int) -> ProxyConfig:
    """The proxy config with at least n stages (the last stage length repeated)."""
    clips = tuple(cfg.stage_clips) + (cfg.stage_clips[-1],) * max(0, n - len(cfg.stage_clips))
    return ProxyConfig(**{**cfg.__dict__, "stage_clips": clips})
