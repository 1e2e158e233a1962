"""Search a video architecture: supernet with SDAS scheduled fixing, then evolution.

    torchrun tools/search.py recipe=sdas_video
    torchrun --nproc_per_node=2 tools/search.py recipe=sdas_video engine=deepspeed zero_stage=2
    python tools/search.py recipe=darts_video search.epochs=4 tracking=none

Writes everything to ``out_dir`` (default runs/<recipe>_<data>_s<seed>/); ``resume=true``
continues a killed run from its last checkpoint (and says so, writing nothing, of a finished
one). One process writes a run folder at a time (``run.lock``, see README "Resume and faults").
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

import hybridnas  # noqa: F401  (compat shims before pytorchvideo / deepspeed)
from hybridnas.config import (
    ConfigError,
    SearchRun,
    check_config,
    check_data_root,
    check_run_dir,
    prepare_run_dir,
    reopen_run_logs,
)
from hybridnas.data import build_dataset
from hybridnas.data.sanity import require_classes
from hybridnas.engine.distributed import (
    DistContext,
    barrier,
    cleanup,
    init_distributed,
    set_cpu_threads,
)
from hybridnas.engine.runlock import (
    acquire_run_lock,
    finished_note,
    mark_finished,
    unmark_finished,
)
from hybridnas.engine.tracking import tracker_for_run
from hybridnas.errors import exit_on_user_error
from hybridnas.space.genotype import Genotype


def check_search_data(run: SearchRun, stage: str, ctx: DistContext) -> None:
    """Build the splits the stages read and refuse, before the run folder is touched, a
    built-in task its settings cannot render, a split of one class, or (differentiable) one
    too small for a batch. The stages build them again: a cached or indexed read."""
    from hybridnas.data.loader import build_loader, require_one_batch
    from hybridnas.search.splits import search_datasets

    splits, batched = {}, set()
    if stage in ("hybrid", "differentiable"):
        weights, alphas, how = search_datasets(run.data, run.search.alpha_split)
        names = ("train", "search_val")
        if how == "half_train":
            names = ("train (weight half)", "train (alpha half)")
        splits, batched = dict(zip(names, (weights, alphas), strict=True)), set(names)
    if stage in ("hybrid", "evolution"):
        for split in ("train", "search_val"):
            splits.setdefault(split, build_dataset(run.data.dataset, split))
    for split, data in splits.items():
        require_classes(split, data)
        if split in batched:
            loader = build_loader(
                data, batch_size=run.data.batch_size, train=True, rank=ctx.rank,
                world_size=ctx.world_size, drop_last=True,
            )  # fmt: skip
            require_one_batch(split, data, loader, ctx.world_size)


def run(cfg: DictConfig) -> Genotype | None:
    """Check the config, data and run folder, search, return the genotype (None when a
    ``resume=true`` finds the run finished). Nothing is written to the run folder before the
    run (or its resume) is accepted, and only the process holding its lock writes it."""
    check_config(cfg, "search")
    if cfg.resume and (note := finished_note(cfg)):
        print(note)
        return None
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
    if cfg.stage in ("hybrid", "evolution"):
        from hybridnas.search.fitness import check_scorers

        check_scorers(run.evolution.fitness)  # a scorer typo stops here, not after the supernet
    genotype = Genotype.load(cfg.genotype) if cfg.genotype else None
    if cfg.stage == "evolution" and genotype is None:
        raise ConfigError("stage=evolution needs genotype=<genotype.json or run folder>")
    check_run_dir(cfg, strict_resume=True)
    ctx = init_distributed()
    if ctx.device.type == "cpu":
        set_cpu_threads(cfg.threads)
    check_search_data(run, cfg.stage, ctx)
    lock = acquire_run_lock(Path(cfg.out_dir), ctx)  # held until this process ends
    run_dir = prepare_run_dir(cfg, ctx.is_main)
    if lock:
        lock.follow()  # overwrite=true moved the old folder, its lock file with it
        unmark_finished(run_dir)
    barrier(ctx)
    reopen_run_logs(run_dir)  # rank 0 may have moved the old run (overwrite=true) aside
    tracker = tracker_for_run(cfg, run_dir, ctx.rank)
    try:
        if cfg.stage in ("hybrid", "differentiable"):
            from hybridnas.search.differentiable import run_differentiable

            genotype, _ = run_differentiable(run, ctx, run_dir, tracker)
        if cfg.stage in ("hybrid", "evolution"):
            from hybridnas.search.evolution import run_evolution

            genotype = run_evolution(run, ctx, run_dir, tracker, genotype)
        if ctx.is_main:
            mark_finished(run_dir, "search")
            print(f"[hybridnas] genotype written to {run_dir / 'genotype.json'}")
        return genotype
    finally:
        tracker.finish()
        cleanup()
        if lock:
            lock.release()


@hydra.main(version_base="1.3", config_path="../recipes", config_name="search")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(cfg.out_dir):
        run(cfg)


if __name__ == "__main__":
    main()
