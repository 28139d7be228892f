"""A Hessian spectrum as a quadrature rule: what the theory integrates against.

Both sources of a spectrum become one :class:`Quadrature` (nodes λ_j, weights τ_j summing to 1,
dimension D) so every spectral functional is computed one way:
tr f(H) ≈ D · Σ_j τ_j f(λ_j).
- SLQ (stochastic Lanczos quadrature, Ubaru, Chen & Saad 2017; PyHessian): nodes are the Ritz
  values of each Lanczos run, weights the squared first components of the Ritz vectors, averaged
  over runs (Gauss quadrature of the spectral measure seen from a Rademacher start vector).
- An exact eigendecomposition: every eigenvalue with weight 1/D (the sum is then exact).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .io import PrunelimitError


@dataclass(frozen=True)
class Quadrature:
    nodes: np.ndarray  # (m,) eigenvalue nodes λ_j
    weights: np.ndarray  # (m,) τ_j ≥ 0, Σ τ_j = 1
    dim: int  # D, the dimension of the Hessian

    def __post_init__(self) -> None:
        nodes, weights = np.asarray(self.nodes, np.float64), np.asarray(self.weights, np.float64)
        if nodes.shape != weights.shape or nodes.ndim != 1:
            raise PrunelimitError(f"spectrum nodes {nodes.shape} and weights {weights.shape} must be equal 1-D shapes")
        if not (np.all(np.isfinite(nodes)) and np.all(np.isfinite(weights))):
            raise PrunelimitError("spectrum has non-finite nodes or weights")
        if self.dim < 1 or abs(weights.sum() - 1.0) > 1e-6:
            raise PrunelimitError(f"spectrum weights sum to {weights.sum():.6g} (need 1) or dim {self.dim} < 1")
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "weights", weights)

    def trace_f(self, f: Callable[[np.ndarray], np.ndarray]) -> float:
        """tr f(H) ≈ D · Σ_j τ_j f(λ_j) (Gauss quadrature on the raw nodes; no smoothing)."""
        return float(self.dim * np.sum(self.weights * f(self.nodes)))

    @property
    def lambda_max(self) -> float:
        return float(self.nodes.max())

    @property
    def lambda_min(self) -> float:
        return float(self.nodes.min())


def from_slq(ritz_values: np.ndarray, ritz_weights: np.ndarray, dim: int) -> Quadrature:
    """Pool SLQ runs: arrays of shape (runs, k); each run's weights sum to 1, runs averaged."""
    ritz_values = np.atleast_2d(np.asarray(ritz_values, np.float64))
    ritz_weights = np.atleast_2d(np.asarray(ritz_weights, np.float64))
    runs = ritz_values.shape[0]
    w = ritz_weights / ritz_weights.sum(axis=1, keepdims=True)  # guard against round-off in ‖v‖
    return Quadrature(ritz_values.ravel(), w.ravel() / runs, int(dim))


def from_eigenvalues(eigenvalues: np.ndarray) -> Quadrature:
    eigenvalues = np.asarray(eigenvalues, np.float64).ravel()
    return Quadrature(eigenvalues, np.full(eigenvalues.size, 1.0 / eigenvalues.size), eigenvalues.size)


def absolute_spectrum(q: Quadrature) -> Quadrature:
    """Negative eigenvalues enter the theory by magnitude |λ| (official code, ``cal_gw``).

    The quadratic model's ellipsoid needs a positive semi-definite Hessian; at a trained (not
    exactly minimal) point small negative curvature remains and is folded onto |λ|.
    """
    return Quadrature(np.abs(q.nodes), q.weights, q.dim)


def with_zero_mass(q: Quadrature, zero_fraction: float, zero_value: float = 1e-30) -> Quadrature:
    """Put mass ``zero_fraction`` at λ = ``zero_value`` and scale the rest by (1 − f₀).

    SLQ cannot resolve the (near-)zero eigenvalues; the official code estimates their share from
    the Hessian rows with L1 norm below 1e-7 and adds it at λ = 1e-30 (each such direction then
    contributes ≈1 to w²/D).
    """
    if not 0.0 <= zero_fraction <= 1.0:
        raise PrunelimitError(f"zero-eigenvalue fraction must be in [0, 1], got {zero_fraction}")
    nodes = np.concatenate([q.nodes, [zero_value]])
    weights = np.concatenate([q.weights * (1.0 - zero_fraction), [zero_fraction]])
    return Quadrature(nodes, weights, q.dim)


def kernel_variance(sigma2: float, lambda_min: float, lambda_max: float) -> float:
    """Variance of the smoothing Gaussian: ``sigma2 · max(1, λmax − λmin)`` (PyHessian ``density``)."""
    return sigma2 * max(1.0, lambda_max - lambda_min)


def smoothed_density(q: Quadrature, n_bins: int = 10000, sigma2: float = 1e-5,
                     pad: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-smoothed spectral density on a grid (PyHessian ``density``; plots and comparison).

    The kernel variance is ``sigma2 · max(1, λmax − λmin)`` (PyHessian's scaling) and the density
    is normalised to integrate to 1 on the grid. Integrating the theory's functional against this
    density is inaccurate; the theory uses :meth:`Quadrature.trace_f` instead.
    """
    lo, hi = q.lambda_min, q.lambda_max
    span = max(hi - lo, 1e-12)
    grid = np.linspace(lo - pad * span, hi + pad * span, n_bins)
    var = kernel_variance(sigma2, lo, hi)
    density = np.zeros(n_bins)
    for node, weight in zip(q.nodes, q.weights):
        density += weight * np.exp(-((grid - node) ** 2) / (2 * var)) / np.sqrt(2 * np.pi * var)
    area = np.trapezoid(density, grid)
    if area > 0:
        density /= area
    return grid, density
