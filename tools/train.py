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
from hybridnas.config import TrainRun, config_changes
from hybridnas.data.sanity import require_classes
from hybridnas.engine.distributed import DistContext
from hybridnas.engine.run import open_run
from hybridnas.errors import exit_on_user_error
from hybridnas.train.clip import genotype_clip


def train_settings(cfg: DictConfig) -> TrainRun:
    """What the loop sees of the config; a searched genotype brings its own clip."""
    return genotype_clip(TrainRun.from_cfg(cfg))


def start_checked(cfg: DictConfig, run: TrainRun, ctx: DistContext):
    """The started TrainState (restored on ``resume=true``; another net's checkpoint is
    refused, naming what changed), refused when a split has one class or the data's streams
    are not the network's."""
    from hybridnas.models import check_model_streams
    from hybridnas.train.loop import start_training

    changes = config_changes(cfg, Path(cfg.out_dir)) if cfg.resume else []
    st = start_training(run, ctx, Path(cfg.out_dir), changes)
    require_classes("train", st.train_loader.dataset)
    require_classes("val", st.val_loader.dataset)
    check_model_streams(st.spec.name, st.spec.genotype, cfg.data.get("streams"))
    return st


def run(cfg: DictConfig):
    """Check the config, data and run folder, train, return the final TrainState (None when a
    ``resume=true`` finds the run finished); see ``hybridnas.engine.run.open_run``."""
    from hybridnas.train.loop import run_training

    with open_run(
        cfg,
        tool="train",
        strict_resume=False,
        check=train_settings,
        accept=lambda settings, ctx: start_checked(cfg, settings, ctx),
    ) as r:
        if r is None:
            return None
        st = run_training(r.prepared, r.tracker)
        if r.ctx.is_main:
            ckpts = r.run_dir / "checkpoints"
            print(f"[hybridnas] best val top-1 {st.best_acc:.4f}; checkpoints in {ckpts}")
        return st


@hydra.main(version_base="1.3", config_path="../recipes", config_name="train")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(cfg.out_dir):
        run(cfg)


if __name__ == "__main__":
    main()
