"""CONet channel rule: rank/condition of conv weights, rank slope, grow/shrink steps."""

import json

import pytest
import torch
from threadpoolctl import threadpool_limits

from hybridnas.search.scorers.channels import (
    ChannelScaler,
    layer_rank,
    mapping_condition,
    rank_slope,
)
from hybridnas.space.macro import round_width


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # OpenBLAS threads spin against each other on a shared 2-core box: SVDs get ~100x slower.
    with threadpool_limits(1):
        yield


def _weight_with_spectrum(s: torch.Tensor, c_out: int = 32, c_in: int = 48) -> torch.Tensor:
    """1x1x1 conv weight (c_out, c_in, 1, 1, 1) with singular values s plus faint noise."""
    g = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(c_out, len(s), generator=g))[0]
    v = torch.linalg.qr(torch.randn(c_in, len(s), generator=g))[0]
    w = (u * s) @ v.T + 0.01 * torch.randn(c_out, c_in, generator=g)
    return w[..., None, None, None]


def test_layer_rank_spread_spectrum_above_low_rank_above_iid():
    full = _weight_with_spectrum(torch.logspace(2, 0, 32))
    low = _weight_with_spectrum(torch.tensor([10.0, 9.0, 8.0, 7.0]))
    iid = torch.randn(32, 16, 3, 3, 3, generator=torch.Generator().manual_seed(1))
    r_full, r_low, r_iid = layer_rank(full), layer_rank(low), layer_rank(iid)
    assert r_low == pytest.approx(4 / 32)
    assert r_full > 2 * r_low
    # An i.i.d. (freshly initialised) weight is all noise to EVBMF: CONet ranks start near 0.
    assert r_iid < 0.05
    assert 0.0 <= r_full <= 1.0


def test_mapping_condition():
    assert mapping_condition(_weight_with_spectrum(torch.tensor([10.0, 10.0, 10.0]))) < 1.1
    assert mapping_condition(_weight_with_spectrum(torch.logspace(2, 0, 32))) > 5.0


def test_layer_rank_accepts_conv2d_and_linear_shapes():
    assert 0.0 <= layer_rank(torch.randn(16, 8, 3, 3)) <= 1.0
    assert 0.0 <= layer_rank(torch.randn(16, 8)) <= 1.0
    with pytest.raises(ValueError):
        layer_rank(torch.randn(16))


def test_rank_slope():
    assert rank_slope([0.1, 0.2, 0.4, 0.3]) == pytest.approx(0.3 / (2 + 1e-4))
    assert rank_slope([0.5, 0.4, 0.3]) == 0.0
    assert rank_slope([0.2]) == 0.0


def test_round_width():
    assert round_width(19.2) == 20
    assert round_width(12.8) == 12
    assert round_width(1.0) == 4
    assert round_width(21, divisor=8) == 24


def test_grows_when_slope_high_and_shrinks_when_low_or_ill_conditioned():
    sc = ChannelScaler()
    new = sc.step(
        {"a": 0.05, "b": 0.001, "c": 0.05},
        {"a": 2.0, "b": 2.0, "c": 50.0},
        {"a": 64, "b": 64, "c": 64},
    )
    assert new == {"a": 76, "b": 52, "c": 52}  # 64 * 1.2 = 76.8 -> 76; 64 * 0.8 = 51.2 -> 52
    assert sc.phi == {"a": 0.2, "b": 0.2, "c": 0.2}
    assert not sc.done


def test_phi_halves_on_direction_flip_only():
    sc = ChannelScaler()
    w = sc.step({"s": 0.05}, {}, {"s": 64})
    w = sc.step({"s": 0.05}, {}, w)
    assert sc.phi["s"] == 0.2
    w = sc.step({"s": 0.0}, {}, w)
    assert sc.phi["s"] == 0.1


def test_stops_when_phi_below_gamma_and_clamps():
    sc = ChannelScaler(min_width=8, max_width=64)
    widths = {"s": 32}
    # Alternating evidence flips the direction each trial, so phi halves until it drops below gamma.
    for t in range(20):
        if sc.done:
            break
        widths = sc.step({"s": 0.05 if t % 2 == 0 else 0.0}, {}, widths)
        assert 8 <= widths["s"] <= 64 and widths["s"] % 4 == 0
    assert sc.done and sc.phi["s"] < sc.gamma
    frozen = dict(widths)
    assert sc.step({"s": 1.0}, {}, widths) == frozen


def test_group_stuck_at_bound_still_converges():
    sc = ChannelScaler(min_width=8, max_width=32)
    widths = {"s": 16}
    for _ in range(20):
        widths = sc.step({"s": 1.0}, {}, widths)
    assert widths["s"] == 32 and sc.done


def test_state_round_trips_through_json():
    sc = ChannelScaler(min_width=8, divisor=8)
    sc.step({"a": 0.05, "b": 0.0}, {}, {"a": 16, "b": 32})
    again = ChannelScaler.from_dict(json.loads(json.dumps(sc.to_dict())))
    assert again == sc
    assert again.step({"a": 0.0}, {}, {"a": 24}) == sc.step({"a": 0.0}, {}, {"a": 24})
