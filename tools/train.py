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

import sys

import hydra
from omegaconf import DictConfig

import hybridnas  # noqa: F401  (compat shims before pytorchvideo / deepspeed)
from hybridnas.config import ConfigError, check_config, prepare_run_dir
from hybridnas.engine.checkpoint import CheckpointError
from hybridnas.engine.distributed import cleanup, init_distributed, set_cpu_threads
from hybridnas.engine.tracking import tracker_for_run
from hybridnas.space.genotype import GenotypeError


def run(cfg: DictConfig):
    """Check the config and data, train, return the final TrainState."""
    from hybridnas.train.loop import check_data_root, run_training

    check_config(cfg, "train")
    check_data_root(cfg)
    ctx = init_distributed()
    if ctx.device.type == "cpu":
        set_cpu_threads(cfg.threads)
    try:
        run_dir = prepare_run_dir(cfg, ctx.is_main)
        tracker = tracker_for_run(cfg, run_dir, ctx.rank)
        try:
            st = run_training(cfg, ctx, run_dir, tracker)
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
    try:
        run(cfg)
    except (ConfigError, GenotypeError, CheckpointError, FileNotFoundError) as err:
        print(f"hybridnas: error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
