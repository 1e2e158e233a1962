"""Train or fine-tune a network from a found genotype (or a baseline) and keep its checkpoints.

    python tools/train.py recipe=train_builtin genotype=builtin
    python tools/train.py recipe=train_builtin model.name=x3d_xs
    torchrun --nproc_per_node=8 tools/train.py recipe=finetune_kinetics400 \
        genotype=runs/<search>/genotype.json data.root=/data/k400 [init_from=runs/<search>]
    torchrun --nproc_per_node=2 tools/train.py recipe=train_builtin genotype=builtin \
        engine=deepspeed zero_stage=2

Writes ``out_dir``: config.yaml, classes.json, checkpoints/{last,best}.pt, metrics and a W&B run;
``resume=true`` continues a killed run exactly from checkpoints/last.pt (and says so, writing
nothing, of a finished one). One process writes a run folder at a time (``run.lock``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import hybridnas  # noqa: F401  (compat shims before pytorchvideo / deepspeed)
from hybridnas.config import (
    TrainRun,
    check_config,
    check_data_root,
    check_run_dir,
    config_changes,
    prepare_run_dir,
    reopen_run_logs,
)
from hybridnas.data.sanity import require_classes
from hybridnas.engine.distributed import barrier, cleanup, init_distributed, set_cpu_threads
from hybridnas.engine.runlock import (
    acquire_run_lock,
    finished_note,
    mark_finished,
    unmark_finished,
)
from hybridnas.engine.tracking import tracker_for_run
from hybridnas.errors import exit_on_user_error
from hybridnas.train.clip import genotype_clip


def run(cfg: DictConfig):
    """Check the config, data and run folder, train, return the final TrainState (None when a
    ``resume=true`` finds the run finished). Nothing is written to the run folder before the
    run (or its resume) is accepted, and only the process holding its lock writes it."""
    from hybridnas.models import check_model_streams
    from hybridnas.train.loop import run_training, start_training

    check_config(cfg, "train")
    if cfg.resume and (note := finished_note(cfg)):
        print(note)
        return None
    check_data_root(cfg)
    check_run_dir(cfg, strict_resume=False)
    run = genotype_clip(TrainRun.from_cfg(cfg))  # a searched genotype brings its own clip
    changes = config_changes(cfg, Path(cfg.out_dir)) if cfg.resume else []
    ctx = init_distributed()
    if ctx.device.type == "cpu":
        set_cpu_threads(cfg.threads)
    lock = None
    try:
        st = start_training(run, ctx, Path(cfg.out_dir), changes)  # refuses another net's
        require_classes("train", st.train_loader.dataset)
        require_classes("val", st.val_loader.dataset)
        check_model_streams(st.spec.name, st.spec.genotype, cfg.data.get("streams"))
        lock = acquire_run_lock(Path(cfg.out_dir), ctx)  # held until this process ends
        run_dir = prepare_run_dir(cfg, ctx.is_main, strict_resume=False)
        if lock:
            lock.follow()  # overwrite=true moved the old folder, its lock file with it
        unmark_finished(run_dir)
        barrier(ctx)
        reopen_run_logs(run_dir)  # rank 0 may have moved the old run (overwrite=true) aside
        tracker = tracker_for_run(cfg, run_dir, ctx.rank)
        try:
            st = run_training(st, tracker)
            if ctx.is_main:
                mark_finished(run_dir, "train")
                ckpts = run_dir / "checkpoints"
                print(f"[hybridnas] best val top-1 {st.best_acc:.4f}; checkpoints in {ckpts}")
            return st
        finally:
            tracker.finish()
    finally:
        cleanup()
        if lock:
            lock.release()


@hydra.main(version_base="1.3", config_path="../recipes", config_name="train")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(cfg.out_dir):
        run(cfg)


if __name__ == "__main__":
    main()
