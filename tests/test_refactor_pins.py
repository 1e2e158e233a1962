"""Pins that a refactor must not move: the genotype a seed-0 search writes, and the network
``build_network`` makes for a genotype under a seed (the ground-truth table trains those).

The hashes were computed on the code before issue 14's refactor. ``search_time_s`` in the
genotype's meta is wall time, so it is zeroed before hashing; every other byte is pinned.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_search import TINY_DATA

from hybridnas.space.genotype import CellSpec, Genotype
from hybridnas.space.network import build_network

ROOT = Path(__file__).resolve().parent.parent
TINY_HYBRID = [
    "recipe=sdas_video",
    "tracking=none",
    *TINY_DATA,
    "model.op_names=[none,skip,max_pool_1x3x3,conv3d_3x3x3,dil_temporal_d2]",
    "model.steps=2",
    "model.stage_widths=[4,8,8]",
    "model.num_cells=3",
    "model.stem_channels=8",
    "search.epochs=4",
    "search.warmup_epochs=1",
    "search.decide_at=1.0",  # the schedule the pins were taken with (the default is now 0.5)
    "search.beta_decay=0.0",  # and no alpha regulariser (the default is now 0.05)
    "evolution.population=3",
    "evolution.cycles=1",
    "evolution.children_per_cycle=1",
    "evolution.conet_every=0",
    "evolution.faithfulness_samples=0",
    "evolution.proxy.stage_clips=[16]",
    "evolution.proxy.val_clips=16",
    "evolution.proxy.batch_size=8",
    "evolution.latency_min_run_s=0.01",
    # the pins predate the latency table, the latency term and the macro mutations (#27)
    "search.latency_weight=0",
    "evolution.latency_source=measured",
    "evolution.latency_budget_ms=0",
    "evolution.mutation_probs=[0.4,0.4,0.2]",
]
PINNED = {
    "genotype.json": "c6b8f4d8339a30b3ca733ff15347ecae04a98c316c055790813afaf1ec53e391",
    "genotype_differentiable.json": (
        "ca108733a0562dc1e1f272eb9bce466302b7dd7f9915966a7b2d5cc08dc96ee5"
    ),
}


def _normalised_sha(path: Path) -> str:
    text = re.sub(r'"search_time_s": [0-9.eE+-]+', '"search_time_s": 0', path.read_text())
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def hybrid_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pin")
    env = dict(os.environ, WANDB_MODE="offline", HYBRIDNAS_CACHE=str(tmp / "cache"))
    env["OMP_NUM_THREADS"] = "1"
    out = tmp / "run"
    cmd = [sys.executable, str(ROOT / "tools" / "search.py"), f"out_dir={out}", *TINY_HYBRID]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", sorted(PINNED))
def test_seed0_hybrid_search_writes_the_pinned_genotype(hybrid_run, name):
    assert _normalised_sha(hybrid_run / name) == PINNED[name]


# ---------------------------------------------------------------- build_network under a seed


def _genotypes() -> dict[str, Genotype]:
    chain = CellSpec(
        edges=((0, 2, "conv3d_3x3x3"), (1, 2, "max_pool_1x3x3"), (0, 3, "dil_temporal_d2"),
               (2, 3, "conv2plus1d_3x3x3"), (0, 4, "p3d_c"), (3, 4, "itgm_3x3")),
        concat=(2, 3, 4),
    )  # fmt: skip
    reduce = CellSpec(
        edges=((0, 2, "skip"), (1, 2, "conv3d_3x3x3"), (1, 3, "max_pool_1x3x3"),
               (2, 3, "conv2plus1d_3x3x3"), (0, 4, "dil_temporal_d2"), (2, 4, "skip")),
        concat=(3, 4),
    )  # fmt: skip
    return {
        "groundtruth_like": Genotype(
            normal=chain,
            reduce=reduce,
            stage_widths=(4, 8, 16),
            num_cells=3,
            stem_channels=8,
            stem_stride=(1, 2, 2),
            frames=8,
            size=16,
        ),
        "defaults": Genotype(normal=reduce, reduce=chain),
        "deep": Genotype(
            normal=chain,
            reduce=chain,
            stage_widths=(6, 12, 12),
            num_cells=6,
            stem_channels=12,
            frames=4,
            size=16,
            num_classes=5,
        ),
    }


PINNED_NETS = {
    "groundtruth_like": (
        "89618f430b883dd12d55b31d4b0392a1d8a0f743f435f48167ffcf67ad94854e",
        [
            0.7657450437545776,
            0.1132553443312645,
            -0.07624825835227966,
            0.04949801787734032,
            0.01321108266711235,
            0.10330402106046677,
            0.06183458864688873,
            0.09912373125553131,
            0.15746647119522095,
            1.505441665649414,
        ],
    ),
    "defaults": (
        "708638df60983dc9af0c1a7e03a5aa03005894e8edf0b4213fb6c90e78c05547",
        [
            0.4890863299369812,
            0.10398827493190765,
            0.0697806179523468,
            -0.032028678804636,
            -0.06640001386404037,
            -0.06893302500247955,
            0.03496117889881134,
            -0.11524468660354614,
            -0.10411573946475983,
            -0.30470985174179077,
        ],
    ),
    "deep": (
        "08984cbfb884f865c6d70654c3a7fa7a48b31a8cda53b79967b1d8b7e2daced6",
        [
            0.2513435482978821,
            0.0647272989153862,
            0.02448377013206482,
            -0.11779061704874039,
            0.06686828285455704,
            -0.0832468569278717,
            0.06450683623552322,
            0.024560127407312393,
            -0.11767654120922089,
            -0.09028854966163635,
        ],
    ),
}


def _net_digest(g: Genotype) -> tuple[str, list[float]]:
    torch.manual_seed(0)
    net = build_network(g)
    h = hashlib.sha256()
    for name, t in net.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    h.update(repr(net).encode())  # module types, order and settings
    after = float(torch.rand(()))  # the RNG consumed by building must not change either
    torch.manual_seed(1)
    x = torch.randn(2, g.in_channels, g.frames, g.size, g.size)
    net.eval()
    with torch.no_grad():
        out = net(x)
    return h.hexdigest(), [after, *out.flatten()[:8].tolist(), float(out.sum())]


@pytest.mark.parametrize("name", sorted(_genotypes()))
def test_build_network_is_unchanged_under_a_seed(name):
    digest, values = _net_digest(_genotypes()[name])
    want_digest, want_values = PINNED_NETS[name]
    assert digest == want_digest
    assert values == pytest.approx(want_values, rel=1e-5, abs=1e-6)
