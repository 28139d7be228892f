"""A Hessian spectrum as a quadrature rule: what the theory integrates against.

Both sources of a spectrum become one :class:`Quadrature` (nodes λ_j, weights τ_j summing to 1,
dimension D) so every spectral functional is computed one way:
tr f(H) ≈ D · Σ_j τ_j f(λ_j).
- SLQ (stochastic Lanczos quadrature, Ubaru, Chen & Saad 2017; PyHessian): nodes are the Ritz
  values of each Lanczos run, weights the squared first components of the Ritz vectors, averaged
  over runs (Gauss quadrature of the spectral measure seen from a Rademacher start vector).
  Where the Hessian is known to be zero off a support S (:class:`prunelimit.hessian.SupportOperator`),
  Lanczos runs on S alone and the share (D − |S|)/D off it, exact for a Rademacher start vector,
  is one node at exactly 0 (:func:`with_exact_null_mass`, ``settings["exact_null_mass"]``).
- An exact eigendecomposition: every eigenvalue with weight 1/D (the sum is then exact).

Also the files of both (:class:`SLQResult`, :func:`save_exact`/:func:`load_exact`; the Lanczos runs
that make them are in :mod:`prunelimit.hessian`): numpy only, so figure and table jobs read them
without torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .io import PrunelimitError, load_npz, save_npz


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


def with_exact_null_mass(q: Quadrature, null_mass: float) -> Quadrature:
    """``q`` (a rule on the support of H) with the exact null mass off the support added: one node at
    exactly 0.0 with weight ``null_mass``, the other weights scaled by 1 − ``null_mass``; ``q`` itself
    when ``null_mass`` is 0 (no support known)."""
    null_mass = float(null_mass)
    if not 0.0 <= null_mass <= 1.0:
        raise PrunelimitError(f"exact null mass must be in [0, 1], got {null_mass}")
    if null_mass == 0.0:
        return q
    return Quadrature(np.append(q.nodes, 0.0), np.append(q.weights * (1.0 - null_mass), null_mass), q.dim)


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
    rounding floor of the Hessian products) and are placed at ``zero_value``; so is a node at exactly
    0 (the exact null mass off a known support, :func:`with_exact_null_mass`). The Hessian-row
    experiment estimates the share f₀ of exactly-null directions [code ``gradient.py``], but SLQ
    already resolves most of that mass: the Rademacher start vector has a component in the null
    space, and Lanczos puts it on its lowest Ritz node (on a Hessian with zero rows, exactly the
    share of those rows). The official code rescales the whole spectrum by (1 − f₀) and adds f₀ at
    λ = 1e-30 [code ``cal_sparse_rate``], which counts that mass twice. Here only the shortfall
    f₀ − m₀ is added (m₀: the null mass SLQ found), taken in proportion from the other nodes, so
    the null mass ends at max(m₀, f₀). m₀ includes the exact null mass off a known support: f₀ tops
    up only what that and the near-null Ritz nodes leave.
    """
    if not 0.0 <= zero_fraction <= 1.0:
        raise PrunelimitError(f"zero-eigenvalue fraction must be in [0, 1], got {zero_fraction}")
    null = (np.abs(q.nodes) < null_threshold) | (q.nodes == 0.0)
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


@dataclass(frozen=True)
class SLQResult:
    """Stochastic Lanczos quadrature of one Hessian: per run, the Ritz nodes and their weights.

    Runs that stopped early (breakdown) are padded to k columns with zero weights (their node is
    repeated) and zero α, β; ``steps`` holds each run's true length.

    Where Lanczos ran on the Hessian's support alone, the Ritz nodes and weights are those of H_SS,
    and ``settings["exact_null_mass"]`` (:attr:`exact_null_mass`) is the start vectors' exact share
    off the support: every rule made here (:meth:`quadrature`, :meth:`run_quadrature`) puts it at
    exactly 0, so build rules through these methods, not from ``ritz_values`` directly.
    """

    ritz_values: np.ndarray  # (runs, k) Ritz values θ_j of each run's tridiagonal
    ritz_weights: np.ndarray  # (runs, k) τ_j = squared first components of its eigenvectors; rows sum to 1
    alphas: np.ndarray  # (runs, k) diagonals of the tridiagonals
    betas: np.ndarray  # (runs, k − 1) off-diagonals
    dim: int  # D, the dimension of the Hessian
    settings: dict = field(default_factory=dict)  # how it was made (params, runs, iterations, seed, …)
    steps: np.ndarray | None = None  # (runs,) Lanczos steps actually taken

    def __post_init__(self) -> None:
        vals = np.atleast_2d(np.asarray(self.ritz_values, np.float64))
        wts = np.atleast_2d(np.asarray(self.ritz_weights, np.float64))
        alphas = np.atleast_2d(np.asarray(self.alphas, np.float64))
        runs, k = vals.shape
        betas = np.asarray(self.betas, np.float64)
        betas = betas.reshape(runs, -1) if betas.size else np.zeros((runs, 0))
        steps = np.full(runs, k, np.int64) if self.steps is None else np.asarray(self.steps, np.int64).ravel()
        problems = []
        if wts.shape != vals.shape or alphas.shape != vals.shape:
            problems.append(f"ritz_values {vals.shape}, ritz_weights {wts.shape} and alphas {alphas.shape} differ")
        elif betas.shape != (runs, k - 1):
            problems.append(f"betas {betas.shape} should be {(runs, k - 1)}")
        elif steps.shape != (runs,) or steps.min() < 1 or steps.max() > k:
            problems.append(f"steps {steps.tolist()} should be {runs} counts in [1, {k}]")
        elif not (np.isfinite(vals).all() and np.isfinite(wts).all()):
            problems.append("Ritz values or weights are not finite")
        elif (wts < -1e-12).any() or np.abs(wts.sum(axis=1) - 1).max() > 1e-6:
            problems.append(f"Ritz weights of each run must sum to 1 (got {wts.sum(axis=1).round(6).tolist()})")
        if int(self.dim) < k:
            problems.append(f"dimension {self.dim} is smaller than the {k} Lanczos steps")
        if problems:
            raise PrunelimitError("inconsistent SLQ result: " + "; ".join(problems))
        object.__setattr__(self, "ritz_values", vals)
        object.__setattr__(self, "ritz_weights", wts)
        object.__setattr__(self, "alphas", alphas)
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "dim", int(self.dim))

    @property
    def n_runs(self) -> int:
        return self.ritz_values.shape[0]

    @property
    def exact_null_mass(self) -> float:
        """The start vectors' exact share off the Hessian's known support, (D − |S|)/D; 0.0 when
        Lanczos ran on the whole space (and for files written before it was recorded)."""
        return float(self.settings.get("exact_null_mass", 0.0))

    def quadrature(self, absolute: bool = False) -> Quadrature:
        """The runs pooled into one quadrature rule (weights averaged over runs), the exact null
        mass at 0 (:func:`with_exact_null_mass`).

        ``absolute=True`` folds negative eigenvalues onto |λ| (:func:`spectrum.absolute_spectrum`).
        """
        q = with_exact_null_mass(from_slq(self.ritz_values, self.ritz_weights, self.dim), self.exact_null_mass)
        return absolute_spectrum(q) if absolute else q

    def run_quadrature(self, run: int) -> Quadrature:
        """Run ``run``'s own rule: its first ``steps[run]`` nodes, weights renormalised, the exact
        null mass at 0."""
        m = int(self.steps[run])
        nodes, weights = self.ritz_values[run, :m], self.ritz_weights[run, :m]
        return with_exact_null_mass(Quadrature(nodes, weights / weights.sum(), self.dim), self.exact_null_mass)

    def trace_f(self, f: Callable[[np.ndarray], np.ndarray], absolute: bool = False) -> float:
        """SLQ estimate of tr f(H) = D · mean over runs of Σ_j τ_j f(θ_j) (:meth:`Quadrature.trace_f`)."""
        return self.quadrature(absolute).trace_f(f)

    def density(self, n_bins: int = 10000, sigma2: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
        """Gaussian-smoothed density on a grid (plots and the official-code comparison only)."""
        return smoothed_density(self.quadrature(), n_bins=n_bins, sigma2=sigma2)

    def save(self, path: str | os.PathLike, n_bins: int | None = None, sigma2: float | None = None) -> None:
        """Write an .npz atomically; with ``n_bins`` and ``sigma2`` the smoothed density goes along."""
        arrays = {"ritz_values": self.ritz_values, "ritz_weights": self.ritz_weights, "alphas": self.alphas,
                  "betas": self.betas, "steps": self.steps, "dim": np.int64(self.dim),
                  "settings": np.array(json.dumps(self.settings, sort_keys=True))}
        if n_bins is not None and sigma2 is not None:
            arrays["grid"], arrays["density"] = self.density(n_bins, sigma2)
        save_npz(path, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SLQResult:
        arrays = load_npz(path, "SLQ result", ("ritz_values", "ritz_weights", "alphas", "betas", "steps", "dim",
                                               "settings"))
        try:
            settings = json.loads(str(arrays["settings"]))
            return cls(arrays["ritz_values"], arrays["ritz_weights"], arrays["alphas"], arrays["betas"],
                       int(arrays["dim"]), settings, arrays["steps"])
        except (PrunelimitError, ValueError) as err:
            raise PrunelimitError(f"SLQ result {path} is inconsistent: {err}") from None


def save_exact(path: str | os.PathLike, eigenvalues: np.ndarray, settings: dict) -> None:
    save_npz(path, eigenvalues=np.asarray(eigenvalues, np.float64),
             settings=np.array(json.dumps(settings, sort_keys=True)))


def load_exact(path: str | os.PathLike) -> np.ndarray:
    """Eigenvalues saved by :func:`save_exact` (ascending), checked."""
    eigenvalues = np.asarray(load_npz(path, "exact spectrum", ["eigenvalues"])["eigenvalues"], np.float64)
    if eigenvalues.ndim != 1 or eigenvalues.size == 0 or not np.isfinite(eigenvalues).all():
        raise PrunelimitError(f"exact spectrum {path} must hold a non-empty finite 1-D array of eigenvalues")
    return eigenvalues
