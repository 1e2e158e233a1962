"""The front benchmark: end to end on tiny nets (schema, resume), the claims checker on
hand-made rows, the TSM-style baseline's temporal shift."""

from __future__ import annotations

import json

import pytest
import torch
from studies import front
from studies.front import FrontRecipe, RowSpec, run_front
from studies.front_report import check_claims, dominators, hybrid_vs_random, hypervolume

from hybridnas.models.baselines import TemporalShift, create_frame2d, create_tsm

TINY = FrontRecipe(
    num_train=32, num_search_val=8, num_test=16, train_clips=32, epochs=1, batch_size=16,
    bn_stats_clips=16, tasks=("which_moves",), latency_rounds=1, latency_min_run_time=0.01,
)  # fmt: skip
ROW_KEYS = {"name", "kind", "family", "ms", "ms_predicted", "mflops", "params", "acc"}


def _tiny_specs() -> list[RowSpec]:
    return [
        RowSpec("c3d_w2", "baseline", "c3d", "c3d", {"width": 2}, seeds=1),
        RowSpec("g_x0.25", "found", "builtin", "genotype", {"width_mult": 0.25}, 1, "builtin"),
    ]


def _lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_front_end_to_end_schema_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("HYBRIDNAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "front"
    doc = run_front(_tiny_specs(), TINY, out)
    on_disk = json.loads((out / "front.json").read_text())
    assert on_disk["tasks"] == doc["tasks"]
    rows = on_disk["tasks"]["which_moves"]["rows"]
    assert [r["name"] for r in rows] == ["c3d_w2", "g_x0.25"]
    for r in rows:
        assert set(r) >= ROW_KEYS
        assert r["kind"] in ("found", "baseline", "random")
        assert isinstance(r["ms"], float) and r["ms"] > 0
        assert r["ms_predicted"] is None or isinstance(r["ms_predicted"], float)
        assert isinstance(r["params"], int) and r["params"] > 0 and r["mflops"] > 0
        assert len(r["acc"]) == 1 and 0.0 <= r["acc"][0] <= 1.0
    assert (out / "front.png").stat().st_size > 0
    first = _lines(out / "rows.jsonl")
    assert len(first) == 2

    def refuse(*_a, **_k):
        raise AssertionError("a finished row was trained again")

    monkeypatch.setattr(front, "train_row", refuse)
    run_front(_tiny_specs(), TINY, out)  # everything done: nothing trains
    assert _lines(out / "rows.jsonl") == first
    monkeypatch.undo()
    monkeypatch.setenv("HYBRIDNAS_CACHE", str(tmp_path / "cache"))
    extra = RowSpec("frame2d_w2", "baseline", "frame2d", "frame2d", {"width": 2}, seeds=1)
    run_front([extra], TINY, out)  # a row added later; earlier rows kept, not retrained
    after = _lines(out / "rows.jsonl")
    assert after[:2] == first and [r["name"] for r in after[2:]] == ["frame2d_w2"]
    lat = json.loads((out / "latency.json").read_text())
    assert sorted(lat["ms"]) == ["c3d_w2", "frame2d_w2", "g_x0.25"]  # measured together again


def _row(name, kind, ms, acc, family=None):
    return {"name": name, "kind": kind, "family": family or name.split("_")[0], "ms": ms,
            "ms_predicted": None, "mflops": 1.0, "params": 1, "acc": acc}  # fmt: skip


def test_claims_checker_on_hand_made_rows():
    rows = [
        _row("c3d_w10", "baseline", 3.0, [0.80, 0.81, 0.79]),
        _row("tsm_w8", "baseline", 1.0, [0.70, 0.72]),
        _row("f_fast", "found", 1.04, [0.72, 0.72, 0.72], "hybrid"),  # within 5% of tsm's ms
        _row("f_big", "found", 3.1, [0.85, 0.86, 0.84], "hybrid"),  # beats c3d by > 2 SD sums
        _row("r_1", "random", 3.5, [0.83, 0.83, 0.83], "random"),
        _row("r_2", "random", 0.9, [0.60, 0.60, 0.60], "random"),
    ]
    c = check_claims({"rows": rows})
    by = {b["name"]: b for b in c["baselines"]}
    assert by["tsm_w8"]["dominated_by"] == ["f_fast"]
    assert by["c3d_w10"]["dominated_by"] == ["f_big"]
    assert c["all_baselines_dominated"] is True
    assert c["reference"]["holds"] is True and c["reference"]["beats"] == ["f_big"]
    assert {r["name"]: r["holds"] for r in c["random"]} == {"r_1": True, "r_2": False}
    assert c["all_random_dominated"] is False


def test_claims_fail_when_found_is_slower_or_within_noise():
    ref = _row("c3d_w10", "baseline", 3.0, [0.80, 0.84, 0.76])  # SD 0.04
    slow = _row("f_slow", "found", 3.2, [0.95, 0.95, 0.95], "hybrid")  # 6.7% slower
    close = _row("f_close", "found", 2.0, [0.84, 0.86, 0.82], "hybrid")  # +0.04 < 0.04 + 0.02
    c = check_claims({"rows": [ref, slow, close]})
    assert c["baselines"][0]["dominated_by"] == ["f_close"]  # mean >= and faster: dominates
    assert c["reference"]["holds"] is False  # not > SD sum, and 2.0 ms is not <= 0.5 x 3.0
    half = _row("f_half", "found", 1.5, [0.80, 0.80, 0.80], "hybrid")
    c = check_claims({"rows": [ref, half]})
    assert c["reference"]["holds"] is True and c["reference"]["matches_at_half_ms"] == ["f_half"]
    assert dominators(ref, [slow]) == []


def test_claims_judge_a_comma_list_of_families():
    rows = [
        _row("c3d_w10", "baseline", 3.0, [0.80, 0.80]),
        _row("a_1", "found", 2.0, [0.70], "hybrid"),
        _row("b_1", "found", 2.0, [0.90], "hybrid_s1"),
        _row("c_1", "found", 2.0, [0.95], "other"),
    ]
    c = check_claims({"rows": rows}, "hybrid,hybrid_s1")
    assert c["found"] == ["a_1", "b_1"]
    assert c["baselines"][0]["dominated_by"] == ["b_1"]


def test_hypervolume_counts_only_what_beats_the_reference_point():
    # (1, 0.5) then (2, 0.8) to ms 3: 1 x 0.4 + 1 x 0.7
    assert hypervolume([(2.0, 0.8), (1.0, 0.5)], 3.0, 0.1) == pytest.approx(1.1)
    assert hypervolume([(1.0, 0.5), (1.5, 0.4)], 3.0, 0.1) == pytest.approx(0.8)  # dominated
    assert hypervolume([(4.0, 0.9), (1.0, 0.05)], 3.0, 0.1) == 0.0  # too slow, below chance


def test_hybrid_against_random_pairs_families_by_search_seed():
    rows = [
        _row("c3d_w10", "baseline", 2.0, [0.6, 0.6]),
        _row("hybrid_1", "found", 1.0, [0.7], "hybrid"),
        _row("hybrid_s1_1", "found", 1.0, [0.5], "hybrid_s1"),
        _row("hybrid_ops10_1", "found", 0.5, [0.9], "hybrid_ops10"),  # another study: ignored
        _row("random_1", "random", 1.0, [0.6], "random"),
        _row("random_s1_1", "random", 1.0, [0.6], "random_s1"),
        _row("random_s2_1", "random", 1.0, [0.9], "random_s2"),  # no hybrid seed 2: unpaired
    ]
    h = hybrid_vs_random(rows)
    assert h["seeds"] == [0, 1] and h["method"] == "hybrid"
    assert h["per_seed"]["hybrid"][0]["rows"] == ["hybrid_1"]
    assert h["per_seed"]["hybrid"][0]["hypervolume"] == pytest.approx(3 * 0.6)
    assert h["baselines_dominated"] == {"hybrid": [1.0, 0.0], "random": [1.0, 1.0]}
    assert h["hybrid_wins_hypervolume"] == [True, False]
    variant = [_row("hybrid_b35_s1_1", "found", 1.0, [0.8], "hybrid_b35_s1")]
    c = check_claims({"rows": rows + variant})
    assert list(c["variants_vs_random"]) == ["hybrid_b35"]  # hybrid_ops10 has no seed suffix
    v = c["variants_vs_random"]["hybrid_b35"]
    assert (
        v["method"] == "hybrid_b35"
        and v["seeds"] == [1]
        and v["per_seed"]["hybrid"][1]["rows"] == ["hybrid_b35_s1_1"]
    )


def test_temporal_shift_moves_channels_between_frames():
    x = torch.arange(8.0).reshape(2, 4, 1, 1)  # one clip of 2 frames x 4 channels
    y = TemporalShift(frames=2, shift_div=4)(x).flatten().tolist()
    assert y == [4.0, 0.0, 2.0, 3.0, 0.0, 1.0, 6.0, 7.0]


@pytest.mark.parametrize("width", [4, 8])
def test_frame_level_baselines_shapes_and_mixing(width):
    torch.manual_seed(0)
    tsm = create_tsm(num_classes=10, frames=4, width=width).eval()
    f2d = create_frame2d(num_classes=10, width=width).eval()
    x = torch.randn(2, 3, 4, 16, 16)
    assert tsm(x).shape == f2d(x).shape == (2, 10)
    y = x.clone()
    y[:, :, [0, 1]] = x[:, :, [1, 0]]  # swap two frames: only TSM can tell
    assert torch.allclose(f2d(x), f2d(y), atol=1e-5)
    assert not torch.allclose(tsm(x), tsm(y), atol=1e-5)


def test_a_changed_genotype_file_is_refused_not_mixed(tmp_path):
    g = tmp_path / "family" / "1.json"
    g.parent.mkdir()
    g.write_text((front.ROOT / "hybridnas/models/genotypes/builtin_sdas.json").read_text())
    (g.parent / "family.json").write_text("[]")  # the family's index is not a member
    (row,) = front.genotype_rows([str(g.parent)], "found", "hybrid")
    assert row.name == "hybrid_1" and row.seeds == 3 and row.digest
    record = {"name": row.name, "spec": row.to_dict()}
    assert front.all_specs([row], [record]) == [row]
    g.write_text(g.read_text().replace("}", " }", 1))  # another file under the same name
    (changed,) = front.genotype_rows([str(g.parent)], "found", "hybrid")
    with pytest.raises(ValueError, match="hybrid_1"):
        front.all_specs([changed], [record])


def test_pending_is_task_then_seed_major_fastest_first():
    a = RowSpec("a", "baseline", "c3d", "c3d", {"width": 2}, seeds=2)
    b = RowSpec("b", "found", "g", "genotype", {}, seeds=3, genotype="builtin")
    todo = front.pending([a, b], ("t1", "t2"), {("t1", "b", 0)}, {"a": 2.0, "b": 1.0})
    assert [(t, s, r.name) for t, s, r in todo] == [
        ("t1", 0, "a"), ("t1", 1, "b"), ("t1", 1, "a"), ("t1", 2, "b"),
        ("t2", 0, "b"), ("t2", 0, "a"), ("t2", 1, "b"), ("t2", 1, "a"), ("t2", 2, "b"),
    ]  # fmt: skip


def test_sync_benchmarks_replaces_the_front_section_only(tmp_path):
    from studies.front_report import sync_benchmarks

    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# b\n\n## A\n\na\n\n## Reading\n\nr\n")
    (tmp_path / "section.md").write_text("## Front\n\nv1\n")
    sync_benchmarks(tmp_path, bench)
    assert bench.read_text() == "# b\n\n## A\n\na\n\n## Front\n\nv1\n\n## Reading\n\nr\n"
    (tmp_path / "section.md").write_text("## Front\n\n### sub\n\nv2\n")
    sync_benchmarks(tmp_path, bench)
    assert bench.read_text().count("## Front") == 1 and "v1" not in bench.read_text()
    assert bench.read_text().endswith("### sub\n\nv2\n\n## Reading\n\nr\n")
