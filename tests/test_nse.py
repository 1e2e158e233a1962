"""Search-space evolution (NSE): its config keys, exact weight inheritance between rounds, the
rounds end to end, and multi-branch edges through genotype, network, training and export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import search, train

from hybridnas.config import ConfigError
from hybridnas.config.search import NSEConfig, SearchConfig
from hybridnas.export import export_onnx, export_torch
from hybridnas.models import build_model
from hybridnas.ops.registry import MultiBranch, create_op, is_edge_op
from hybridnas.search.differentiable.nse import (
    check_pool,
    fresh_ops,
    inherit_weights,
    pool_ops,
    rank_ops,
    widen_edges,
)
from hybridnas.space.genotype import CellSpec, Genotype, GenotypeError
from hybridnas.space.supernet import Supernet, SupernetConfig, derive_genotype

ROOT = Path(__file__).resolve().parent.parent
POOL = "[none,skip,max_pool_1x3x3,conv3d_3x3x3,dil_temporal_d2,p3d_c]"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"rounds": -1}, "search.nse.rounds must be an integer in [0, 32], got -1"),
        ({"rounds": 33}, "search.nse.rounds must be an integer in [0, 32], got 33"),
        ({"batch": 0}, "search.nse.batch must be an integer in [1, 64], got 0"),
        ({"keep": 0}, "search.nse.keep must be an integer in [1, 64], got 0"),
        ({"multi_branch_k": 5}, "search.nse.multi_branch_k must be an integer in [1, 4], got 5"),
        ({"rounds": 1.5}, "search.nse.rounds must be an integer"),
        ({"pool": ["skip", "conv9d"]}, "search.nse.pool: unknown op(s) ['conv9d']"),
        ({"pool": ["skip", "skip", "p3d_c"]}, "search.nse.pool lists an op twice"),
        (
            {"rounds": 2, "pool": ["none", "skip", "p3d_c"], "keep": 1, "batch": 2},
            "search.nse.keep + search.nse.batch = 3 must be at most the pool's 2 ops",
        ),
        ({"multi_branch_k": 2}, "search.nse.multi_branch_k > 1 needs search.nse.rounds >= 1"),
        ({"round": 2}, "unknown config key 'search.nse.round'"),
    ],
)
def test_every_nse_key_is_refused_in_one_line(keys, message):
    with pytest.raises(ConfigError) as err:
        check_pool(SearchConfig(nse=keys).nse)  # the registry's part where the search starts
    assert message in str(err.value) and "\n" not in str(err.value)


def test_rounds_draw_fresh_ops_then_reuse_unkept_ones():
    a, b, c, d, e = "skip", "p3d_c", "p3d_a", "tsm", "conv3d_3x3x3"
    n = NSEConfig(rounds=3, pool=("none", a, b, c, d, e), keep=2, batch=2)
    order = [a, b, c, d, e]
    assert pool_ops(n) == (a, b, c, d, e) and n.has_none
    assert fresh_ops(order, [], set(), n) == [a, b, c, d]  # round 0: keep + batch
    assert fresh_ops(order, [b, d], {a, b, c, d}, n) == [e, a]


def _supernet(ops: list[str], seed: int) -> Supernet:
    torch.manual_seed(seed)
    config = SupernetConfig(
        op_names=ops, steps=2, stage_widths=(4, 8, 8), num_cells=3, stem_channels=8, frames=4,
        size=16, num_classes=5,
    )  # fmt: skip
    return Supernet(config)


def test_inherited_weights_equal_the_previous_rounds_exactly():
    old = _supernet(["none", "skip", "conv3d_3x3x3", "p3d_c"], seed=0)
    arch = old.new_architecture()
    old_init = {k: v.clone() for k, v in old.state_dict().items()}
    opt = torch.optim.SGD(old.parameters(), lr=0.5)
    for _ in range(2):  # trained weights and BN statistics, not the init
        loss = old(torch.randn(4, 3, 4, 16, 16), arch).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    new = _supernet(["none", "p3d_c", "conv2d_1x3x3", "conv3d_3x3x3"], seed=1)
    fresh_before = {k: v.clone() for k, v in new.state_dict().items()}
    counts = inherit_weights(list(old.config.op_names), old.state_dict(), new)
    assert counts["copied_tensors"] > 0 and counts["fresh_tensors"] > 0
    old_state, new_state = old.state_dict(), new.state_dict()
    for name in ("stem", "head"):
        for key in (k for k in new_state if k.startswith(name)):
            assert torch.equal(new_state[key], old_state[key]), key
    for c, (old_cell, new_cell) in enumerate(zip(old.cells, new.cells, strict=True)):
        assert all(
            torch.equal(a, b)
            for a, b in zip(
                old_cell.pre1.state_dict().values(),
                new_cell.pre1.state_dict().values(),
                strict=True,
            )
        )
        for e, (old_op, new_op) in enumerate(
            zip(old_cell.mixed_ops, new_cell.mixed_ops, strict=True)
        ):
            for name in ("p3d_c", "conv3d_3x3x3"):
                a = old_op.ops[old.config.op_names.index(name)].state_dict()
                b = new_op.ops[new.config.op_names.index(name)].state_dict()
                assert a.keys() == b.keys()
                assert all(torch.equal(a[k], b[k]) for k in a), (c, e, name)
            prefix = f"cells.{c}.mixed_ops.{e}.ops.2."  # conv2d_1x3x3: new, left at its init
            fresh = {k: v for k, v in new_state.items() if k.startswith(prefix)}
            assert fresh and all(torch.equal(v, fresh_before[k]) for k, v in fresh.items())
    trained = [k for k in old_state if ".ops.3." in k and k.endswith("weight")]  # p3d_c's
    assert any(not torch.equal(old_state[k], old_init[k]) for k in trained)


def _arch_with(sn: Supernet, logits: dict[int, float]):
    """An architecture whose every edge has these alpha logits (op index -> logit, others 0)."""
    arch = sn.new_architecture()
    with torch.no_grad():
        for a in arch.alphas:
            a.zero_()
            for k, v in logits.items():
                a[k] = v
    return arch


def test_edges_keep_several_ops_only_where_alphas_do_not_separate():
    sn = _supernet(["none", "skip", "conv3d_3x3x3", "p3d_c"], seed=0)
    close = _arch_with(sn, {2: 1.0, 3: 0.9})  # conv3d and p3d_c within 2x of each other
    g = derive_genotype(sn, close)
    wide = widen_edges(g, close, k=2)
    assert all(op == "conv3d_3x3x3+p3d_c" for _, _, op in wide.normal.edges + wide.reduce.edges)
    assert wide.has_multi_branch() and wide.to_dict()["version"] == 4
    apart = _arch_with(sn, {2: 3.0})  # conv3d 20x any other op
    assert widen_edges(derive_genotype(sn, apart), apart, k=3) == derive_genotype(sn, apart)
    ranking = rank_ops(close, g)
    assert [r["op"] for r in ranking][:1] == ["conv3d_3x3x3"] and "none" not in str(ranking)


def _builtin_doc() -> dict:
    return json.loads((ROOT / "hybridnas/models/genotypes/builtin_sdas.json").read_text())


def test_old_genotypes_load_and_multi_branch_needs_version_4():
    old = Genotype.load(ROOT / "hybridnas/models/genotypes/builtin_sdas.json")
    assert old.to_dict()["version"] == _builtin_doc()["version"] < 4
    doc = _builtin_doc()
    doc["cells"]["normal"]["edges"][0][2] = "conv3d_3x3x3+p3d_c"
    with pytest.raises(GenotypeError, match="multi-branch op 'conv3d_3x3x3\\+p3d_c' needs"):
        Genotype.from_dict(doc)
    doc["version"] = 4
    g = Genotype.from_dict(doc)
    assert Genotype.from_json(g.to_json()) == g and g.to_dict()["version"] == 4
    for bad in ("p3d_c+p3d_c", "none+skip", "skip+conv9d"):
        assert not is_edge_op(bad)
        doc["cells"]["normal"]["edges"][0][2] = bad
        with pytest.raises(GenotypeError, match="unknown op"):
            Genotype.from_dict(doc)


def _multi_branch_net() -> torch.nn.Module:
    g = Genotype.load(ROOT / "hybridnas/models/genotypes/builtin_sdas.json")
    edges = [(i, j, f"{op}+max_pool_1x3x3" if op != "max_pool_1x3x3" else "skip+conv3d_3x3x3")
             for i, j, op in g.normal.edges]  # fmt: skip
    g = g.replace(
        normal=CellSpec(tuple(edges), g.normal.concat), num_cells=3, stage_widths=(4, 8, 8),
        stem_channels=8, frames=4, size=16, num_classes=10,
    )  # fmt: skip
    torch.manual_seed(0)
    return build_model("genotype", num_classes=10, frames=4, size=16, genotype=g)


def test_multi_branch_edges_learn_normalised_weights_and_export(tmp_path):
    op = create_op("conv3d_3x3x3+p3d_c", 4, 4, (1, 2, 2))
    assert isinstance(op, MultiBranch) and op(torch.randn(2, 4, 4, 8, 8)).shape == (2, 4, 4, 4, 4)
    model = _multi_branch_net()
    branches = [m for m in model.modules() if isinstance(m, MultiBranch)]
    assert len(branches) >= 6
    model(torch.randn(2, 3, 4, 16, 16)).logsumexp(1).mean().backward()
    for m in branches:
        assert m.logits.grad is not None and m.logits.grad.abs().sum() > 0
        assert torch.allclose(m.branch_weights().sum(), torch.tensor(1.0))
    model.eval()
    assert export_torch(model, (3, 4, 16, 16), tmp_path / "m.pt2") < 1e-4
    assert export_onnx(model, (3, 4, 16, 16), tmp_path / "m.onnx") < 1e-4


def test_nse_rounds_inherit_kept_ops_and_train_the_multi_branch_result(tmp_path):
    out = tmp_path / "search"
    nse = [f"search.nse.pool={POOL}", "search.nse.rounds=2", "search.nse.keep=2",
           "search.nse.batch=2", "search.nse.multi_branch_k=2", "search.epochs=2",
           "search.latency_weight=0"]  # fmt: skip
    genotype = search(out, *nse)
    doc = json.loads((out / "nse_history.json").read_text())
    first, second = doc["rounds"]
    assert doc["pool"] == ["skip", "max_pool_1x3x3", "conv3d_3x3x3", "dil_temporal_d2", "p3d_c"]
    assert first["ops"] == ["none", *first["fresh"]] and len(first["fresh"]) == 4
    assert second["inherited"] == first["kept"] and len(first["kept"]) == 2
    assert second["ops"] == ["none", *first["kept"], *second["fresh"]]
    assert second["inheritance"]["copied_tensors"] > 0
    assert set(first["alphas"]) == {"normal", "reduce"} and (out / "nse_history.png").is_file()
    assert Genotype.load(out) == genotype and genotype.meta["nse"]["kept"] == second["kept"]
    assert genotype.has_multi_branch()  # 2 epochs move no alpha 2x past another
    train(tmp_path / "train", f"genotype={out / 'genotype.json'}")
    assert (tmp_path / "train" / "checkpoints").is_dir()
