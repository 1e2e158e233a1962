"""DARTS-PT perturbation selection and early (margin) fixing for SDAS, and DARTS-style search
splits (the weights and the alphas step on disjoint halves of train)."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
import torch.nn.functional as F
from helpers import cfg_of, run_cmd, search, search_cmd
from videos import write_video

from hybridnas.config import SearchRun
from hybridnas.data import build_dataset, whole_train_set
from hybridnas.engine.checkpoint import load_checkpoint
from hybridnas.engine.distributed import DistContext
from hybridnas.search.differentiable.sdas import fix_confident
from hybridnas.search.differentiable.selection import PerturbationChooser
from hybridnas.search.differentiable.splits import search_datasets
from hybridnas.space.genotype import Genotype
from hybridnas.space.supernet import Supernet, SupernetConfig

OPS = ["none", "skip", "max_pool_1x3x3", "conv3d_3x3x3", "dil_temporal_d2"]
VIDEOS_PER_CLASS = 7
VIDEO = [
    "data=kinetics400", "data.name=folder", "data.frames=4", "data.size=16",
    "data.sampling_rate=2", "data.fps=8", "data.workers=0", "data.batch_size=2",
]  # fmt: skip


# ---------------------------------------------------------------- perturbation selection


def _tiny_supernet() -> Supernet:
    torch.manual_seed(0)
    config = SupernetConfig(
        op_names=OPS, steps=2, stage_widths=(4, 8, 8), num_cells=3, stem_channels=24,
        stem_stride=(1, 1, 1),
    )  # fmt: skip
    return Supernet(config).train()


def _zeroed_op_stats(net, arch, batches, edge: int, op: int) -> tuple[float, float]:
    """(accuracy, summed loss) with op ``op`` of the normal cells' ``edge`` swapped for the
    edge's own zero op (``none``): a second way of taking it out of the mixture, independent of
    Architecture.masked_op."""
    normal = [c for c in net.cells if not c.reduction]
    kept = [c.mixed_ops[edge].ops[op] for c in normal]
    for c in normal:
        c.mixed_ops[edge].ops[op] = c.mixed_ops[edge].ops[OPS.index("none")]
    correct = seen = loss = 0.0
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for x, y in batches:
            logits = net(x, arch)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(y)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
    net.load_state_dict(state)  # the forwards moved the norm statistics; put them back
    for c, op_module in zip(normal, kept, strict=True):
        c.mixed_ops[edge].ops[op] = op_module
    return correct / seen, loss


def _batches(net, arch, n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random clips labelled by the unmasked supernet's own prediction: accuracy 1 before any
    masking, so a drop is the masked op's doing."""
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        x = torch.randn(8, 3, 4, 16, 16, generator=g)
        with torch.no_grad():
            state = {k: v.clone() for k, v in net.state_dict().items()}
            y = net(x, arch).argmax(1)
            net.load_state_dict(state)
        out.append((x, y))
    return out


def test_perturbation_keeps_the_op_whose_masking_hurts_most():
    net = _tiny_supernet()
    arch = net.new_architecture()
    edge = 2
    with torch.no_grad():  # conv3d carries the edge; max_pool has the largest alpha elsewhere
        arch.alphas[edge].copy_(torch.tensor([0.0, 0.0, 0.0, 4.0, 0.0]))
        for k in range(arch.num_edges):
            if k != edge:
                arch.alphas[k].copy_(torch.tensor([0.0, 0.0, 3.0, 0.0, 0.0]))
    batches = _batches(net, arch)
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    alphas = [a.detach().clone() for a in arch.alphas]
    chooser = PerturbationChooser(net, batches, DistContext())

    chosen = chooser(arch, "normal", edge, set())
    measured = chooser.records[("normal", edge)]
    assert set(measured) == {"skip", "max_pool_1x3x3", "conv3d_3x3x3", "dil_temporal_d2"}
    reference = {
        name: _zeroed_op_stats(net, arch, batches, edge, OPS.index(name)) for name in measured
    }
    for name, acc in measured.items():
        assert acc == pytest.approx(reference[name][0], abs=1e-6), name
    expected = min(reference, key=lambda n: (reference[n][0], -reference[n][1]))
    assert OPS[chosen] == expected == "conv3d_3x3x3"
    assert measured["conv3d_3x3x3"] < min(v for k, v in measured.items() if k != "conv3d_3x3x3")
    assert chooser.forwards == 4 * len(batches)
    # a measurement changes nothing: norm statistics, alphas, decisions
    for k, v in net.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert all(torch.equal(a, b) for a, b in zip(arch.alphas, alphas, strict=True))
    assert arch.num_free() == 2 * arch.num_edges and not arch._masked

    # another edge, skip banned (the skip cap): the pick still follows the measurement
    other = 0
    chosen = chooser(arch, "normal", other, {"skip"})
    reference = {
        OPS[o]: _zeroed_op_stats(net, arch, batches, other, o) for o in (2, 3, 4)
    }  # skip banned
    assert set(chooser.records[("normal", other)]) == set(reference)
    assert OPS[chosen] == min(reference, key=lambda n: (reference[n][0], -reference[n][1]))


def test_masked_op_refuses_a_decided_edge_and_zeroes_only_its_op():
    net = _tiny_supernet()
    arch = net.new_architecture()
    before, reduce_before = arch.op_weights("normal"), arch.op_weights("reduce")
    with arch.masked_op("normal", 1, 3):
        during = arch.op_weights("normal")
        assert float(during[1][3].detach()) == 0.0
        assert torch.equal(during[1][[0, 1, 2, 4]], before[1][[0, 1, 2, 4]])  # not renormalised
        assert all(torch.equal(a, b) for a, b in zip(during[2:], before[2:], strict=True))
        assert all(
            torch.equal(a, b) for a, b in zip(arch.op_weights("reduce"), reduce_before, strict=True)
        )
    assert torch.equal(arch.op_weights("normal")[1], before[1])
    arch.fix("normal", 1, 3)
    with pytest.raises(ValueError, match="decided"), arch.masked_op("normal", 1, 2):
        pass


def test_search_with_perturbation_selection_writes_a_valid_genotype(tmp_path, capsys):
    out = tmp_path / "pt"
    search(out, "search.select=perturbation", "search.epochs=3")
    assert "perturbation selection fixed" in capsys.readouterr().out
    genotype = Genotype.load(out / "genotype.json")
    assert len(genotype.normal.edges) == 4 and len(genotype.reduce.edges) == 4  # 2 per node
    events = load_checkpoint(out / "checkpoints" / "search_last.pt")["fix_events"]
    fixed = [e for e in events if e["action"] == "fixed"]
    assert fixed and all("masked_acc" in e for e in fixed)
    for e in fixed:  # the op kept is the one whose masking left the lowest accuracy
        acc = e["masked_acc"]
        assert acc[e["op"]] == min(acc.values()) and "none" not in acc
    for cell in ("normal", "reduce"):  # the genotype holds exactly the fixed ops
        kept = {(e["from"], e["to"], e["op"]) for e in fixed if e["cell"] == cell}
        assert set(getattr(genotype, cell).edges) == kept
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    select = [r["time/select_s"] for r in rows if "time/select_s" in r]
    epoch = [r["time/epoch_s"] for r in rows if "time/epoch_s" in r]
    assert max(select) > 0 and all(e >= s for e, s in zip(epoch, select, strict=True))
    assert sum(epoch) == pytest.approx(genotype.meta["search_time_s"], abs=0.05)


@pytest.mark.slow
def test_two_ranks_fix_the_same_ops_by_perturbation(tmp_path):
    out = tmp_path / "dist"
    cmd = search_cmd(out, "tracking=none", "search.select=perturbation", "search.epochs=3", nproc=2)
    proc = run_cmd(cmd, tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json.loads((out / "alphas.json").read_text())["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # edge decisions included
    events = load_checkpoint(out / "checkpoints" / "search_last.pt")["fix_events"]
    fixed = [e for e in events if e["action"] == "fixed"]
    assert fixed and all(e["masked_acc"][e["op"]] == min(e["masked_acc"].values()) for e in fixed)
    Genotype.load(out / "genotype.json")


# ---------------------------------------------------------------- early fixing (fix_margin)


def test_fix_confident_fixes_only_edges_past_the_margin_and_prunes_full_nodes():
    arch = _tiny_supernet().new_architecture()  # steps 2: 0->2, 1->2, 0->3, 1->3, 2->3
    with torch.no_grad():
        for a in arch.alphas:
            a.zero_()
        arch.alphas[2][3] = 3.0  # normal 0->3: conv3d, margin ~0.7
        arch.alphas[3][4] = 2.0  # normal 1->3: dil_temporal, margin ~0.5
        arch.alphas[1][2] = 0.5  # normal 1->2: max_pool, margin ~0.1, under the threshold
    events = fix_confident(arch, steps=2, margin=0.3)
    got = [(e["cell"], e["edge"], e["op"], e["action"]) for e in events]
    assert got == [
        ("normal", 2, "conv3d_3x3x3", "fixed"),
        ("normal", 3, "dil_temporal_d2", "fixed"),
        ("normal", 4, "none", "pruned"),  # node 3 has its two inputs
    ]
    assert arch.free_mask("normal") == [True, True, False, False, False]
    assert arch.num_free() == 2 + arch.num_edges  # the reduce cell untouched
    assert fix_confident(arch, steps=2, margin=0.3) == []  # nothing more is confident


def test_search_with_a_margin_fixes_edges_mid_epoch(tmp_path, capsys):
    out = tmp_path / "early"
    search(out, "search.epochs=3", "search.fix_margin=1e-9")
    stdout = capsys.readouterr().out
    events = load_checkpoint(out / "checkpoints" / "search_last.pt")["fix_events"]
    # warm-up ends after epoch 0; the first step of epoch 1 finds every free edge confident
    assert events and all((e["epoch"], e.get("step")) == (1, 1) for e in events)
    assert "epoch 1 step 1: margin >= 1e-09 fixed" in stdout
    genotype = Genotype.load(out / "genotype.json")
    for cell in ("normal", "reduce"):
        kept = {(e["from"], e["to"], e["op"]) for e in events if e["cell"] == cell}
        kept = {k for k in kept if k[2] != "none"}
        assert set(getattr(genotype, cell).edges) == kept


# ---------------------------------------------------------------- search splits


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """root/train/<class>/v<i>.mp4: 3 classes x 7 videos, real mpeg4 through PyAV."""
    root = tmp_path_factory.mktemp("videos") / "folder"
    for c, name in enumerate(("cat", "dog", "eel")):
        for i in range(VIDEOS_PER_CLASS):
            write_video(root / "train" / name / f"v{i}.mp4", c, frames=12)
    return root


def _compose(*overrides: str):
    return cfg_of("search", overrides)


def _datasets(cfg):
    run = SearchRun.from_cfg(cfg)
    return search_datasets(run.data, run.search.alpha_split)


def test_folder_search_steps_alphas_on_the_other_half_of_train(folder):
    cfg = _compose(*VIDEO, f"data.root={folder}")
    weights, alphas, split = _datasets(cfg)
    train = build_dataset(cfg.data, "train")
    search_val = build_dataset(cfg.data, "search_val")
    assert split == "half_train"
    paths = lambda part: [train.entries[i].path for i in part.indices]  # noqa: E731
    w, a = paths(weights), paths(alphas)
    assert not set(w) & set(a) and sorted(w + a) == sorted(e.path for e in train.entries)
    assert (len(w), len(a)) == (math.ceil(len(train) / 2), len(train) // 2)
    for c in range(3):  # each class split within one clip
        nw = sum(train.entries[i].label == c for i in weights.indices)
        na = sum(train.entries[i].label == c for i in alphas.indices)
        assert abs(nw - na) <= 1
    # search_val (evolution's proxy clips) stays out of both halves
    assert not {e.path for e in search_val.entries} & set(w + a)
    assert alphas.num_classes == 3 and len(search_val) > 0
    clip, label = alphas[0]  # decodes through the subset
    assert clip.shape == (3, 4, 16, 16) and label == train.entries[alphas.indices[0]].label
    # the old behaviour on request, and a found network trains on everything
    w2, a2, split2 = _datasets(_compose(*VIDEO, f"data.root={folder}",
                                                 "search.alpha_split=search_val"))  # fmt: skip
    assert split2 == "search_val" and len(w2) == len(train) and len(a2) == len(search_val)
    assert len(whole_train_set(cfg.data)) == 3 * VIDEOS_PER_CLASS > len(train)


def test_builtin_keeps_its_search_val_split():
    cfg = _compose("data.num_train=48", "data.num_search_val=24", "data.num_test=8",
                      "data.frames=4", "data.size=16", "data.digit_px=6")  # fmt: skip
    weights, alphas, split = _datasets(cfg)
    assert split == "search_val" and (len(weights), len(alphas)) == (48, 24)
    weights, alphas, split = _datasets(_compose(
        "data.num_train=48", "data.num_search_val=24", "data.num_test=8", "data.frames=4",
        "data.size=16", "data.digit_px=6", "search.alpha_split=half_train"))  # fmt: skip
    assert split == "half_train" and (len(weights), len(alphas)) == (24, 24)


def test_folder_search_logs_its_capped_epoch_once(folder, tmp_path, caplog):
    out = tmp_path / "run"
    caplog.set_level(logging.INFO, logger="hybridnas")
    search(out, "search.epochs=2", "search.warmup_epochs=0", "search.steps_per_epoch=24",
           data=[*VIDEO, f"data.root={folder}"])  # fmt: skip
    log = caplog.text
    train = len(build_dataset(_compose(*VIDEO, f"data.root={folder}").data, "train"))
    half_w, half_a = math.ceil(train / 2), train // 2
    assert log.count("search epochs are capped") == 1
    expected = (
        f"capped at {half_a // 2} steps (wanted 24): the weight loader has {half_w // 2} "
        f"batches per rank ({half_w} clips), the alpha loader (half_train) {half_a // 2} "
        f"({half_a} clips)"
    )
    assert expected in log
    Genotype.load(out / "genotype.json")
