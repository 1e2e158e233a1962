"""Train (or fine-tune) one network: a genotype's or a baseline's.

Read top to bottom: ``setup`` builds data, model, optimizer, scheduler and EMA (timm's
factories) and restores the run's checkpoint; ``train_epoch`` is the step loop (mixup, AMP,
channels-last on GPU, clipping through ``WeightTrainer``); ``validate`` scores the val split;
``run_training`` strings them together. A checkpoint holds weights, EMA, optimizer, scheduler
position, RNG state of every rank and the data position, so a killed run resumes exactly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler
from timm.utils import ModelEmaV3
from tqdm import tqdm

from hybridnas.config import TrainConfig, TrainRun
from hybridnas.data import VideoMixup, build_dataset, build_loader, whole_train_set
from hybridnas.data.loader import require_one_batch
from hybridnas.data.patchmix import PatchMix, build_mixer
from hybridnas.engine.backend import WeightTrainer
from hybridnas.engine.checkpoint import CheckpointError, check_loss
from hybridnas.engine.distributed import DistContext, all_reduce_mean_
from hybridnas.engine.resume import restore_resumable, save_resumable
from hybridnas.engine.tracking import Tracker
from hybridnas.models import ModelSpec, check_fingerprint, init_weights, model_spec

LAST = "checkpoints/last.pt"
BEST = "checkpoints/best.pt"


@dataclass
class TrainState:
    """Everything the loop mutates; ``checkpoint_state`` / ``restore`` make it resumable."""

    cfg: TrainRun
    ctx: DistContext
    run_dir: Path
    spec: ModelSpec
    model: torch.nn.Module
    trainer: WeightTrainer
    scheduler: Any
    ema: ModelEmaV3 | None
    amp: bool
    train_loader: Any
    val_loader: Any
    mixup: VideoMixup | PatchMix | None
    steps_per_epoch: int
    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    best_acc: float = 0.0
    running: dict = field(default_factory=dict)
    history: list = field(default_factory=list)


def make_scheduler(
    optimizer: torch.optim.Optimizer, t: TrainConfig, updates_per_epoch: int
) -> Scheduler:
    """timm's ``t.sched`` scheduler, stepped per update: a linear warm-up from 1% of ``t.lr``
    over ``t.warmup_epochs`` epochs (a fraction is fine: 0.5 warms up over half an epoch's
    updates), then the schedule down to ``t.min_lr`` by ``t.epochs``."""
    return create_scheduler_v2(
        optimizer,
        sched=t.sched,
        num_epochs=t.epochs,
        warmup_epochs=t.warmup_epochs,
        warmup_lr=t.lr * 0.01,
        min_lr=t.min_lr,
        step_on_epochs=False,
        updates_per_epoch=updates_per_epoch,
    )[0]


def setup(cfg: TrainRun, ctx: DistContext, run_dir: Path) -> TrainState:
    """Data, model (from ``init_from`` if set), optimizer, scheduler, EMA and mixup."""
    t, dcfg = cfg.train, cfg.data.dataset
    train_set = whole_train_set(dcfg)
    val_set = build_dataset(dcfg, "val" if cfg.data.name != "builtin" else "test")
    loader = dict(workers=cfg.data.workers, rank=ctx.rank, world_size=ctx.world_size)
    train_loader = build_loader(
        train_set,
        batch_size=cfg.data.batch_size,
        train=True,
        seed=cfg.seed,
        **loader,
    )
    require_one_batch("train", train_set, train_loader, ctx.world_size)
    val_loader = build_loader(val_set, batch_size=cfg.data.batch_size, train=False, **loader)
    spec = model_spec(cfg.model, cfg.data, train_set.num_classes)

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = spec.build()
    if cfg.init_from:
        init_weights(model, spec, cfg.init_from)
    on_gpu = ctx.device.type == "cuda"
    model = model.to(ctx.device, memory_format=torch.channels_last_3d if on_gpu else None)
    optimizer = create_optimizer_v2(
        model, opt=t.opt, lr=t.lr, weight_decay=t.weight_decay, momentum=t.momentum
    )
    trainer = WeightTrainer(
        model,
        optimizer,
        ctx,
        engine=cfg.engine,
        zero_stage=cfg.zero_stage,
        grad_clip=t.grad_clip or None,
        micro_batch_size=cfg.data.batch_size,
    )
    steps = (
        len(train_loader) if not t.steps_per_epoch else min(len(train_loader), t.steps_per_epoch)
    )
    scheduler = make_scheduler(trainer.optimizer, t, steps)
    ema = ModelEmaV3(model, decay=t.ema_decay, use_warmup=True) if t.ema else None
    amp = bool(t.amp) and on_gpu and cfg.engine != "deepspeed"  # bf16: no loss scaling
    mixup = build_mixer(t, train_set.num_classes, model)
    return TrainState(
        cfg,
        ctx,
        run_dir,
        spec,
        model,
        trainer,
        scheduler,
        ema,
        amp,
        train_loader,
        val_loader,
        mixup,
        steps,
    )


def checkpoint_state(st: TrainState) -> dict:
    return {
        "model_spec": st.spec.to_dict(),
        "fingerprint": st.spec.fingerprint(),
        "weights": st.trainer.state_dict(),
        "ema": st.ema.module.state_dict() if st.ema else None,
        "epoch": st.epoch,
        "batch_in_epoch": st.batch_in_epoch,
        "global_step": st.global_step,
        "best_acc": st.best_acc,
        "running": st.running,
        "history": st.history,
    }


def save(st: TrainState, path: str = LAST) -> None:
    """Collective: checkpoint the run to ``path`` (the engine part only with ``LAST``)."""
    save_resumable(
        st.run_dir / path,
        checkpoint_state(st),
        st.ctx,
        step=f"e{st.epoch:04d}b{st.batch_in_epoch:06d}",  # unique per save, known to every rank
        diverged=f"training diverged at epoch {st.epoch}",
        trainer=st.trainer if path == LAST else None,
    )


def put_back(st: TrainState, ckpt: dict, path: Path, changes: Sequence[str]) -> None:
    """Restore ``st`` from ``ckpt``; another network's checkpoint is refused, naming
    ``changes``."""
    try:
        check_fingerprint(ckpt["fingerprint"], st.spec.fingerprint(), path)
    except CheckpointError as err:
        raise CheckpointError(
            f"{err}" + (f" (changed since it started: {'; '.join(changes)})" if changes else "")
        ) from None
    st.trainer.load_state_dict(ckpt["weights"])
    if st.ema and ckpt["ema"]:
        st.ema.module.load_state_dict(ckpt["ema"])
    st.epoch, st.batch_in_epoch = ckpt["epoch"], ckpt["batch_in_epoch"]
    st.global_step, st.best_acc = ckpt["global_step"], ckpt["best_acc"]
    st.running, st.history = ckpt["running"], ckpt["history"]


def restore(st: TrainState, path: Path, changes: Sequence[str] = ()) -> None:
    """Collective: resume from ``path`` (see :func:`put_back`)."""
    restore_resumable(
        path,
        st.ctx,
        lambda ckpt: put_back(st, ckpt, path, changes),
        trainer=st.trainer,
        map_location=st.ctx.device,
    )


# ---------------------------------------------------------------- the loop


def train_epoch(st: TrainState, tracker: Tracker) -> None:
    """One pass over this rank's shard; resumes mid-epoch at ``st.batch_in_epoch``."""
    t, device = st.cfg.train, st.ctx.device
    soft_loss = SoftTargetCrossEntropy()
    hard_loss = (
        LabelSmoothingCrossEntropy(t.label_smoothing)
        if t.label_smoothing
        else torch.nn.CrossEntropyLoss()
    )
    st.model.train()
    if hasattr(st.model, "set_drop_path"):
        st.model.set_drop_path(t.drop_path * st.epoch / max(t.epochs, 1))  # DARTS ramp
    st.train_loader.sampler.set_epoch(st.epoch)
    st.train_loader.sampler.set_start_batch(st.batch_in_epoch)
    autocast = torch.autocast("cuda", torch.bfloat16) if st.amp else contextlib.nullcontext()
    bar = tqdm(
        total=st.steps_per_epoch,
        initial=st.batch_in_epoch,
        disable=not st.ctx.is_main,
        desc=f"train epoch {st.epoch}",
        leave=False,
    )
    for x, y in st.train_loader:
        if st.batch_in_epoch >= st.steps_per_epoch:
            break
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last_3d)
        target = y
        if st.mixup is not None:
            x, target = st.mixup(x, y)
        st.scheduler.step_update(st.global_step)
        with autocast:
            logits = st.trainer(x)
            loss = (soft_loss if st.mixup is not None else hard_loss)(logits.float(), target)
            if isinstance(st.mixup, PatchMix):
                loss = loss + st.mixup.extra_loss()
        st.trainer.step(loss)
        where = f"train epoch {st.epoch}, step {st.batch_in_epoch}"
        loss = check_loss(float(loss.detach()), where, f"train.lr={t.lr}")
        if st.ema is not None:
            st.ema.update(st.model, step=st.global_step)
        st.running["loss"] = st.running.get("loss", 0.0) + loss * len(y)
        st.running["correct"] = st.running.get("correct", 0.0) + float(
            (logits.argmax(1) == y).sum()
        )
        st.running["seen"] = st.running.get("seen", 0) + len(y)
        st.batch_in_epoch += 1
        st.global_step += 1
        bar.update(1)
        if t.log_every_steps and st.global_step % t.log_every_steps == 0:
            lr = st.trainer.param_groups[0]["lr"]
            tracker.log({"train/step_loss": loss, "lr": lr}, step=st.global_step)
        if t.ckpt_every_steps and st.batch_in_epoch % t.ckpt_every_steps == 0:
            save(st)
    bar.close()


@torch.no_grad()
def validate(model: torch.nn.Module, loader: Any, ctx: DistContext) -> dict:
    """Single-view top-1 / top-5 accuracy and loss over this rank's shard, averaged over ranks."""
    model.eval()
    sums = torch.zeros(4, device=ctx.device)  # loss, top1, top5, seen
    for x, y in loader:
        x, y = x.to(ctx.device), y.to(ctx.device)
        logits = model(x).float()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        sums += torch.stack(
            [
                torch.nn.functional.cross_entropy(logits, y, reduction="sum"),
                (top5[:, 0] == y).sum(),
                (top5 == y[:, None]).any(1).sum(),
                torch.tensor(float(len(y)), device=ctx.device),
            ]
        )
    if ctx.world_size > 1:
        all_reduce_mean_([sums], ctx)
    n = max(float(sums[3]), 1.0)
    return {
        "val/loss": float(sums[0]) / n,
        "val/top1": float(sums[1]) / n,
        "val/top5": float(sums[2]) / n,
    }


def end_epoch(st: TrainState, tracker: Tracker, seconds: float) -> dict:
    """Validate (EMA weights when kept), log, checkpoint last and best."""
    r = st.running
    metrics = {
        "epoch": st.epoch,
        "train/loss": r.get("loss", 0.0) / max(r.get("seen", 1), 1),
        "train/acc": r.get("correct", 0.0) / max(r.get("seen", 1), 1),
        "lr": st.trainer.param_groups[0]["lr"],
        "time/epoch_s": seconds,
    }
    metrics |= validate(st.ema.module if st.ema else st.model, st.val_loader, st.ctx)
    check_loss(metrics["val/loss"], f"validation after epoch {st.epoch}", "val/loss")
    tracker.log(metrics, step=st.global_step)
    if st.ctx.is_main:
        print(
            f"[hybridnas] epoch {st.epoch}: "
            + " ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k != "epoch")
        )
    st.history.append(metrics)
    st.epoch, st.batch_in_epoch, st.running = st.epoch + 1, 0, {}
    is_best = metrics["val/top1"] >= st.best_acc
    st.best_acc = max(st.best_acc, metrics["val/top1"])
    save(st)
    if is_best:
        save(st, BEST)
    return metrics


def start_training(
    cfg: TrainRun, ctx: DistContext, run_dir: Path, changes: Sequence[str] = ()
) -> TrainState:
    """Build the run and restore ``resume=true``'s checkpoint; writes nothing, so a refused
    resume leaves the run folder as it was (its message names ``changes``, see ``restore``)."""
    st = setup(cfg, ctx, run_dir)
    ckpt = run_dir / LAST
    if cfg.resume and ckpt.is_file():
        restore(st, ckpt, changes)
        if ctx.is_main:
            print(f"[hybridnas] resumed training at epoch {st.epoch}, batch {st.batch_in_epoch}")
    return st


def run_training(st: TrainState, tracker: Tracker) -> TrainState:
    """Train a started run for ``train.epochs``; returns the final state (weights in
    ``st.model``)."""
    cfg, ctx = st.cfg, st.ctx
    if ctx.is_main:
        st.train_loader.dataset.save_class_index(st.run_dir / "classes.json")
    while st.epoch < cfg.train.epochs:
        start = time.perf_counter()
        train_epoch(st, tracker)
        end_epoch(st, tracker, time.perf_counter() - start)
    if ctx.is_main:
        tracker.summary(
            {"val/best_top1": st.best_acc, "params": sum(p.numel() for p in st.model.parameters())}
        )
    return st
