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


def top_up_zero_mass(q: Quadrature, zero_fraction: float, null_threshold: float,
                     zero_value: float = 1e-30) -> tuple[Quadrature, float]:
    """Snap the near-null nodes of ``q`` to ``zero_value`` and raise their mass to ``zero_fraction``.

    Returns (spectrum, top-up). Nodes with |λ| < ``null_threshold`` are numerically null (below the
    rounding floor of the Hessian products) and are placed at ``zero_value``. The Hessian-row
    experiment estimates the share f₀ of exactly-null directions [code ``gradient.py``], but SLQ
    already resolves most of that mass: the Rademacher start vector has a component in the null
    space, and Lanczos puts it on its lowest Ritz node (on a Hessian with zero rows, exactly the
    share of those rows). The official code rescales the whole spectrum by (1 − f₀) and adds f₀ at
    λ = 1e-30 [code ``cal_sparse_rate``], which counts that mass twice. Here only the shortfall
    f₀ − m₀ is added (m₀: the null mass SLQ found), taken in proportion from the other nodes, so
    the null mass ends at max(m₀, f₀).
    """
    if not 0.0 <= zero_fraction <= 1.0:
        raise PrunelimitError(f"zero-eigenvalue fraction must be in [0, 1], got {zero_fraction}")
    null = np.abs(q.nodes) < null_threshold
    nodes = np.where(null, zero_value, q.nodes)
    found = float(np.sum(q.weights[null]))
    top_up = max(0.0, zero_fraction - found)
    if top_up == 0.0:
        return Quadrature(nodes, q.weights, q.dim), 0.0
    weights = np.where(null, q.weights, q.weights * (1.0 - zero_fraction) / (1.0 - found))
    return Quadrature(np.append(nodes, zero_value), np.append(weights, top_up), q.dim), top_up


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
