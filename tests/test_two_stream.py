"""Two streams (issue 15, part 3): RGB and motion (frame differences) from the data layer, a
version-2 genotype that records them, one stem each feeding the first cell's two inputs, the
supernet searching that, and ONNX export of the result."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import TINY_DATA as TINY_DATA_OVERRIDES
from videos import write_video

from hybridnas.config import ConfigError
from hybridnas.data import build_dataset
from hybridnas.data.builtin import MEAN, STD
from hybridnas.data.streams import add_streams, frame_difference
from hybridnas.export import export_onnx
from hybridnas.models import BUILTIN_GENOTYPE, check_model_streams
from hybridnas.space.genotype import CellSpec, Genotype, GenotypeError
from hybridnas.space.network import build_network
from hybridnas.space.supernet import Supernet, SupernetConfig, derive_genotype

ROOT = Path(__file__).resolve().parent.parent
TINY_DATA = {"num_train": 16, "num_search_val": 8, "num_test": 8, "frames": 4, "size": 16}
TINY_DATA |= {"digit_px": 6}
CELL = CellSpec(
    edges=(
        (0, 2, "conv3d_3x3x3"),
        (1, 2, "skip"),
        (0, 3, "max_pool_1x3x3"),
        (2, 3, "conv3d_3x3x3"),
    ),
    concat=(2, 3),
)
SKELETON = dict(stage_widths=(4, 8, 8), num_cells=3, stem_channels=8, frames=4, size=16)
TWO = dict(streams=("rgb", "motion"), in_channels=6)

# A version-1 document exactly as hybridnas wrote it before streams existed.
V1_DOC = """{
  "format": "hybridnas.genotype", "version": 1,
  "cells": {
    "normal": {"edges": [[0, 2, "conv3d_3x3x3"], [1, 2, "skip"]], "concat": [2]},
    "reduce": {"edges": [[0, 2, "max_pool_1x3x3"], [1, 2, "conv3d_3x3x3"]], "concat": [2]}
  },
  "stem": {"channels": 8, "kernel": [3, 3, 3], "stride": [1, 2, 2]},
  "stage_widths": [4, 8, 8], "num_cells": 3, "reduction_stride": [1, 2, 2],
  "clip": {"channels": 3, "frames": 8, "size": 32}, "num_classes": 10, "meta": {}
}"""


def two_stream_genotype(**changes) -> Genotype:
    return Genotype(normal=CELL, reduce=CELL, **{**SKELETON, **TWO, **changes})


# ---------------------------------------------------------------- genotype format


def test_version_1_file_still_loads_as_rgb_only_and_is_written_back_as_version_1(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(V1_DOC)
    g = Genotype.load(path)
    assert g.streams == ("rgb",) and g.in_channels == 3
    assert g.normal.edges == ((0, 2, "conv3d_3x3x3"), (1, 2, "skip"))
    doc = g.to_dict()
    assert doc["version"] == 1 and "streams" not in doc
    assert Genotype.load(BUILTIN_GENOTYPE).to_dict()["version"] == 1  # shipped file unchanged
    net = build_network(g)
    assert net(torch.randn(2, 3, 8, 32, 32)).shape == (2, 10)


def test_two_stream_genotype_is_version_2_and_round_trips(tmp_path):
    g = two_stream_genotype()
    doc = g.to_dict()
    assert doc["version"] == 2 and doc["streams"] == ["rgb", "motion"]
    assert doc["clip"]["channels"] == 6
    g.save(tmp_path / "g.json")
    back = Genotype.load(tmp_path / "g.json")
    assert back == g and back.key() == g.key()
    assert back.key() != g.replace(streams=("rgb",), in_channels=3).key()


def _broken(change) -> dict:
    doc = copy.deepcopy(two_stream_genotype().to_dict())
    change(doc)
    return doc


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.__setitem__("streams", ["rgb", "flow"]), r"unknown stream\(s\) \['flow'\]"),
        (lambda d: d.__setitem__("streams", ["rgb", "rgb"]), "1 or 2 distinct streams"),
        (lambda d: d.__setitem__("streams", ["rgb", "motion", "rgb"]), "1 or 2 distinct"),
        (lambda d: d.__setitem__("streams", "rgb"), "must be a list of 1 or 2 stream names"),
        (lambda d: d.__setitem__("streams", []), "must be a list of 1 or 2 stream names"),
        (lambda d: d.pop("streams"), "missing key 'streams'"),
        (lambda d: d["clip"].__setitem__("channels", 5), "cannot split 5 clip channels"),
        (lambda d: d.__setitem__("version", 1), "'streams' needs 'version' 2"),
        (lambda d: d.__setitem__("version", 5), "'version' 5 is not supported"),
    ],
)
def test_malformed_stream_specs_are_refused_naming_the_field(change, message):
    with pytest.raises(GenotypeError, match=message):
        Genotype.from_dict(_broken(change))


# ---------------------------------------------------------------- data layer


def test_builtin_default_stays_rgb_and_motion_is_frame_difference():
    rgb = build_dataset(TINY_DATA, "train")
    both = build_dataset({**TINY_DATA, "streams": ["rgb", "motion"]}, "train")
    motion = build_dataset({**TINY_DATA, "streams": ["motion"]}, "train")
    x, y = rgb[3]
    by_hand = ((rgb.clips[3].float() / 255.0 - MEAN) / STD)[None].expand(3, -1, -1, -1)
    assert torch.equal(x, by_hand) and x.shape == (3, 4, 16, 16)  # default: as before
    x2, y2 = both[3]
    assert x2.shape == (6, 4, 16, 16) and y2 == y
    assert torch.equal(x2[:3], x)
    assert torch.equal(x2[3:, 0], torch.zeros_like(x[:, 0]))  # no frame before the first
    assert torch.equal(x2[3:, 1:], x[:, 1:] - x[:, :-1])
    assert torch.equal(motion[3][0], x2[3:])
    with pytest.raises(ValueError, match="data.streams"):
        build_dataset({**TINY_DATA, "streams": ["rgb", "flow"]}, "train")


def test_streams_stack_on_the_channel_axis_of_multiview_clips():
    views = torch.randn(5, 3, 4, 8, 8)
    out = add_streams(views, ("rgb", "motion"))
    assert out.shape == (5, 6, 4, 8, 8)
    assert torch.equal(out[:, 3:], frame_difference(views))
    assert add_streams(views, ("rgb",)) is views


def test_folder_dataset_gives_motion_of_decoded_frames(tmp_path):
    for label, name in enumerate(["a", "b"]):
        write_video(tmp_path / "train" / name / "v0.mp4", label)
    cfg = {"name": "folder", "root": str(tmp_path), "frames": 4, "size": 32, "fps": 8}
    cfg |= {"sampling_rate": 2, "mean": [0.0] * 3, "std": [1.0] * 3, "search_val_fraction": 0.0}
    clip, _ = build_dataset({**cfg, "streams": ["rgb", "motion"]}, "train")[1]
    assert clip.shape == (6, 4, 32, 32)
    assert torch.equal(clip[3:], frame_difference(clip[:3]))  # of the same decoded window
    green_step = clip[4, 1:].mean(dim=(-2, -1)) * 255  # green rises 8 per source frame
    assert bool((green_step > 8).all()) and float(clip[3:, 0].abs().max()) == 0.0


# ---------------------------------------------------------------- network and search


def test_each_stream_has_its_own_stem_and_feeds_one_cell_input():
    torch.manual_seed(0)
    net = build_network(two_stream_genotype()).eval()
    assert set(net.stem.stems) == {"rgb", "motion"}
    x = torch.randn(2, 6, 4, 16, 16)
    s0, s1 = net.stem(x)
    assert torch.allclose(s0, net.stem.stems["rgb"](x[:, :3]))
    assert torch.allclose(s1, net.stem.stems["motion"](x[:, 3:]))
    logits = net(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    for stem in net.stem.stems.values():
        assert stem[0].weight.grad.abs().sum() > 0  # both streams reach the logits


def test_supernet_searches_two_streams_and_derives_a_version_2_genotype():
    ops = ["none", "skip", "max_pool_1x3x3", "conv3d_3x3x3"]
    config = SupernetConfig(op_names=ops, steps=2, **SKELETON, **TWO)
    net = Supernet(config)
    arch = net.new_architecture()
    loss = net(torch.randn(2, 6, 4, 16, 16), arch).logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None for p in arch.alphas)
    g = derive_genotype(net, arch)
    assert g.streams == ("rgb", "motion") and g.to_dict()["version"] == 2
    assert build_network(g)(torch.randn(1, 6, 4, 16, 16)).shape == (1, 10)
    with pytest.raises(ValueError, match="data.streams"):
        SupernetConfig(op_names=ops, steps=2, **SKELETON, streams=("rgb", "depth"), in_channels=6)


def test_training_refuses_data_whose_streams_the_network_does_not_read():
    g = two_stream_genotype()
    check_model_streams("genotype", g, ["rgb", "motion"])
    with pytest.raises(ConfigError, match=r"data.streams=\[rgb,motion\]"):
        check_model_streams("genotype", g, None)
    with pytest.raises(ConfigError, match=r"data.streams=\[rgb\]"):
        check_model_streams("c3d", None, ["rgb", "motion"])


def test_two_stream_network_exports_to_onnx_with_parity(tmp_path):
    torch.manual_seed(0)
    net = build_network(two_stream_genotype()).eval()
    assert export_onnx(net, (6, 4, 16, 16), tmp_path / "m.onnx") < 1e-4


# ---------------------------------------------------------------- end to end

TINY_SEARCH = [
    "recipe=sdas_twostream_video",
    "tracking=none",
    *TINY_DATA_OVERRIDES,
    "model.op_names=[none,skip,max_pool_1x3x3,conv3d_3x3x3]",
    "model.steps=2",
    "model.stage_widths=[4,8,8]",
    "search.epochs=2",
    "search.warmup_epochs=1",
    "evolution.population=2",
    "evolution.cycles=0",
    "evolution.fitness.rerank_scorer=none",
    "evolution.proxy.stage_clips=[16]",
    "evolution.proxy.val_clips=16",
    "evolution.proxy.batch_size=8",
]


def _tool(name: str, args: list[str], env: dict) -> None:
    cmd = [sys.executable, str(ROOT / "tools" / name), *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_two_stream_search_train_export_end_to_end(tmp_path):
    env = dict(os.environ, HYBRIDNAS_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    search, train = tmp_path / "search", tmp_path / "train"
    _tool("search.py", [f"out_dir={search}", *TINY_SEARCH], env)
    g = Genotype.load(search)
    assert g.streams == ("rgb", "motion") and json.loads(g.to_json())["version"] == 2
    data = [a for a in TINY_SEARCH if a.startswith("data.")]
    train_args = ["recipe=train_builtin", f"genotype={search}", "train.epochs=1", *data]
    train_args.append("data.streams=[rgb,motion]")
    _tool("train.py", [f"out_dir={train}", "tracking=none", *train_args], env)
    _tool("export.py", [str(train / "checkpoints" / "best.pt"), str(tmp_path / "export")], env)
    report = json.loads((tmp_path / "export" / "export.json").read_text())
    assert report["clip_shape"] == [6, 4, 16, 16] and report["onnx_max_abs_diff"] < 1e-4
