"""Trained-proxy variants against the ground truth: which short training ranks faithfully.

::

    v = ProxyVariant(width_scale=1.0, clips=1024, batch_size=64, lr=0.2, schedule="onecycle")
    scores, ms = variant_scores(v, genotypes, clips)   # {reading: {arch: score}}, ms/candidate
    gt.tau(scores["loss_batch_256"], "calibration")

One training per candidate yields several readings at once (so scoring choices cost no extra
training): accuracy or negative cross-entropy (``acc`` / ``loss``; loss is less quantised than
accuracy on a few hundred clips), with BatchNorm on batch statistics or on its running
averages (``batch`` / ``eval``), on the first 256 or all of the held-out clips, and the same
readings after each of ``early`` clip counts (early-epoch readings of the same run).

The net is the evolution's proxy (``hybridnas.search.proxy.build_proxy``, seeded by the
genotype, no supernet inheritance) trained on the ground-truth recipe's training clips; the
held-out clips are its ``search_val`` clips, never the test clips the truth is measured on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hybridnas.space.genotype import Genotype

SCHEDULES = ("constant", "onecycle")


@dataclass(frozen=True)
class ProxyVariant:
    """One way to train and read a proxy. ``clips`` training clips (cycling through the
    training split in seeded per-pass orders when more than it holds), SGD at peak ``lr``:
    ``constant`` (the evolution's proxy) or ``onecycle`` (linear warm-up over the first
    ``warmup`` share of steps, then cosine to 0)."""

    width_scale: float = 0.5
    clips: int = 512
    batch_size: int = 32
    lr: float = 0.05
    schedule: str = "constant"
    warmup: float = 0.1
    optimizer: str = "sgd"
    early: tuple[int, ...] = ()
    val_clips: tuple[int, ...] = (256,)
    readings: tuple[str, ...] = ("acc_batch", "loss_batch", "acc_eval", "loss_eval")

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")

    def label(self) -> str:
        sched = self.schedule if self.schedule == "constant" else f"1cyc{self.warmup:g}"
        opt = "" if self.optimizer == "sgd" else f"{self.optimizer}_"
        return f"{opt}w{self.width_scale:g}_c{self.clips}_b{self.batch_size}_lr{self.lr:g}_{sched}"


def lr_factor(schedule: str, step: int, total: int, warmup: float) -> float:
    """Multiplier of the peak lr at ``step`` of ``total``. Written out rather than taken from
    timm's schedulers: their warm-up starts from ``warmup_lr_init`` and shares ``t_initial``
    with the cosine, and a sweep variant should be this one pure function of the step."""
    if schedule == "constant":
        return 1.0
    n_warm = max(1, int(round(warmup * total)))
    if step < n_warm:
        return (step + 1) / n_warm
    return 0.5 * (1 + math.cos(math.pi * (step - n_warm) / max(total - n_warm, 1)))


def clip_order(n_train: int, clips: int, seed: int = 0) -> torch.Tensor:
    """Indices of the ``clips`` training clips seen, in order: the split in its stored order
    first (what the evolution's proxy sees), then seeded permutations of it."""
    parts = [torch.arange(n_train)]
    gen = torch.Generator().manual_seed(seed)
    while sum(len(p) for p in parts) < clips:
        parts.append(torch.randperm(n_train, generator=gen))
    return torch.cat(parts)[:clips]


@torch.no_grad()
def read_scores(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, variant: ProxyVariant, batch_size: int = 64
) -> dict[str, float]:
    """{"<acc|loss>_<batch|eval>_<n>": score} (loss negated: higher is better) for each
    BatchNorm mode in ``variant.readings`` and each n of ``variant.val_clips``."""
    out = {}
    # eval first, and the running averages restored after: a batch-statistics pass updates
    # them with the held-out clips, which would leak into later eval readings and training
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    modes = sorted({r.split("_")[1] for r in variant.readings}, reverse=True)
    for mode in modes:
        model.train(mode == "batch")
        losses, correct = [], []
        for b in range(0, max(variant.val_clips), batch_size):
            logits = model(x[b : b + batch_size])
            yb = y[b : b + batch_size]
            losses.append(F.cross_entropy(logits, yb, reduction="none"))
            correct.append(logits.argmax(1) == yb)
        loss, hit = torch.cat(losses), torch.cat(correct).float()
        for n in variant.val_clips:
            out[f"acc_{mode}_{n}"] = float(hit[:n].mean())
            out[f"loss_{mode}_{n}"] = -float(loss[:n].mean())
    model.load_state_dict(buffers, strict=False)
    model.train()
    return {k: v for k, v in out.items() if "_".join(k.split("_")[:2]) in variant.readings}


def train_variant(
    genotype: Genotype, variant: ProxyVariant, train: Any, val: Any, seed: int = 0
) -> dict[str, float]:
    """Train ``genotype``'s proxy as ``variant`` says; its readings at the end (plain keys)
    and after each of ``variant.early`` clips (keys prefixed ``e<clips>_``)."""
    from hybridnas.search.proxy import ProxyConfig, build_proxy

    cfg = ProxyConfig(
        width_scale=variant.width_scale, batch_size=variant.batch_size, lr=variant.lr, inherit=False
    )
    t = build_proxy(genotype, cfg, seed)
    if variant.optimizer == "adamw":
        t.optimizer = torch.optim.AdamW(t.model.parameters(), lr=variant.lr, weight_decay=1e-4)
    base = [g["lr"] for g in t.optimizer.param_groups]
    order = clip_order(len(train.x), variant.clips, seed)
    total = len(order) // variant.batch_size
    out: dict[str, float] = {}
    t.model.train()
    for step in range(total):
        for g, lr in zip(t.optimizer.param_groups, base, strict=True):
            g["lr"] = lr * lr_factor(variant.schedule, step, total, variant.warmup)
        idx = order[step * variant.batch_size : (step + 1) * variant.batch_size]
        loss = F.cross_entropy(t.model(train.x[idx]), train.y[idx])
        if not torch.isfinite(loss):  # a diverged variant must not score like a trained one
            raise FloatingPointError(f"{variant.label()}: non-finite loss at step {step}")
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(t.model.parameters(), 5.0)
        t.optimizer.step()
        seen = (step + 1) * variant.batch_size
        if seen in variant.early:
            early = read_scores(t.model, val.x, val.y, variant)
            out.update({f"e{seen}_{k}": v for k, v in early.items()})
    out.update(read_scores(t.model, val.x, val.y, variant))
    return out


def variant_scores(
    variant: ProxyVariant, genotypes: Mapping[str, Genotype], clips: Mapping[str, Any]
) -> tuple[dict[str, dict[str, float]], float]:
    """Every reading of ``variant`` for every genotype ({arch: genotype}; ``clips`` as
    ``groundtruth.load_clips`` returns them). Returns ({reading: {arch: score}}, median ms
    per candidate, readings included)."""
    scores: dict[str, dict[str, float]] = {}
    times = []
    for arch, g in genotypes.items():
        start = time.perf_counter()
        for k, v in train_variant(g, variant, clips["train"], clips["search_val"]).items():
            scores.setdefault(k, {})[arch] = v
        times.append(1000 * (time.perf_counter() - start))
    return scores, float(np.median(times))


def sweep(
    variants: Sequence[ProxyVariant],
    genotypes: Mapping[str, Genotype],
    clips: Mapping[str, Any],
    gt: Any,
    half: str = "calibration",
) -> list[dict[str, Any]]:
    """One row per (variant, reading): Kendall tau on ``half`` (no interval), the readings'
    spread (how many distinct values) and the mean accuracy, and ms per candidate."""
    rows = []
    for v in variants:
        scores, ms = variant_scores(v, genotypes, clips)
        for reading, s in scores.items():
            acc_key = reading.replace("loss_", "acc_")
            accs = scores.get(acc_key, {})
            rows.append(
                {
                    "variant": v.label(),
                    "reading": reading,
                    "tau": gt.tau(s, half, resamples=0).tau,
                    "distinct": len(set(np.round(list(s.values()), 6))),
                    "mean_acc": float(np.mean(list(accs.values()))) if accs else float("nan"),
                    "ms_per_candidate": ms,
                    "n": len(s),
                }
            )
        best = max((r for r in rows if r["variant"] == v.label()), key=lambda r: r["tau"])
        print(
            f"[sweep] {v.label()}: {ms / 1000:.1f} s/cand, best {best['reading']} "
            f"tau {best['tau']:+.3f}",
            flush=True,
        )
    return rows


def subsample(gt: Any, genotypes: Mapping[str, Genotype], half: str, n: int, seed: int = 0):
    """``n`` of ``half``'s architectures (seeded draw, table order kept) as {arch: genotype}."""
    archs = [r.arch for r in gt.archs(half) if r.arch in genotypes]
    keep = sorted(np.random.default_rng(seed).choice(len(archs), min(n, len(archs)), False))
    return {archs[i]: genotypes[archs[i]] for i in keep}


def preset_scores(
    name: str, genotypes: Mapping[str, Genotype], clips: Mapping[str, Any]
) -> tuple[dict[str, float], float]:
    """A bench scorer out of ``PRESETS``: ({arch: its reading}, median ms per candidate)."""
    variant, reading = PRESETS[name]
    scores, ms = variant_scores(variant, genotypes, clips)
    return scores[reading], ms


# Bench scorers (``python tools/bench.py scorers --names <name>``): (variant, reading). Chosen
# on 30 calibration architectures (tools/bench_results/proxy_reading.md): full width, 1536
# clips, one-cycle SGD to lr 0.2, scored by the negated val loss on all 500 search_val clips.
PRESETS: dict[str, tuple[ProxyVariant, str]] = {
    "proxy_1cycle": (
        ProxyVariant(
            width_scale=1.0,
            clips=1536,
            batch_size=32,
            lr=0.2,
            schedule="onecycle",
            warmup=0.15,
            val_clips=(500,),
            readings=("loss_batch",),
        ),  # fmt: skip
        "loss_batch_500",
    ),
}
