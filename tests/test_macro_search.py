"""Macro axes of the evolution (TinyVideoNets / X3D): clip frames, frame stride and size,
depth and width multiplier; the genotype that carries them; the data a genotype trains on;
and the family of genotypes spanning the latency range."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hybridnas.config import (
    ConfigError,
    DataConfig,
    EvolutionConfig,
    ModelConfig,
    SearchRun,
    TrainRun,
)
from hybridnas.data import build_dataset
from hybridnas.search.evolution.family import pick_family, write_family
from hybridnas.search.evolution.fitness import clip_view
from hybridnas.search.evolution.macro_mutations import (
    MacroRanges,
    change_clip,
    change_depth,
    macro_ranges,
    scale_width,
)
from hybridnas.search.evolution.mutations import Guidance, mutate
from hybridnas.search.scorers.proxy import ProxyData
from hybridnas.space.genotype import CellSpec, Genotype, GenotypeError
from hybridnas.train.clip import genotype_clip

CELL = CellSpec(((0, 2, "conv3d_3x3x3"), (1, 2, "skip")), (2,))
RANGES = MacroRanges(frames=(4, 8), frame_stride=(1, 2), size=(16, 24), num_cells=(3, 4),
                     width_mults=(0.5, 2.0), span=8)  # fmt: skip


def _genotype(**macro) -> Genotype:
    base = {"stage_widths": (8, 16, 16), "num_cells": 3, "stem_channels": 8, "frames": 8,
            "size": 16}  # fmt: skip
    return Genotype(CELL, CELL, **{**base, **macro})


def test_frame_stride_is_version_3_and_older_genotypes_keep_their_bytes():
    plain = _genotype()
    assert plain.to_dict()["version"] == 1 and "frame_stride" not in plain.to_dict()["clip"]
    strided = plain.replace(frame_stride=2)
    doc = strided.to_dict()
    assert doc["version"] == 3 and doc["clip"]["frame_stride"] == 2
    assert Genotype.from_dict(doc).frame_stride == 2
    assert Genotype.from_dict(plain.to_dict()).frame_stride == 1
    old = {**doc, "version": 2, "streams": ["rgb"]}
    with pytest.raises(GenotypeError, match="frame_stride' needs 'version' 3"):
        Genotype.from_dict(old)
    bad = json.loads(strided.to_json())
    bad["clip"]["frame_stride"] = 0
    with pytest.raises(GenotypeError, match="clip.frame_stride"):
        Genotype.from_dict(bad)


def test_macro_mutations_stay_in_their_ranges():
    rng = np.random.default_rng(0)
    g = _genotype()
    for _ in range(40):
        child, info = change_clip(g, rng, RANGES)
        assert child.frames * child.frame_stride <= RANGES.span
        assert child.frames in RANGES.frames and child.size in RANGES.size
        assert child.key() != g.key() and info["kind"] == "change_clip"
        deeper, _ = change_depth(g, rng, RANGES)
        assert deeper.num_cells == 4
        g = child
    at_max = _genotype(num_cells=4)
    assert change_depth(at_max, rng, RANGES)[0].num_cells == 3
    wide, info = scale_width(_genotype(), rng, RANGES)
    assert wide.stage_widths in ((4, 8, 8), (16, 32, 32)) and wide.stem_channels in (4, 16)
    assert all(w % 4 == 0 for w in wide.stage_widths)


def test_mutate_draws_macro_kinds_by_their_probabilities():
    rng = np.random.default_rng(1)
    kinds = set()
    for _ in range(30):
        _, info = mutate(_genotype(), rng, Guidance.uniform(["skip", "conv3d_3x3x3"]),
                         probs=(0, 0, 0, 0, 0, 1, 1, 1), macro=RANGES)  # fmt: skip
        kinds.add(info["kind"])
    assert kinds == {"change_clip", "change_depth", "scale_width"}


def test_bad_macro_ranges_get_one_line():
    with pytest.raises(ConfigError, match="macro_num_cells"):
        EvolutionConfig(macro_num_cells=(2, 5))
    with pytest.raises(ConfigError, match="macro_frame_scales"):
        EvolutionConfig(macro_frame_scales=())


def test_macro_ranges_scale_with_the_data():
    builtin = macro_ranges(SearchRun())
    assert (builtin.frames, builtin.size, builtin.span) == ((4, 8), (24, 32), 8)
    strided = SearchRun(evolution=EvolutionConfig(macro_frame_stride=(1, 2)))
    assert macro_ranges(strided).span == 16  # the evolution loads clips of 8 x 2 frames
    video = macro_ranges(SearchRun(data=DataConfig(dataset={"name": "folder", "root": "x"})))
    assert (video.frames, video.size) == ((4, 8), (84, 112))  # 112 px clips: not 24 px
    fixed = EvolutionConfig(mutation_probs=(0.4, 0.4, 0.2))
    assert macro_ranges(SearchRun(evolution=fixed)).span == 8  # the clip cannot move


def test_proxy_clips_follow_the_candidate_clip():
    x = torch.arange(2 * 3 * 8 * 16 * 16, dtype=torch.float32).reshape(2, 3, 8, 16, 16)
    data = ProxyData(x, torch.zeros(2), x, torch.zeros(2))
    assert clip_view(data, _genotype(), 16, 16) is data  # the clip the data holds
    view = clip_view(data, _genotype(frames=4, frame_stride=2, size=24), 16, 16)
    assert view.train_x.shape == (2, 3, 4, 24, 24)
    small = clip_view(data, _genotype(frames=4, frame_stride=2), 16, 16).train_x
    assert torch.equal(small, x[:, :, ::2])
    with pytest.raises(ValueError, match="needs 16 frames"):
        clip_view(data, _genotype(frame_stride=2), 16, 16)


def test_builtin_frame_stride_keeps_every_nth_rendered_frame(tmp_path):
    cfg = {"name": "builtin", "frames": 4, "size": 16, "digit_px": 6, "num_train": 8,
           "num_search_val": 4, "num_test": 4, "cache_dir": str(tmp_path)}  # fmt: skip
    strided = build_dataset({**cfg, "frame_stride": 2}, "train")
    full = build_dataset({**cfg, "frames": 8}, "train")
    assert strided[0][0].shape == (3, 4, 16, 16)
    assert torch.equal(strided[0][0], full[0][0][:, ::2])


def test_training_a_searched_genotype_uses_its_clip(tmp_path):
    g = _genotype(frames=4, frame_stride=2, size=24).replace(meta={"clip_searched": "builtin"})
    path = tmp_path / "g.json"
    g.save(path)
    run = TrainRun(model=ModelConfig(genotype=str(path)), data=DataConfig())
    data = genotype_clip(run).data
    assert (data.frames, data.size, data.get("frame_stride")) == (4, 24, 2)
    g.replace(meta={}).save(path)  # a genotype whose clip was not searched: the data's clip
    assert genotype_clip(run).data == run.data
    g.replace(meta={"clip_searched": "kinetics400"}).save(path)  # searched on other data
    assert genotype_clip(run).data == run.data


def _history():
    rows = [(0.5, 1.0), (0.6, 2.0), (0.55, 2.5), (0.7, 3.0), (0.8, 5.0), (0.75, 6.0)]
    g = _genotype()
    return [{"score": s, "latency_ms": ms, "flops": 1, "key": f"k{i}",
             "genotype": g.replace(size=16 + 8 * (i % 2)).to_json()}
            for i, (s, ms) in enumerate(rows)]  # fmt: skip


def test_family_spans_the_latency_range(tmp_path):
    h = _history()
    assert [i for i, _ in pick_family(h, [2.0, 3.5, 10.0], 4)] == [1, 3, 4]
    assert [i for i, _ in pick_family(h, [5.0, 5.0], 4)] == [3, 4]  # distinct where possible
    assert pick_family(h, [0.5], 4) == []  # nothing that fast
    front = [i for i, _ in pick_family(h, [], 3)]
    assert front == [0, 3, 4]  # fastest, middle and best of the front 0, 1, 3, 4
    paths = write_family(h, tmp_path, [2.0, 3.5], 4, {"clip_searched": "builtin"})
    assert [p.name for p in paths] == ["1.json", "2.json"] and (tmp_path / "family.png").is_file()
    meta = Genotype.load(paths[1]).meta
    assert meta["family"]["k"] == 2 and meta["family"]["target_ms"] == 3.5
    assert meta["clip_searched"] == "builtin"
