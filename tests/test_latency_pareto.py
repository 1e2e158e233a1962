"""Latency / FLOPs / parameter counts, the latency budget, and the Pareto front."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from hybridnas.measure.counts import count_flops, count_params, measure_latency
from hybridnas.search.evolution.fitness import LatencyBudget
from hybridnas.search.evolution.pareto import pareto_figure, pareto_front, plot_pareto


def _tiny_video_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, 8, 3, padding=1),
        nn.BatchNorm3d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(8, 5),
    )


def test_count_flops_counts_conv3d_and_linear():
    # Conv3d: 2 * C_out * C_in * 27 per output voxel (4 x 8 x 8 voxels); Linear: 2 * 8 * 5.
    flops = count_flops(_tiny_video_net(), (3, 4, 8, 8))
    assert flops == 2 * 8 * 3 * 27 * 4 * 8 * 8 + 2 * 8 * 5


def test_count_params():
    assert count_params(_tiny_video_net()) == (8 * 3 * 27 + 8) + 2 * 8 + (8 * 5 + 5)


def test_measure_latency_restores_mode_and_reports_per_clip():
    net = _tiny_video_net().train()
    res = measure_latency(net, (3, 4, 8, 8), batch_size=2, min_run_time=0.05, threads=1)
    assert net.training
    assert res.median_ms > 0 and res.iqr_ms >= 0
    assert res.batch_size == 2 and res.threads == 1 and res.device == "cpu" and res.runs >= 1


def test_latency_budget():
    reject = LatencyBudget(10.0, mode="reject", weight=0.07)
    assert reject.apply_budget(0.8, 9.0) == 0.8
    assert reject.apply_budget(0.8, 10.0) == 0.8
    assert reject.apply_budget(0.8, 11.0) is None
    soft = LatencyBudget(10.0, mode="penalty", weight=0.5)
    assert soft.apply_budget(0.8, 40.0) == pytest.approx(0.4)
    assert soft.apply_budget(0.8, 5.0) == 0.8
    with pytest.raises(ValueError):
        LatencyBudget(10.0, mode="soft", weight=0.07)


def _pts(*pairs):
    return [{"acc": a, "ms": m} for a, m in pairs]


def test_pareto_known_front():
    pts = _pts((0.9, 10), (0.8, 5), (0.7, 6), (0.95, 20), (0.6, 1), (0.85, 12))
    assert pareto_front(pts, maximize=["acc"], minimize=["ms"]) == [0, 1, 3, 4]


def test_pareto_duplicates_and_ties():
    pts = _pts((0.9, 10), (0.9, 10), (0.9, 11), (0.8, 10))
    # Equal points don't dominate each other; equal accuracy but slower is dominated.
    assert pareto_front(pts, maximize=["acc"], minimize=["ms"]) == [0, 1]
    assert pareto_front([], maximize=["acc"], minimize=[]) == []


def _brute_front(pts, maximize, minimize):
    def dominates(p, q):
        keys = [*maximize, *minimize]
        no_worse = all(p[k] >= q[k] for k in maximize) and all(p[k] <= q[k] for k in minimize)
        return no_worse and any(p[k] != q[k] for k in keys)

    return [i for i, q in enumerate(pts) if not any(dominates(p, q) for p in pts)]


_small = st.integers(0, 5).map(float)  # few distinct values -> many ties and duplicates


@settings(max_examples=150, deadline=None)
@given(st.lists(st.fixed_dictionaries({"a": _small, "b": _small, "c": _small}), max_size=25))
def test_pareto_matches_brute_force(pts):
    for maximize, minimize in [(["a"], ["b"]), (["a", "c"], ["b"]), ([], ["a", "b", "c"])]:
        assert pareto_front(pts, maximize, minimize) == _brute_front(pts, maximize, minimize)


def test_pareto_front_points_are_mutually_non_dominating():
    pts = [{"x": float(x), "y": float(y)} for x, y in itertools.product(range(4), repeat=2)]
    assert pareto_front(pts, maximize=["x", "y"], minimize=[]) == [15]


def test_plot_pareto_writes_png(tmp_path):
    pts = _pts((0.9, 10), (0.8, 5), (0.7, 6))
    out = plot_pareto(pts, "ms", "acc", tmp_path / "sub" / "front.png", labels=["a", "b", "c"])
    data = out.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"


def _drawn_front(fig) -> list[tuple[float, float]]:
    (line,) = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "Pareto front"]
    return list(zip(line.get_xdata(), line.get_ydata(), strict=True))


def test_drawn_front_is_non_dominated_in_the_plotted_objectives():
    # (0.7, 9 ms, few FLOPs) is on the 3-objective front but dominated in the plane by
    # (0.8, 5 ms): the line must skip it (before issue 11 it joined all three).
    pts = [
        {"acc": 0.9, "ms": 10.0, "flops": 50.0},
        {"acc": 0.8, "ms": 5.0, "flops": 40.0},
        {"acc": 0.7, "ms": 9.0, "flops": 1.0},
    ]
    assert pareto_front(pts, maximize=["acc"], minimize=["ms", "flops"]) == [0, 1, 2]
    drawn = _drawn_front(pareto_figure(pts, "ms", "acc"))
    assert drawn == [(5.0, 0.8), (10.0, 0.9)]
    for x, y in drawn:
        better = [p for p in pts if p["ms"] <= x and p["acc"] >= y]
        assert all((p["ms"], p["acc"]) == (x, y) for p in better)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({"a": _small, "b": _small, "c": _small}), max_size=12))
def test_drawn_front_never_joins_a_point_dominated_in_the_plane(pts):
    drawn = set(_drawn_front(pareto_figure(pts, "b", "a")))
    plane = {(q["b"], q["a"]) for i, q in enumerate(pts) if i in _brute_front(pts, ["a"], ["b"])}
    assert drawn == plane
