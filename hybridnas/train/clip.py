"""The clip a genotype trains on: its own when the evolution searched it on this dataset."""

from __future__ import annotations

from dataclasses import replace

from hybridnas.config import TrainRun
from hybridnas.models import BUILTIN_GENOTYPE
from hybridnas.space.genotype import Genotype


def genotype_clip(cfg: TrainRun) -> TrainRun:
    """A genotype whose evolution searched its clip on this dataset (meta ``clip_searched``
    names it) trains on that clip: ``data.frames``, ``data.size`` and ``data.frame_stride``
    become the genotype's, so ``genotype=runs/<search>/family/<k>.json`` needs no data
    overrides; on another dataset (fine-tuning elsewhere) the data's clip stays."""
    m = cfg.model
    if m.name != "genotype" or not m.genotype:
        return cfg
    g = Genotype.load(BUILTIN_GENOTYPE if m.genotype == "builtin" else m.genotype)
    if g.meta.get("clip_searched") != cfg.data.name:
        return cfg
    clip = {"frames": g.frames, "size": g.size, "frame_stride": g.frame_stride}
    return replace(cfg, data=replace(cfg.data, dataset=replace(cfg.data.dataset, **clip)))
