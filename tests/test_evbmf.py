"""EVBMF recovers the rank of low-rank-plus-noise matrices and keeps nothing of pure noise."""

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from hybridnas.search.scorers.evbmf import evb_threshold, evbmf


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # OpenBLAS threads spin against each other on a shared 2-core box: SVDs get ~100x slower.
    with threadpool_limits(1):
        yield


def _low_rank_plus_noise(rng, n_rows, n_cols, rank, snr, sigma=1.0):
    """L x M matrix: rank singular values in snr * [1, 2] * noise edge sigma (sqrt L + sqrt M)."""
    q1 = np.linalg.qr(rng.standard_normal((n_rows, rank)))[0]
    q2 = np.linalg.qr(rng.standard_normal((n_cols, rank)))[0]
    edge = sigma * (np.sqrt(n_rows) + np.sqrt(n_cols))
    s = snr * edge * np.linspace(2.0, 1.0, rank)
    return (q1 * s) @ q2.T + sigma * rng.standard_normal((n_rows, n_cols))


@pytest.mark.parametrize("shape,rank", [((64, 64), 5), ((128, 48), 10), ((40, 200), 3)])
def test_recovers_true_rank(shape, rank):
    rng = np.random.default_rng(0)
    for _ in range(5):
        res = evbmf(_low_rank_plus_noise(rng, *shape, rank, snr=1.5))
        assert res.rank == rank
        assert res.full_rank == min(shape)
        assert res.sigma2 == pytest.approx(1.0, rel=0.15)
        assert res.singular_values.shape == (rank,)
        # EVB shrinks each kept value towards zero, keeping the order.
        assert np.all(res.singular_values < res.observed)
        assert np.all(np.diff(res.singular_values) <= 0)


@pytest.mark.parametrize("shape", [(64, 64), (128, 48), (40, 200)])
def test_pure_noise_keeps_nothing(shape):
    rng = np.random.default_rng(1)
    ranks = [evbmf(rng.standard_normal(shape) * 3.0).rank for _ in range(10)]
    assert max(ranks) <= 1


def test_transpose_and_torch_input_agree():
    rng = np.random.default_rng(2)
    v = _low_rank_plus_noise(rng, 30, 90, 4, snr=1.5)
    a, b = evbmf(v), evbmf(torch.from_numpy(v.T).float())
    assert a.rank == b.rank == 4
    assert a.sigma2 == pytest.approx(b.sigma2, rel=1e-3)


def test_given_sigma2_sets_threshold():
    rng = np.random.default_rng(3)
    v = _low_rank_plus_noise(rng, 50, 50, 6, snr=1.5)
    assert evbmf(v, sigma2=1.0).rank == 6
    assert evbmf(v, sigma2=1e6).rank == 0
    assert evbmf(v, sigma2=1e-6).rank == 50


def test_threshold_known_value():
    # alpha = 1: tau_thr ~ 2.5129 (Nakajima et al. 2013), threshold x = (1 + tau)(1 + 1 / tau).
    assert evb_threshold(1.0) == pytest.approx(3.5129 * (1 + 1 / 2.5129), rel=1e-3)


def test_zero_matrix():
    assert evbmf(np.zeros((5, 7))).rank == 0
