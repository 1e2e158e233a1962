"""The differentiable stage: bilevel supernet training with SDAS scheduled edge fixing.

Read top to bottom: ``setup`` builds data, supernet, architecture and optimizers (or restores
them from the run's checkpoint); ``train_epoch`` alternates an architecture step on a
search-validation batch with a weight step on a training batch; ``end_epoch`` fixes edges on
the schedule, logs, draws and checkpoints; ``run_differentiable`` strings them together and
returns the genotype.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from hybridnas.config import SearchConfig, SearchRun
from hybridnas.data import build_loader
from hybridnas.data.loader import require_one_batch
from hybridnas.engine.backend import WeightTrainer
from hybridnas.engine.checkpoint import CheckpointError, check_finite, check_loss
from hybridnas.engine.distributed import (
    DistContext,
    all_gather_object,
    all_reduce_mean_,
    barrier,
    broadcast_,
)
from hybridnas.engine.resume import restore_resumable, save_resumable
from hybridnas.engine.tracking import Tracker
from hybridnas.search.differentiable.architect import Architect, LossFn
from hybridnas.search.differentiable.expected_latency import (
    ExpectedLatency,
    latency_meta,
    search_latency_table,
)
from hybridnas.search.differentiable.fixing import fix_early, fix_on_schedule
from hybridnas.search.differentiable.sdas import FixSchedule
from hybridnas.search.differentiable.splits import note_epoch_cap, search_datasets
from hybridnas.search.differentiable.state import SearchState
from hybridnas.space.cells import edge_list
from hybridnas.space.genotype import CELL_TYPES, Genotype
from hybridnas.space.macro import MacroSpec
from hybridnas.space.supernet import Architecture, Supernet, SupernetConfig, derive_genotype
from hybridnas.viz import draw_genotype, plot_alpha_history

CHECKPOINT = "checkpoints/search_last.pt"


def supernet_config(cfg: SearchRun, num_classes: int) -> SupernetConfig:
    """The supernet of ``cfg.model``'s space for clips of ``cfg.data``."""
    m = cfg.model
    return SupernetConfig(
        op_names=list(m.op_names),
        steps=m.steps,
        partial_k=m.partial_k,
        edge_norm=m.edge_norm,
        macro=MacroSpec.from_config(vars(m), cfg.data, num_classes),
    )


def weight_lr(s: SearchConfig, epoch: int) -> float:
    """Cosine from ``w_lr`` to ``w_lr_min`` over the search epochs (DARTS), stateless."""
    return s.w_lr_min + 0.5 * (s.w_lr - s.w_lr_min) * (1 + math.cos(math.pi * epoch / s.epochs))


def setup(
    cfg: SearchRun, ctx: DistContext, run_dir: Path, loss_fn: LossFn = F.cross_entropy
) -> SearchState:
    """Data, supernet, architecture, optimizers; all ranks start from rank 0's values.
    ``loss_fn(logits, labels)`` is the training and architecture loss."""
    s = cfg.search
    train_set, val_set, alpha_split = search_datasets(cfg.data, s.alpha_split)
    loader_args = dict(
        batch_size=cfg.data.batch_size,
        train=True,
        workers=cfg.data.workers,
        seed=cfg.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
        drop_last=True,
    )
    train_loader = build_loader(train_set, **loader_args)
    val_loader = build_loader(val_set, **{**loader_args, "seed": cfg.seed + 1})
    halves = alpha_split == "half_train"
    for split, data, loader in (
        ("train (weight half)" if halves else "train", train_set, train_loader),
        ("train (alpha half)" if halves else "search_val", val_set, val_loader),
    ):
        require_one_batch(split, data, loader, ctx.world_size)
    if ctx.is_main:
        note_epoch_cap(s.steps_per_epoch, train_loader, val_loader, alpha_split)

    sc = supernet_config(cfg, train_set.num_classes)
    table = search_latency_table(cfg, ctx, sc) if s.latency_weight > 0 else None
    latency = ExpectedLatency.for_space(table, sc.macro, sc.op_names, sc.steps) if table else None
    torch.manual_seed(cfg.seed)  # identical initial weights and alphas on every rank
    supernet = Supernet(sc).to(ctx.device)
    arch = supernet.new_architecture().to(ctx.device)
    broadcast_(list(arch.parameters()), ctx)
    w_opt = torch.optim.SGD(
        supernet.parameters(), lr=s.w_lr, momentum=s.w_momentum, weight_decay=s.w_weight_decay
    )
    trainer = WeightTrainer(
        supernet,
        w_opt,
        ctx,
        engine=cfg.engine,
        zero_stage=cfg.zero_stage,
        grad_clip=s.grad_clip,
        micro_batch_size=cfg.data.batch_size,
    )
    architect = Architect(
        arch,
        lr=s.a_lr,
        betas=tuple(s.a_betas),
        weight_decay=s.a_weight_decay,
        order=s.order,
        all_reduce=lambda grads: all_reduce_mean_(grads, ctx),
        loss_fn=loss_fn,
        beta_decay=s.beta_decay,
        latency=latency,
        latency_target_ms=s.latency_target_ms,
        latency_weight=s.latency_weight,
    )
    schedule = FixSchedule.from_config(s)
    return SearchState(
        cfg,
        ctx,
        run_dir,
        supernet,
        arch,
        trainer,
        architect,
        schedule,
        train_loader,
        val_loader,
        loss_fn=loss_fn,
        latency_table=table,
    )


# ---------------------------------------------------------------- checkpoints


def checkpoint_state(st: SearchState) -> dict:
    return {
        "epoch": st.epoch,
        "batch_in_epoch": st.batch_in_epoch,
        "global_step": st.global_step,
        "weights": st.trainer.state_dict(),
        "arch": st.arch.state_dict(),
        "arch_optimizer": st.architect.optimizer.state_dict(),
        "alpha_history": torch.stack(st.alpha_history) if st.alpha_history else torch.empty(0),
        "fix_events": st.fix_events,
        "epoch_times": st.epoch_times,
        "running": st.running,
    }


def save_search_checkpoint(st: SearchState) -> None:
    save_resumable(
        st.run_dir / CHECKPOINT,
        checkpoint_state(st),
        st.ctx,
        step=f"e{st.epoch:04d}b{st.batch_in_epoch:06d}",  # unique per save, known to every rank
        diverged=f"search diverged at epoch {st.epoch}",
        trainer=st.trainer,
    )


def restore(st: SearchState, path: Path) -> None:
    restore_resumable(
        path,
        st.ctx,
        lambda ckpt: put_back(st, ckpt, path),
        trainer=st.trainer,
        map_location=st.ctx.device,
    )


def put_back(st: SearchState, ckpt: dict, path: Path) -> None:
    """Restore ``st`` from ``ckpt``; a supernet of another shape is refused in one line."""
    try:
        st.trainer.load_state_dict(ckpt["weights"])
        st.arch.load_state_dict(ckpt["arch"])
    except RuntimeError as err:  # torch lists every mismatching tensor: hundreds of lines
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise CheckpointError(
            f"checkpoint {path} holds a supernet of another shape than this run's model.* "
            f"settings ({lines[1] if len(lines) > 1 else lines[0]})"
        ) from None
    st.architect.optimizer.load_state_dict(ckpt["arch_optimizer"])
    st.epoch, st.batch_in_epoch = ckpt["epoch"], ckpt["batch_in_epoch"]
    st.global_step = ckpt["global_step"]
    st.alpha_history = list(ckpt["alpha_history"]) if ckpt["alpha_history"].numel() else []
    st.fix_events, st.epoch_times = ckpt["fix_events"], ckpt["epoch_times"]
    st.running = ckpt["running"]


# ---------------------------------------------------------------- the loop


def _accumulate(running: dict, **values: float) -> None:
    for k, v in values.items():
        running[k] = running.get(k, 0.0) + v


def to_device(clips: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """(B, C, T, H, W) clips on ``device``; channels-last-3d memory makes oneDNN's 3D convs on
    CPU about 1.5-2x faster here (measured on the default supernet, forward + backward)."""
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    return clips.to(device, memory_format=fmt)


def train_epoch(st: SearchState, tracker: Tracker) -> None:
    """One pass over the training shard; resumes mid-epoch at ``st.batch_in_epoch``."""
    s = st.cfg.search
    lr = weight_lr(s, st.epoch)
    st.trainer.set_lr(lr)
    st.supernet.train()
    for loader in (st.train_loader, st.val_loader):
        loader.sampler.set_epoch(st.epoch)
    total = min(len(st.train_loader), len(st.val_loader))  # before skipping: a full epoch
    if s.steps_per_epoch:
        total = min(total, s.steps_per_epoch)
    for loader in (st.train_loader, st.val_loader):
        loader.sampler.set_start_batch(st.batch_in_epoch)
    search_alpha = st.epoch >= s.arch_warmup_epochs and st.arch.num_free() > 0
    bar = tqdm(
        total=total,
        initial=st.batch_in_epoch,
        disable=not st.ctx.is_main,
        desc=f"search epoch {st.epoch}",
        leave=False,
    )
    batches = zip(st.train_loader, st.val_loader, strict=False)
    for (x, y), (xv, yv) in batches:
        if st.batch_in_epoch >= total:
            break
        x, xv = (to_device(t, st.ctx.device, s.channels_last) for t in (x, xv))
        y, yv = y.to(st.ctx.device), yv.to(st.ctx.device)
        where = f"search epoch {st.epoch}, step {st.batch_in_epoch}"
        if search_alpha:
            val = st.architect.step(
                st.supernet, (xv, yv), (x, y), xi=lr, weight_decay=s.w_weight_decay
            )
            check_loss(val["loss"], where, f"validation loss; search.a_lr={s.a_lr}")
            _accumulate(
                st.running,
                expected_ms=val["expected_ms"] if st.architect.latency else 0.0,
                val_loss=val["loss"],
                val_correct=val["correct"],
                val_seen=len(yv),
                val_steps=1,
            )
        logits = st.trainer(x, st.arch)
        loss = st.loss_fn(logits, y)
        st.trainer.step(loss)
        loss = check_loss(float(loss.detach()), where, f"search.w_lr={s.w_lr}")
        correct = float((logits.detach().argmax(1) == y).sum())
        _accumulate(st.running, train_loss=loss * len(y), train_correct=correct, train_seen=len(y))
        st.batch_in_epoch += 1
        st.global_step += 1
        fix_early(st)
        bar.update(1)
        if s.log_every_steps and st.global_step % s.log_every_steps == 0:
            tracker.log({"train/step_loss": loss, "lr/weights": lr}, step=st.global_step)
        if s.ckpt_every_steps and st.batch_in_epoch % s.ckpt_every_steps == 0:
            save_search_checkpoint(st)
    bar.close()


def epoch_metrics(st: SearchState, seconds: float) -> dict:
    r = st.running
    metrics = {
        "epoch": st.epoch,
        "train/loss": r.get("train_loss", 0.0) / max(r.get("train_seen", 1), 1),
        "train/acc": r.get("train_correct", 0.0) / max(r.get("train_seen", 1), 1),
        "lr/weights": weight_lr(st.cfg.search, st.epoch),
        "lr/arch": st.cfg.search.a_lr,
        "time/epoch_s": seconds,
        "sdas/decided_edges": 2 * st.arch.num_edges - st.arch.num_free(),
    }
    if r.get("val_seen"):
        metrics["val/loss"] = r["val_loss"] / max(r.get("val_steps", 1), 1)
        if st.architect.latency is not None:
            metrics["search/expected_ms"] = r["expected_ms"] / max(r.get("val_steps", 1), 1)
        metrics["val/acc"] = r["val_correct"] / r["val_seen"]
    edges = edge_list(st.cfg.model.steps)
    for t in CELL_TYPES:
        weights = st.arch.alpha_matrix(t)
        for k, (i, j) in enumerate(edges):
            for o, name in enumerate(st.arch.op_names):
                metrics[f"alpha/{t}/{i}-{j}/{name}"] = float(weights[k, o])
    return metrics


def alpha_digest(arch: Architecture) -> str:
    """SHA-256 of the raw bytes of every alpha, beta and edge decision."""
    h = hashlib.sha256()
    for t in [*arch.alphas, *arch.betas, arch.edge_state]:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_ranks_agree(st: SearchState) -> list[str]:
    """Every rank's alpha digest; raises if any rank holds different architecture values."""
    digests = all_gather_object(alpha_digest(st.arch), st.ctx)
    if len(set(digests)) != 1:
        raise RuntimeError(f"architecture parameters differ across ranks: {digests}")
    return digests


def end_epoch(st: SearchState, tracker: Tracker, seconds: float) -> list[dict]:
    """Fix edges on the schedule, log the epoch, draw, checkpoint."""
    st.rank_digests = check_ranks_agree(st)
    metrics = epoch_metrics(st, seconds)
    st.alpha_history.append(torch.stack([st.arch.alpha_matrix(t) for t in CELL_TYPES]).cpu())
    events, fix_seconds = fix_on_schedule(st)
    seconds += fix_seconds  # a perturbation measurement is search time
    metrics["time/epoch_s"], metrics["time/select_s"] = seconds, fix_seconds
    for e in events:
        e["epoch"] = st.epoch
    st.fix_events += events
    st.epoch_times.append(seconds)
    tracker.log(metrics, step=st.global_step)
    if events and st.ctx.is_main:
        cols = ["epoch", "cell", "edge", "from", "to", "op", "action"]
        tracker.log_table(
            "sdas/fixed_edges", cols, [[e[c] for c in cols] for e in st.fix_events], st.global_step
        )
    st.epoch += 1
    st.batch_in_epoch = 0
    st.running = {}
    save_search_checkpoint(st)
    return events


def write_alphas(st: SearchState, path: Path) -> None:
    """Final softmaxed alphas and edge decisions, for evolution's seeding and guided rewiring."""
    steps = st.cfg.model.steps
    doc = {
        "op_names": st.arch.op_names,
        "steps": steps,
        "edges": [list(e) for e in edge_list(steps)],
        "edge_state": st.arch.edge_state.tolist(),
        "rank_digests": st.rank_digests,  # one per rank: equal when the ranks agree bitwise
    }
    for t in CELL_TYPES:
        doc[t] = st.arch.alpha_matrix(t).tolist()
    path.write_text(json.dumps(doc, indent=1))


def write_outputs(st: SearchState, tracker: Tracker, genotype: Genotype) -> None:
    """genotype.json, cell drawings, the alpha heat map, and the same in W&B (rank 0)."""
    if not st.ctx.is_main:
        return
    run = st.run_dir
    genotype.save(run / "genotype.json")
    write_alphas(st, run / "alphas.json")
    images = draw_genotype(genotype, run)
    edges = [f"{i}-{j}" for i, j in edge_list(st.cfg.model.steps)]
    heat = plot_alpha_history(
        torch.stack(st.alpha_history), st.arch.op_names, edges, run / "alpha_heatmap.png"
    )
    tracker.log_json("genotype", genotype.to_dict())
    for path in [*images, heat]:
        tracker.log_image(f"search/{path.stem}", path, st.global_step)
    tracker.summary(
        {
            "search/total_time_s": sum(st.epoch_times),
            "search/genotype": genotype.to_json(),
        }
    )


def run_differentiable(
    cfg: SearchRun,
    ctx: DistContext,
    run_dir: Path,
    tracker: Tracker,
    loss_fn: LossFn = F.cross_entropy,
    prepare: Callable[[SearchState], None] | None = None,
) -> tuple[Genotype, SearchState]:
    """Train the supernet with scheduled fixing; return (and write) the derived genotype and
    the final state. ``prepare(state)`` runs after setup, before a resume's restore (NSE
    inherits the previous round's weights there)."""
    st = setup(cfg, ctx, run_dir, loss_fn)
    if prepare is not None:
        prepare(st)
    ckpt = run_dir / CHECKPOINT
    if cfg.resume and ckpt.is_file():
        restore(st, ckpt)
        if ctx.is_main:
            print(f"[hybridnas] resumed search at epoch {st.epoch}, batch {st.batch_in_epoch}")
    if ctx.is_main:
        st.train_loader.dataset.save_class_index(run_dir / "classes.json")
    while st.epoch < cfg.search.epochs:
        start = time.perf_counter()
        train_epoch(st, tracker)
        end_epoch(st, tracker, time.perf_counter() - start)
    check_finite(st.arch.state_dict(), "search diverged: refusing to derive a genotype")
    genotype = derive_genotype(
        st.supernet,
        st.arch,
        max_skips=cfg.search.max_skips,
        method=cfg.search.method,
        seed=cfg.seed,
        search_time_s=round(sum(st.epoch_times), 2),
    )
    if st.latency_table is not None:
        genotype = genotype.replace(meta={**genotype.meta, "latency": latency_meta(st, genotype)})
    write_outputs(st, tracker, genotype)
    barrier(ctx)
    return genotype, st
