"""The latency table: a genotype's parts, a tiny table in a tmp dir, its cache key, the
supernet's expected latency, the architecture loss's latency term, and a latency-aware
search that repeats byte for byte under the same seed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_DATA

from hybridnas.measure.latency_parts import genotype_parts, space_parts
from hybridnas.measure.latency_table import LatencyTable, open_table, ops_source_hash, table_key
from hybridnas.search.differentiable.architect import Architect
from hybridnas.search.differentiable.expected_latency import ExpectedLatency
from hybridnas.search.evolution.mutations import Guidance, sample_genotype
from hybridnas.space.genotype import CellSpec, Genotype
from hybridnas.space.macro import MacroSpec
from hybridnas.space.supernet import Supernet, SupernetConfig

ROOT = Path(__file__).resolve().parent.parent
OPS = ["none", "skip", "max_pool_1x3x3", "conv3d_3x3x3"]
TINY_MACRO = MacroSpec(
    stage_widths=(4, 4, 8), num_cells=3, stem_channels=4, stem_stride=(1, 2, 2), frames=2, size=8
)


def _genotype(op: str = "conv3d_3x3x3", steps: int = 2, macro: MacroSpec = TINY_MACRO):
    edges = tuple((i, j, op) for j in range(2, 2 + steps) for i in (j - 2, j - 1))
    cell = CellSpec(edges, tuple(range(2, 2 + steps)))
    return Genotype(cell, cell, macro=macro)


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory) -> LatencyTable:
    directory = tmp_path_factory.mktemp("latency")
    table = open_table("cpu", 1, directory=directory)
    table.rounds = 2
    table.ensure(space_parts([TINY_MACRO], OPS, 2))
    return table


def test_parts_follow_the_network_shapes():
    g = _genotype()
    parts = genotype_parts(g)
    ops = [p for p in parts if p.startswith("op:conv3d")]
    assert len(ops) == 3 * len(g.normal.edges)  # every edge of every cell
    # stem (1, 2, 2) halves 8 px; the reduction cell (index 1) strides the edges leaving 0, 1
    assert "op:conv3d_3x3x3:4:4:1x2x2:2x4x4" in parts
    assert "op:conv3d_3x3x3:4:4:1x1x1:2x2x2" in parts  # edge 2 -> 3 of that cell, reduced
    assert "op:skip:8:8:1x2x2:2x4x4" in parts  # pre0 of the cell after a reduction
    assert parts[0] == "stem:3:4:3x3x3:1x2x2:2x8x8" and parts[-1].startswith("head:16:10:")
    two = _genotype(macro=MacroSpec(**{**vars(TINY_MACRO), "streams": ("rgb", "motion"),
                                      "in_channels": 6}))  # fmt: skip
    assert sum(p.startswith("stem:3:") for p in genotype_parts(two)) == 2


def test_space_parts_cover_every_genotype_of_the_space():
    space = set(space_parts([TINY_MACRO], OPS, 2))
    rng = np.random.default_rng(0)
    template = _genotype()
    for _ in range(20):
        g = sample_genotype(template, rng, Guidance.uniform(OPS))
        assert set(genotype_parts(g)) <= space


def test_table_predicts_the_sum_of_parts_and_round_trips(tiny_table):
    g = _genotype("max_pool_1x3x3")
    assert all(v > 0 for v in tiny_table.entries.values())
    expected = sum(tiny_table.entries[p] for p in genotype_parts(g))
    assert tiny_table.predict_ms(g) == pytest.approx(expected)
    again = open_table("cpu", 1, directory=tiny_table.path.parent)
    assert again.entries == tiny_table.entries  # exactly: a rerun predicts what the first did
    assert again.digest == tiny_table.digest


def test_table_key_names_device_torch_threads_and_op_source(tiny_table, tmp_path):
    key = table_key("cpu", 1)
    assert key["torch"] == torch.__version__ and key["threads"] == 1
    assert key["clock"] == "thread_time"  # CPU time: a shared machine's load does not count
    assert table_key("cpu", 2)["clock"] == "perf_counter"
    assert key["ops_hash"] == ops_source_hash() and len(key["ops_hash"]) == 16
    assert table_key("cpu", 2) != key  # another thread count is another table
    stale = json.loads(tiny_table.path.read_text())
    stale["key"]["ops_hash"] = "0" * 16  # a table of older op code
    path = tmp_path / "stale.json"
    path.write_text(json.dumps(stale))
    with pytest.raises(ValueError, match="was measured for"):
        open_table("cpu", 1, path=path)


def test_missing_parts_are_measured_and_saved(tiny_table):
    wider = _genotype(macro=MacroSpec(**{**vars(TINY_MACRO), "stage_widths": (4, 4, 12)}))
    new = [p for p in genotype_parts(wider) if p not in tiny_table.entries]
    assert new
    tiny_table.predict_ms(wider)
    saved = json.loads(tiny_table.path.read_text())["entries"]
    assert all(p in saved for p in new)


def _supernet_arch(steps: int):
    cfg = SupernetConfig(op_names=OPS, steps=steps, macro=TINY_MACRO)
    net = Supernet(cfg)
    return cfg, net.new_architecture()


def test_expected_latency_of_a_one_hot_supernet_is_the_genotype_prediction(tiny_table):
    cfg, arch = _supernet_arch(steps=1)  # one node, its two edges: what derivation keeps
    expected = ExpectedLatency.for_space(tiny_table, cfg.macro, OPS, 1)
    with torch.no_grad():
        for a in arch.alphas:
            a.zero_()
            a[OPS.index("conv3d_3x3x3")] = 30.0
    g = _genotype(steps=1)
    assert float(expected(arch).detach()) == pytest.approx(tiny_table.predict_ms(g), rel=1e-4)


def test_latency_term_pulls_alphas_to_cheaper_ops_only_above_target(tiny_table):
    cfg, arch = _supernet_arch(steps=2)
    expected = ExpectedLatency.for_space(tiny_table, cfg.macro, OPS, 2)
    e0 = float(expected(arch))
    under = Architect(arch, latency=expected, latency_target_ms=2 * e0, latency_weight=1.0)
    assert float(under._latency_term()) == 0.0
    over = Architect(arch, latency=expected, latency_target_ms=e0 / 2, latency_weight=1.0)
    term = over._latency_term()
    assert float(term) == pytest.approx(np.log(2.0), rel=1e-3)
    grads = torch.autograd.grad(term, list(arch.alphas))
    conv, none = OPS.index("conv3d_3x3x3"), OPS.index("none")
    assert all(g[conv] > g[none] for g in grads)  # descent lowers the costly op's alpha
    assert Architect(arch, latency=expected, latency_weight=0.0).latency is None


# ---------------------------------------------------------------- determinism


TINY_HYBRID = [
    "recipe=sdas_video",
    "tracking=none",
    *TINY_DATA,
    "model.op_names=[none,skip,max_pool_1x3x3,conv3d_3x3x3,dil_temporal_d2]",
    "model.steps=2",
    "model.stage_widths=[4,8,8]",
    "model.num_cells=3",
    "model.stem_channels=8",
    "search.epochs=2",
    "search.latency_target_ms=0.3",  # below what the tiny space costs: the term acts
    "evolution.population=3",
    "evolution.cycles=2",
    "evolution.conet_every=0",
    "evolution.proxy.stage_clips=[16]",
    "evolution.proxy.val_clips=16",
    "evolution.proxy.batch_size=8",
    "evolution.latency_budget_ms=0.6",
]


def _normalised(path: Path) -> str:
    """The file with its one wall-clock value (meta.search_time_s) zeroed."""
    return re.sub(r'"search_time_s": [0-9.eE+-]+', '"search_time_s": 0', path.read_text())


@pytest.mark.slow
def test_same_seed_same_genotype_with_the_latency_term_on(tmp_path):
    """Two default (latency-aware, macro-mutating) searches on one machine, one table file:
    the same genotypes byte for byte, family included, wall time aside."""
    env = dict(os.environ, WANDB_MODE="offline", HYBRIDNAS_CACHE=str(tmp_path / "cache"))
    env["OMP_NUM_THREADS"] = "1"
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        cmd = [sys.executable, str(ROOT / "tools" / "search.py"), f"out_dir={out}", *TINY_HYBRID]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(out)
    a, b = runs
    meta = json.loads((a / "genotype.json").read_text())["meta"]
    assert meta["latency"]["table"] and meta["latency"]["target_ms"] == 0.3
    assert meta["latency"]["budget_ms"] == 0.6 and meta["latency"]["predicted_ms"] > 0
    names = ["genotype.json", "genotype_differentiable.json", "pareto.json"]
    names += [f"family/{p.name}" for p in sorted((a / "family").glob("*.json"))]
    for name in names:
        assert _normalised(a / name) == _normalised(b / name), name
