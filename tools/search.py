"""Search a video architecture: supernet with SDAS scheduled fixing, then evolution.

    torchrun tools/search.py recipe=sdas_video
    torchrun --nproc_per_node=2 tools/search.py recipe=sdas_video engine=deepspeed zero_stage=2
    python tools/search.py recipe=darts_video search.epochs=4 tracking=none

Writes everything to ``out_dir`` (default runs/<recipe>_<data>_s<seed>/); ``resume=true``
continues a killed run from its last checkpoint (and says so, writing nothing, of a finished
one). One process writes a run folder at a time (``run.lock``, see README "Resume and faults").
"""

from __future__ import annotations

from dataclasses import replace

import hydra
from omegaconf import DictConfig

import hybridnas  # noqa: F401  (compat shims before pytorchvideo / deepspeed)
from hybridnas.config import ConfigError, SearchRun
from hybridnas.data import build_dataset
from hybridnas.data.sanity import require_classes
from hybridnas.engine.distributed import DistContext
from hybridnas.engine.run import open_run
from hybridnas.errors import exit_on_user_error
from hybridnas.space.genotype import Genotype


def check_search_data(run: SearchRun, stage: str, ctx: DistContext) -> None:
    """Build the splits the stages read and refuse, before the run folder is touched, a
    built-in task its settings cannot render, a split of one class, or (differentiable) one
    too small for a batch. The stages build them again: a cached or indexed read."""
    from hybridnas.data.loader import build_loader, require_one_batch
    from hybridnas.search.differentiable.splits import search_datasets

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


def search_settings(cfg: DictConfig) -> tuple[SearchRun, Genotype | None]:
    """What the stages see of the config and the genotype evolution starts from; an impossible
    space or schedule, or stage=evolution without a genotype, stops here, before any data or
    run folder."""
    run = SearchRun.from_cfg(cfg)
    if cfg.stage in ("hybrid", "differentiable"):
        from hybridnas.search.differentiable.loop import supernet_config
        from hybridnas.search.differentiable.nse import check_pool
        from hybridnas.search.differentiable.sdas import FixSchedule

        check_pool(run.search.nse)
        try:
            supernet_config(run, num_classes=1)
            FixSchedule.from_config(run.search)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    if cfg.stage in ("hybrid", "evolution"):
        from hybridnas.search.evolution.fitness import check_scorers

        check_scorers(run.evolution.fitness)  # a scorer typo stops here, not after the supernet
    genotype = Genotype.load(cfg.genotype) if cfg.genotype else None
    if cfg.stage == "evolution" and genotype is None:
        raise ConfigError("stage=evolution needs genotype=<genotype.json or run folder>")
    return run, genotype


def run(cfg: DictConfig) -> Genotype | None:
    """Check the config, data and run folder, search, return the genotype (None when a
    ``resume=true`` finds the run finished); see ``hybridnas.engine.run.open_run``."""
    with open_run(
        cfg,
        tool="search",
        strict_resume=True,
        check=search_settings,
        accept=lambda settings, ctx: check_search_data(settings[0], cfg.stage, ctx),
    ) as r:
        if r is None:
            return None
        search_run, genotype = r.settings
        if cfg.stage in ("hybrid", "differentiable") and search_run.search.nse.rounds:
            from hybridnas.search.differentiable.nse import run_nse

            genotype, st = run_nse(search_run, r.ctx, r.run_dir, r.tracker)
            # evolution mutates within the last round's ops (model.op_names is the pool's place)
            model = replace(search_run.model, op_names=tuple(st.arch.op_names))
            search_run = replace(search_run, model=model)
        elif cfg.stage in ("hybrid", "differentiable"):
            from hybridnas.search.differentiable.loop import run_differentiable

            genotype, _ = run_differentiable(search_run, r.ctx, r.run_dir, r.tracker)
        if cfg.stage in ("hybrid", "evolution"):
            from hybridnas.search.evolution.loop import run_evolution

            genotype = run_evolution(search_run, r.ctx, r.run_dir, r.tracker, genotype)
        if r.ctx.is_main:
            print(f"[hybridnas] genotype written to {r.run_dir / 'genotype.json'}")
        return genotype


@hydra.main(version_base="1.3", config_path="../recipes", config_name="search")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error(cfg.out_dir):
        run(cfg)


if __name__ == "__main__":
    main()
