"""Lanczos tridiagonalisation and stochastic Lanczos quadrature (SLQ) of a symmetric operator.

- :class:`Lanczos`: Lanczos tridiagonalisation with full reorthogonalisation,
  its basis in one preallocated matrix, extendable step by step.
- :func:`slq`: stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017, "Fast estimation of
  tr(f(A)) via stochastic Lanczos quadrature"; PyHessian's ``density``, Yao et al. 2020):
  Rademacher start vectors, Ritz values as nodes, squared first eigenvector components as weights.
  The result is an :class:`~prunelimit.spectrum.SLQResult`; its ``quadrature()`` is the
  :class:`~prunelimit.spectrum.Quadrature` every spectral functional is computed from
  (tr f(H) ≈ D · mean over runs of Σ_j τ_j f(θ_j), :meth:`~prunelimit.spectrum.Quadrature.trace_f`).

The operator is usually :class:`prunelimit.hessian.HessianOperator`; for :class:`Lanczos` anything
with ``dim`` and ``matvec`` will do (:class:`LinearOperator`). :func:`slq` also asks the operator for
its support (``on_support()``: zero rows and columns outside it, :class:`OnSupport`; None for no
restriction) and for what to record of it (``describe()``): :class:`SpectralOperator`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from .io import PrunelimitError
from .spectrum import Quadrature, SLQResult, with_exact_null_mass


class LinearOperator(Protocol):
    """What :class:`Lanczos` needs: a dimension and a product with a flat vector."""

    dim: int

    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...


class OnSupport(Protocol):
    """What an operator's ``on_support()`` returns (or None): the operator on its support S alone.

    ``compress`` maps a start vector of dimension D to its S entries, ``matvec`` is H_SS·x and
    ``null_mass`` the exact share of a Rademacher start vector off S, (D − |S|)/D, which the
    quadrature puts at exactly 0 (e.g. :class:`prunelimit.hessian.SupportOperator`).
    """

    dim: int
    dtype: torch.dtype
    device: torch.device
    null_mass: float

    def compress(self, v: torch.Tensor) -> torch.Tensor: ...

    def matvec(self, x: torch.Tensor) -> torch.Tensor: ...


class SpectralOperator(LinearOperator, Protocol):
    """What :func:`slq` needs: a :class:`LinearOperator` that also answers two questions.

    ``on_support()``: the operator on its support alone (:class:`OnSupport`), or None where it has no
    known support restriction. ``describe()``: the operator's own settings to record beside SLQ's
    (e.g. :meth:`prunelimit.hessian.HessianOperator.describe`), {} for none; an operator that
    describes itself counts its products in ``products``, and the run records how many it took.
    """

    def on_support(self) -> OnSupport | None: ...

    def describe(self) -> dict: ...


class Lanczos:
    """Lanczos tridiagonalisation of ``op`` from ``v0`` with full reorthogonalisation, extendable.

    :meth:`extend` runs steps until the tridiagonal T = Q H Qᵀ (the rows of Q are the Lanczos
    vectors) has the asked size: the steps already run are kept, so doubling the step count costs
    only the new products. ``alphas`` (m,) and ``betas`` (m−1,) are T's diagonal and off-diagonal
    (float64). ``broke_down`` is set when the Krylov space is exhausted (β ≈ 0: an invariant
    subspace, whose Ritz values are then exact eigenvalues); no step runs after that.

    The basis lives in one (max_steps, D) matrix (``basis``, preallocated by the caller to reuse it
    across runs, or allocated here). After the three-term recurrence each new vector is
    orthogonalised against the whole basis by classical Gram–Schmidt, in place (two matrix–vector
    products), and once more when that removed more than 1 − 1/√2 of its norm ("twice is enough":
    Daniel, Gragg, Kaufman & Stewart 1976; Parlett, *The Symmetric Eigenvalue Problem*, §6.9).
    PyHessian instead orthogonalises against a Python list of per-layer tensors, vector by vector.
    """

    def __init__(self, op: LinearOperator, v0: torch.Tensor, max_steps: int, basis: torch.Tensor | None = None):
        dim = op.dim
        if max_steps < 1:
            raise PrunelimitError(f"Lanczos needs n_iter ≥ 1, got {max_steps}")
        self.max_steps = min(int(max_steps), dim)
        if v0.shape != (dim,):
            raise PrunelimitError(f"Lanczos start vector must have shape ({dim},), got {tuple(v0.shape)}")
        if basis is None:
            basis = torch.empty(self.max_steps, dim, dtype=v0.dtype, device=v0.device)
        elif basis.shape[0] < self.max_steps or basis.shape[1] != dim:
            raise PrunelimitError(f"Lanczos basis buffer {tuple(basis.shape)} is too small for "
                                  f"({self.max_steps}, {dim})")
        norm = torch.linalg.vector_norm(v0)
        if not torch.isfinite(norm) or norm == 0:
            raise PrunelimitError("Lanczos start vector is zero or not finite")
        self.op, self.basis = op, basis
        self.basis[0] = v0 / norm
        self._alphas: list[float] = []
        self._betas: list[float] = []
        self._pending: tuple[float, torch.Tensor] | None = None  # (β, unnormalised next vector)
        self._scale = 0.0  # running estimate of ‖T‖, the yardstick of breakdown
        self.broke_down = False

    @property
    def steps(self) -> int:
        return len(self._alphas)

    @property
    def alphas(self) -> np.ndarray:
        return np.asarray(self._alphas, np.float64)

    @property
    def betas(self) -> np.ndarray:
        return np.asarray(self._betas, np.float64)

    def extend(self, steps: int, on_step: Callable[[], None] | None = None) -> int:
        """Run until T has ``steps`` rows (at most ``max_steps``), or breakdown; return the size reached."""
        eps = torch.finfo(self.basis.dtype).eps
        target = min(int(steps), self.max_steps)
        while self.steps < target and not self.broke_down:
            j = self.steps
            if self._pending is not None:  # the vector the previous step left, now admitted to the basis
                beta, w = self._pending
                self._betas.append(beta)
                self.basis[j] = w / beta
                self._pending = None
            q = self.basis[j]
            w = self.op.matvec(q).to(self.basis.device, self.basis.dtype)
            if not torch.isfinite(w).all():
                raise PrunelimitError(f"Hessian-vector product {j + 1} is not finite")
            alpha = torch.dot(w, q).item()
            w.sub_(q, alpha=alpha)
            if j > 0:
                w.sub_(self.basis[j - 1], alpha=self._betas[-1])
            active = self.basis[:j + 1]  # (j+1, D)
            before = torch.linalg.vector_norm(w)
            for _ in range(2):
                h = torch.mv(active, w)  # components along the basis: (j+1,)
                w.addmv_(active.t(), h, alpha=-1.0)
                alpha += h[j].item()  # Rayleigh quotient refined by what the recurrence left along q_j
                after = torch.linalg.vector_norm(w)
                if after > before / math.sqrt(2):
                    break
                before = after
            self._alphas.append(alpha)
            beta = after.item()
            self._scale = max(self._scale, abs(alpha) + beta + (self._betas[-1] if self._betas else 0.0))
            if on_step is not None:
                on_step()
            if beta <= 100 * eps * max(self._scale, 1e-300) * math.sqrt(j + 1):
                self.broke_down = True  # the Krylov space is invariant
            elif j + 1 < self.max_steps:
                self._pending = (beta, w)
        return self.steps


def tridiagonal_ritz(alphas: np.ndarray, betas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values θ_j (ascending) and weights τ_j = (first component of eigenvector j)² of T."""
    m = len(alphas)
    T = np.diag(np.asarray(alphas, np.float64))
    if m > 1:
        T += np.diag(betas, 1) + np.diag(betas, -1)
    theta, vecs = np.linalg.eigh(T)
    return theta, vecs[0] ** 2


def rademacher(dim: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A vector of independent ±1 entries from ``generator`` (on the CPU: identical on any device)."""
    return torch.randint(0, 2, (dim,), generator=generator).to(dtype).mul_(2).sub_(1)


def run_quadrature(alphas: np.ndarray, betas: np.ndarray, dim: int) -> Quadrature:
    """The Gauss quadrature rule of one Lanczos run's tridiagonal (nodes θ_j, weights τ_j)."""
    theta, tau = tridiagonal_ritz(alphas, betas)
    return Quadrature(theta, tau / tau.sum(), int(dim))


# hessian.basis_device "auto" keeps the Lanczos basis on the GPU while it takes at most this share of the GPU's
# free memory when it is allocated; the rest is left to the products (one HVP chunk's graph: benchmarks/paper_scale.py
# measures it per paper task). A larger basis goes to host memory.
BASIS_GPU_SHARE = 0.5
BASIS_DEVICES = ("auto", "cpu", "same")


def basis_placement(setting: torch.device | str | None, op_device: torch.device | str, basis_bytes: int,
                    free_bytes: int | None = None) -> torch.device:
    """Where :func:`slq` puts its Lanczos basis of ``basis_bytes`` for an operator on ``op_device``.

    ``setting`` (config ``hessian.basis_device``): ``"same"`` or None, the operator's device; ``"cpu"``,
    host memory; ``"auto"``, the operator's device unless that is a GPU on which the basis would take
    more than :data:`BASIS_GPU_SHARE` of ``free_bytes`` (default: the free memory CUDA reports now),
    then host memory. Any other value is taken as a device name. On host memory the basis costs no
    GPU memory, and each step's reorthogonalisation (two passes over the basis) runs on the CPU.
    """
    op_device = torch.device(op_device)
    if setting is None or setting == "same":
        return op_device
    if setting == "auto":
        if op_device.type != "cuda":
            return op_device
        if free_bytes is None:
            free_bytes = torch.cuda.mem_get_info(op_device)[0]
        return op_device if basis_bytes <= BASIS_GPU_SHARE * free_bytes else torch.device("cpu")
    return torch.device(setting)


def slq(op: SpectralOperator, n_runs: int, n_iter: int, seed: int = 0, progress: bool = True,
        basis_device: torch.device | str | None = None, *, max_iter: int | None = None,
        predict: Callable[[Quadrature], float] | None = None, tol: float = 0.005,
        stable_doublings: int = 2) -> SLQResult:
    """Stochastic Lanczos quadrature: ``n_runs`` Lanczos runs from Rademacher vectors.

    Without ``predict`` every run takes ``n_iter`` steps. With it, each run starts at ``n_iter``
    steps and doubles them until ``predict`` (a functional of the run's quadrature rule, e.g. the
    predicted pruning threshold) has changed by less than ``tol`` on each of the last
    ``stable_doublings`` doublings, or ``max_iter`` is reached. One stable doubling can be a
    plateau: on a digits MLP a run gave 0.855 at 128 and 256 steps and 0.846 from 512 on (its exact
    spectrum: 0.844); two caught it. The steps already run are kept (:class:`Lanczos`), so the
    doublings cost only their new products. ``settings["convergence"]`` records every step count tried, its
    value, and whether each run converged or stopped at the cap.

    Start vectors come from one CPU generator seeded with ``seed`` (run r uses the r-th draw), so
    results are identical on rerun. The runs go one after another, sharing one basis buffer:
    batching them through :meth:`HessianOperator.matmat` measured slower on CPU (see matmat).
    The buffer (max steps × D floats: 12 GB for ResNet50 at 128 steps) lives on the operator's
    device unless ``basis_device`` puts it elsewhere (e.g. ``"cpu"`` when GPU memory is short; ``"auto"``
    decides by the GPU's free memory and ``"same"`` is the operator's device: :func:`basis_placement`).
    Where the operator is zero outside a support and says so (``op.on_support()``, e.g.
    :meth:`HessianOperator.on_support`; :class:`OnSupport`), the runs take place on the support
    alone, from the start vector's support entries, and the share off it, (D − |S|)/D exactly for a
    Rademacher start, goes into ``settings["exact_null_mass"]`` (0.0 without a support): every
    quadrature of the result (:meth:`SLQResult.quadrature`, :meth:`SLQResult.run_quadrature`, and
    the one ``predict`` sees) puts that mass at exactly 0 instead of on a Ritz node.
    """
    cap = int(max_iter) if predict is not None and max_iter is not None else int(n_iter)
    if n_runs < 1 or n_iter < 1 or cap < n_iter:
        raise PrunelimitError(f"SLQ needs n_runs ≥ 1, n_iter ≥ 1 and max_iter ≥ n_iter, got n_runs={n_runs}, "
                              f"n_iter={n_iter}, max_iter={max_iter}")
    if predict is not None and not (tol > 0 and stable_doublings >= 1):
        raise PrunelimitError(f"SLQ convergence needs tol > 0 and stable_doublings ≥ 1, got {tol}, {stable_doublings}")
    dim = op.dim
    # an MLP's Hessian is zero off the weights of its active units: Lanczos runs on those (SupportOperator)
    on_support: OnSupport | None = op.on_support()
    if on_support is not None and on_support.dim < 1:
        on_support = None  # nothing on the support: Lanczos on the (zero) operator itself
    null_mass = float(on_support.null_mass) if on_support is not None else 0.0
    if not 0.0 <= null_mass < 1.0:
        raise PrunelimitError(f"the operator's null mass off its support must lie in [0, 1), got {null_mass}")
    krylov_op = on_support if on_support is not None else op
    k = min(cap, krylov_op.dim)
    dtype = getattr(op, "dtype", torch.float32)
    device = basis_placement(basis_device, getattr(op, "device", torch.device("cpu")),
                             k * krylov_op.dim * torch.empty((), dtype=dtype).element_size())
    generator = torch.Generator().manual_seed(int(seed))
    basis = torch.empty(k, krylov_op.dim, dtype=dtype, device=device)
    vals, wts = np.zeros((n_runs, k)), np.zeros((n_runs, k))
    alphas, betas = np.zeros((n_runs, k)), np.zeros((n_runs, max(k - 1, 0)))
    steps = np.zeros(n_runs, np.int64)
    history: list[list[list[float]]] = []
    converged: list[bool] = []
    products_before = getattr(op, "products", 0)
    t0 = time.perf_counter()
    with tqdm(total=n_runs * min(int(n_iter), k), desc="SLQ", unit="HVP", disable=not progress,
              leave=False) as bar:
        for r in range(n_runs):
            start = rademacher(dim, generator, dtype)  # drawn in all D coordinates either way
            start = on_support.compress(start) if on_support is not None else start
            run = Lanczos(krylov_op, start.to(device), k, basis)
            target, tried, done = min(int(n_iter), k), [], predict is None
            while True:
                run.extend(target, on_step=lambda: bar.update(1))
                if predict is not None:
                    rule = with_exact_null_mass(run_quadrature(run.alphas, run.betas, dim), null_mass)
                    tried.append([run.steps, float(predict(rule))])
                    values = [v for _, v in tried[-stable_doublings - 1:]]
                    done = len(values) > stable_doublings and all(
                        abs(b - a) < tol for a, b in zip(values[:-1], values[1:]))
                if done or run.broke_down or run.steps >= k:
                    break
                bar.total += min(2 * target, k) - target
                target = min(2 * target, k)
            m = run.steps
            theta, tau = tridiagonal_ritz(run.alphas, run.betas)
            vals[r, :m], wts[r, :m], alphas[r, :m], betas[r, :m - 1] = theta, tau, run.alphas, run.betas
            vals[r, m:] = theta[-1]  # padding: a repeated node with zero weight
            steps[r] = m
            history.append(tried)
            converged.append(bool(done or run.broke_down))
    m_max = int(steps.max())  # drop the columns no run reached
    vals, wts, alphas, betas = vals[:, :m_max], wts[:, :m_max], alphas[:, :m_max], betas[:, :max(m_max - 1, 0)]
    settings = {"n_runs": int(n_runs), "n_iter": int(n_iter), "seed": int(seed), "dim": dim,
                "elapsed_s": time.perf_counter() - t0, "dtype": str(dtype).removeprefix("torch."),
                "device": str(device), "basis_device": str(basis_device if basis_device is not None else "same"),
                "exact_null_mass": null_mass}
    if predict is not None:
        settings["convergence"] = {"tol": float(tol), "stable_doublings": int(stable_doublings),
                                   "start_iter": int(n_iter), "max_iter": int(cap),
                                   "history": history, "converged": converged, "capped": not all(converged)}
    described = op.describe()
    if described:
        settings.update({**described, "products": op.products - products_before})
    return SLQResult(vals, wts, alphas, betas, dim, settings, steps)
