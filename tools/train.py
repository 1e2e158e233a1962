"""Train or fine-tune a network from a found genotype (or a baseline) and keep its checkpoints.

    python tools/train.py recipe=train_builtin genotype=builtin
    python tools/train.py recipe=train_builtin model.name=x3d_xs
    torchrun --nproc_per_node=8 tools/train.py recipe=finetune_kinetics400 \
        genotype=runs/<search>/genotype.json data.root=/data/k400 [init_from=runs/<search>]
    torchrun --nproc_per_node=2 tools/train.py recipe=train_builtin genotype=builtin \
        engine=deepspeed zero_stage=2

Writes ``out_dir``: config.yaml, classes.json, checkpoints/{last,best}.pt, metrics and a W&B run;
``resume=true`` continues a killed run exactly from checkpoints/last.pt.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import hybridnas  # noqa: F401  (compat shims before pytorchvideo / deepspeed)
from hybridnas.config import (
    check_config,
    check_data_root,
    check_run_dir,
    config_changes,
    prepare_run_dir,
    reopen_run_logs,
)
from hybridnas.engine.distributed import barrier, cleanup, init_distributed, set_cpu_threads
from hybridnas.engine.tracking import tracker_for_run
from hybridnas.errors import exit_on_user_error
from hybridnas.stage_config import TrainRun
from hybridnas.train.clip import genotype_clip


def run(cfg: DictConfig):
    """Check the config, data and run folder, train, return the final TrainState. Nothing is
    written to the run folder before the run (or its resume) is accepted."""
    from hybridnas.models import check_model_streams
    from hybridnas.train.loop import run_training, start_training

    check_config(cfg, "train")
    check_data_root(cfg)
    check_run_dir(cfg, strict_resume=False)
    run = genotype_clip(TrainRun.from_cfg(cfg))  # a searched genotype brings its own clip
    changes = config_changes(cfg, Path(cfg.out_dir)) if cfg.resume else []
    ctx = init_distributed()
    if ctx.device.type == "cpu":
        set_cpu_threads(cfg.threads)
    try:
        st = start_training(run, ctx, Path(cfg.out_dir), changes)  # refuses another net's
        check_model_streams(st.spec.name, st.spec.genotype, cfg.data.get("streams"))
        run_dir = prepare_run_dir(cfg, ctx.is_main, strict_resume=False)
        barrier(ctx)
        reopen_run_logs(run_dir)  # rank 0 may have moved the old run (overwrite=true) aside
        tracker = tracker_for_run(cfg, run_dir, ctx.rank)
        try:
            st = run_training(st, tracker)
            if ctx.is_main:
                ckpts = run_dir / "checkpoints"
                print(f"[hybridnas] best val top-1 {st.best_acc:.4f}; checkpoints in {ckpts}")
            return st
        finally:
            tracker.finish()
    finally:
        cleanup()


@hydra.main(version_base="1.3", config_path="../recipes", config_name="train")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    main()
