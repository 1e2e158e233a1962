"""Empirical variational Bayes matrix factorisation (EVBMF), analytic global solution.

Follows Nakajima, Sugiyama, Babacan & Tomioka (2013), "Global analytic solution of fully-observed
variational Bayesian matrix factorization", JMLR 14. For an observed matrix V (L x M, L <= M) with
singular values gamma_h, noise variance sigma2 and alpha = L / M, let x_h = gamma_h^2 / (M sigma2).

* A component is kept by EVB iff x_h > x_thr = (1 + tau_thr)(1 + alpha / tau_thr), where tau_thr is
  the positive root of psi(tau) = log(1 + tau) + alpha * log(1 + tau / alpha) - tau.
* Its estimate is gamma_hat = gamma_h * tau(x_h) / x_h, with tau(x) the larger root of
  tau^2 - (x - 1 - alpha) tau + alpha = 0, i.e. x = (1 + tau)(1 + alpha / tau).
* The free energy as a function of sigma2 (up to constants, divided by M) is
  L log sigma2 + ||V||_F^2 / (M sigma2) + sum_{kept h} psi(tau(x_h)); sigma2 is chosen to minimise
  it inside the bounds of the paper's Theorem on the noise variance.
"""

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.optimize
import torch


@dataclass(frozen=True)
class EVBMFResult:
    """Outcome of :func:`evbmf`.

    rank: number of components kept. singular_values: EVB estimates of the kept components,
    descending, shape (rank,). observed: the matching observed singular values, shape (rank,).
    sigma2: noise variance used (given or estimated). full_rank: min(L, M).
    """

    rank: int
    singular_values: np.ndarray
    observed: np.ndarray
    sigma2: float
    full_rank: int


def _psi(tau: np.ndarray, alpha: float) -> np.ndarray:
    """Free-energy gain of keeping a component whose EVB solution has parameter tau (< 0: keep)."""
    return np.log1p(tau) + alpha * np.log1p(tau / alpha) - tau


def _tau(x: np.ndarray, alpha: float) -> np.ndarray:
    """Larger root tau of x = (1 + tau)(1 + alpha / tau); needs x >= (1 + sqrt(alpha))^2."""
    b = x - (1.0 + alpha)
    return 0.5 * (b + np.sqrt(np.maximum(b * b - 4.0 * alpha, 0.0)))


def evb_threshold(alpha: float) -> float:
    """Threshold on gamma^2 / (M sigma2) above which EVB keeps a component; 0 < alpha <= 1."""
    # psi > 0 at sqrt(alpha) and -> -inf for large tau; the root lies in between (~2.5 sqrt(alpha)).
    tau_thr = scipy.optimize.brentq(lambda t: _psi(t, alpha), np.sqrt(alpha), 10.0 + 10.0 * alpha)
    return (1.0 + tau_thr) * (1.0 + alpha / tau_thr)


def _free_energy(sigma2: float, gamma2: np.ndarray, m: int, alpha: float, x_thr: float) -> float:
    """EVB free energy (x 2/M, constants dropped) at sigma2; gamma2 holds all L squared values."""
    x = gamma2 / (m * sigma2)
    kept = x > x_thr
    return (
        len(gamma2) * np.log(sigma2)
        + gamma2.sum() / (m * sigma2)
        + float(_psi(_tau(x[kept], alpha), alpha).sum())
    )


def _sigma2_bounds(gamma2: np.ndarray, m: int, alpha: float, x_thr: float) -> tuple[float, float]:
    """Range that holds the optimal sigma2 (Nakajima et al. 2013): gamma2 descending, length L."""
    n_rows = len(gamma2)
    upper = gamma2.sum() / (n_rows * m)
    h_bar = min(int(np.ceil(n_rows / (1.0 + alpha))) - 1, n_rows - 1)
    lower = max(gamma2[h_bar] / (m * x_thr), gamma2[h_bar:].sum() / (m * (n_rows - h_bar)))
    return max(lower, upper * 1e-12), upper


def _estimate_sigma2(gamma2: np.ndarray, m: int, alpha: float, x_thr: float) -> float:
    """Minimise the free energy over log sigma2: coarse grid (it can be multimodal), then refine."""
    lo, hi = _sigma2_bounds(gamma2, m, alpha, x_thr)
    if hi <= lo * (1 + 1e-9):
        return hi
    grid = np.linspace(np.log(lo), np.log(hi), 41)
    energies = [_free_energy(np.exp(g), gamma2, m, alpha, x_thr) for g in grid]
    best = int(np.argmin(energies))
    left, right = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    res = scipy.optimize.minimize_scalar(
        lambda g: _free_energy(np.exp(g), gamma2, m, alpha, x_thr),
        bounds=(left, right),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(res.x)) if res.fun <= energies[best] else float(np.exp(grid[best]))


def evbmf(matrix: np.ndarray | torch.Tensor, sigma2: float | None = None) -> EVBMFResult:
    """Rank and denoised singular values of a 2-D matrix (L x M) by EVBMF.

    sigma2: noise variance per entry; None estimates it by free-energy minimisation.
    An L > M matrix is transposed first (the solution is symmetric in the two factors).
    """
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().double().numpy()
    v = np.asarray(matrix, dtype=np.float64)
    if v.ndim != 2 or min(v.shape) == 0:
        raise ValueError(f"evbmf needs a non-empty 2-D matrix, got shape {v.shape}")
    if v.shape[0] > v.shape[1]:
        v = v.T
    n_rows, m = v.shape
    alpha = n_rows / m
    gamma = scipy.linalg.svd(v, compute_uv=False, lapack_driver="gesdd")
    gamma2 = gamma**2
    x_thr = evb_threshold(alpha)
    if gamma2.sum() == 0.0:
        return EVBMFResult(0, np.zeros(0), np.zeros(0), 0.0 if sigma2 is None else sigma2, n_rows)
    if sigma2 is None:
        sigma2 = _estimate_sigma2(gamma2, m, alpha, x_thr)
    x = gamma2 / (m * sigma2)
    kept = x > x_thr
    estimates = gamma[kept] * _tau(x[kept], alpha) / x[kept]
    return EVBMFResult(int(kept.sum()), estimates, gamma[kept], float(sigma2), n_rows)
