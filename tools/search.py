"""Search a video architecture: supernet with SDAS scheduled fixing, then evolution.

    torchrun tools/search.py recipe=sdas_video
    torchrun --nproc_per_node=2 tools/search.py recipe=sdas_video engine=deepspeed zero_stage=2
    python tools/search.py recipe=darts_video search.epochs=4 tracking=none

Writes everything to ``out_dir`` (default runs/<recipe>_<data>_s<seed>/); ``resume=true``
continues a killed run from its last checkpoint.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import hybridnas  # noqa: F401  (compat shims before pytorchvideo / deepspeed)
from hybridnas.config import (
    ConfigError,
    check_config,
    check_data_root,
    check_run_dir,
    prepare_run_dir,
    reopen_run_logs,
)
from hybridnas.engine.distributed import barrier, cleanup, init_distributed, set_cpu_threads
from hybridnas.engine.tracking import tracker_for_run
from hybridnas.errors import exit_on_user_error
from hybridnas.space.genotype import Genotype
from hybridnas.stage_config import SearchRun


def run(cfg: DictConfig) -> Genotype:
    """Check the config, data and run folder, search, return the genotype. Nothing is written
    to the run folder before the run (or its resume) is accepted."""
    check_config(cfg, "search")
    check_data_root(cfg)
    run = SearchRun.from_cfg(cfg)  # what the stages see of the config
    if cfg.stage in ("hybrid", "differentiable"):
        from hybridnas.search.differentiable import supernet_config
        from hybridnas.search.sdas import FixSchedule

        try:  # an impossible space or schedule stops here, before any data or run folder
            supernet_config(run, num_classes=1)
            FixSchedule.from_config(run.search)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    check_run_dir(cfg, strict_resume=True)
    ctx = init_distributed()
    if ctx.device.type == "cpu":
        set_cpu_threads(cfg.threads)
    run_dir = prepare_run_dir(cfg, ctx.is_main)
    barrier(ctx)
    reopen_run_logs(run_dir)  # rank 0 may have moved the old run (overwrite=true) aside
    tracker = tracker_for_run(cfg, run_dir, ctx.rank)
    try:
        genotype = Genotype.load(cfg.genotype) if cfg.genotype else None
        if cfg.stage in ("hybrid", "differentiable"):
            from hybridnas.search.differentiable import run_differentiable

            genotype, _ = run_differentiable(run, ctx, run_dir, tracker)
        if cfg.stage in ("hybrid", "evolution"):
            if genotype is None:
                raise ConfigError("stage=evolution needs genotype=<genotype.json or run folder>")
            from hybridnas.search.evolution import run_evolution

            genotype = run_evolution(run, ctx, run_dir, tracker, genotype)
        if ctx.is_main:
            print(f"[hybridnas] genotype written to {run_dir / 'genotype.json'}")
        return genotype
    finally:
        tracker.finish()
        cleanup()


@hydra.main(version_base="1.3", config_path="../recipes", config_name="search")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        run(cfg)


if __name__ == "__main__":
    main()
