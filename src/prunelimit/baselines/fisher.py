"""The damped empirical Fisher's inverse and the OBS updates on it; magnitude (MP) and WoodFisher pruning of a block.

A block of p weights w (flat, float64) comes with N per-sample (or per-mini-batch) loss gradients, the rows of G.
WoodFisher and CBS (:mod:`.cbs`) take F = damp·I + GᵀG/N (damped empirical Fisher) as the Hessian and use F⁻¹ only
through its diagonal, products and sub-blocks (:class:`WoodburyInverse`: no p×p matrix when N < p). Also here: the
checks and small helpers that :mod:`.cbs`, :mod:`.chita` and :mod:`.oneshot` share.
Learnt from the papers, no code copied; each formula's source or derivation is in its docstring.
OBS: Hassibi & Stork, "Second order derivatives for network pruning: Optimal Brain Surgeon", NeurIPS 1993.
WF: Singh & Alistarh, "WoodFisher: Efficient Second-Order Approximation for Neural Network Compression", NeurIPS 2020.
"""

from __future__ import annotations

import math

import torch

from ..io import PrunelimitError
from ..sparsity import keep_count

DTYPE = torch.float64
DEFAULT_DAMP = 1e-4  # the Fisher dampening (F = damp·I + GᵀG/N) when none is given


# Checks and small helpers
def check_open_sparsity(sparsity: float) -> float:
    s = float(sparsity)
    if not 0.0 < s < 1.0:  # NaN fails too
        raise PrunelimitError(f"one-shot sparsity must lie in (0, 1) (fraction of weights removed), got {sparsity!r}")
    return s


def _vector(w) -> torch.Tensor:
    t = torch.as_tensor(w).detach().to(DTYPE)
    if t.ndim != 1 or t.numel() == 0 or not torch.isfinite(t).all():
        raise PrunelimitError(f"weights w must be a non-empty finite flat vector, got shape {tuple(t.shape)}")
    return t


def _gradients(G, p: int | None) -> torch.Tensor:
    t = torch.as_tensor(G).detach().to(DTYPE)
    if t.ndim != 2 or t.shape[0] < 1:
        raise PrunelimitError(f"gradients G must be an N×p matrix with N >= 1 rows, got shape {tuple(t.shape)}")
    if p is not None and t.shape[1] != p:
        raise PrunelimitError(f"gradients G have {t.shape[1]} columns but there are {p} prunable weights")
    if not torch.isfinite(t).all():
        raise PrunelimitError("gradients G contain non-finite values")
    return t


def _positive(value, what: str, *, zero_ok: bool = False) -> float:
    v = float(value)
    if not (v >= 0.0 if zero_ok else v > 0.0) or math.isinf(v):
        raise PrunelimitError(f"{what} must be {'>= 0' if zero_ok else '> 0'} and finite, got {value!r}")
    return v


def _count(value, what: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PrunelimitError(f"{what} must be an integer >= {low}, got {value!r}")
    return value


def _top(score: torch.Tensor, keep: int) -> torch.Tensor:
    """Boolean mask of the ``keep`` largest scores; of equal scores the earlier index is kept."""
    mask = torch.zeros(score.numel(), dtype=torch.bool)
    mask[torch.argsort(-score, stable=True)[:keep]] = True
    return mask


def _idx(indices) -> torch.Tensor:  # flat long indices from a list, an index tensor of any shape or a bool mask
    t = torch.as_tensor(indices)
    return torch.nonzero(t.reshape(-1)).reshape(-1) if t.dtype == torch.bool else t.reshape(-1).long()


def _spd_solve(M: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # M⁻¹b, M SPD: Cholesky, else least squares
    b2 = b.reshape(M.shape[0], -1)
    chol, info = torch.linalg.cholesky_ex(M)
    x = torch.cholesky_solve(b2, chol) if int(info) == 0 else torch.linalg.lstsq(M, b2, driver="gelsd").solution
    return x.reshape(b.shape)


def _apply(w: torch.Tensor, delta: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    return torch.where(keep, w + delta, torch.zeros_like(w))  # the pruned weights exactly 0


# The inverse of the damped empirical Fisher
class DenseInverse:
    """An explicit symmetric positive definite F⁻¹ (p×p): the exact-Hessian case, and blocks with N >= p."""

    def __init__(self, matrix):
        self.matrix = torch.as_tensor(matrix).to(DTYPE)
        if self.matrix.ndim != 2 or self.matrix.shape[0] != self.matrix.shape[1]:
            raise PrunelimitError(f"an inverse Hessian must be square, got shape {tuple(self.matrix.shape)}")
        self.p = self.matrix.shape[0]

    def diagonal(self) -> torch.Tensor:
        return self.matrix.diagonal().clone()

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matrix @ v

    def block(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return self.matrix[rows][:, cols]

    def dense(self) -> torch.Tensor:
        return self.matrix.clone()


class WoodburyInverse(DenseInverse):
    """F⁻¹ for F = damp·I + GᵀG/N by the Woodbury identity (WF Sec. 3, the empirical Fisher's inverse):
    with A = damp·I, U = Gᵀ, C = I/N, V = G, (A + UCV)⁻¹ = A⁻¹ − A⁻¹U(C⁻¹ + VA⁻¹U)⁻¹VA⁻¹
    = (1/damp)·(I − Gᵀ K⁻¹ G), K = N·damp·I_N + G Gᵀ (N×N, Cholesky-factored once; no p×p matrix)."""

    def __init__(self, G: torch.Tensor, damp: float):
        self.G, self.damp, self.p = G, float(damp), G.shape[1]
        n = G.shape[0]
        self.chol = torch.linalg.cholesky(G @ G.T + n * self.damp * torch.eye(n, dtype=DTYPE))
        # λ_min(F⁻¹) = 1/(damp + λ_max(GᵀG/N)) >= 1/(damp + ‖G‖_F²/N): a floor against round-off in 1 − (…)
        self.floor = 1.0 / (self.damp + float((G * G).sum()) / n)
        self._diagonal = None

    def diagonal(self) -> torch.Tensor:  # [F⁻¹]_qq = (1 − Σ_n G_nq (K⁻¹G)_nq)/damp, computed once
        if self._diagonal is None:
            self._diagonal = ((1.0 - (self.G * torch.cholesky_solve(self.G, self.chol)).sum(0)) / self.damp
                              ).clamp_min(self.floor)
        return self._diagonal.clone()

    def matvec(self, v: torch.Tensor) -> torch.Tensor:  # F⁻¹v = (v − Gᵀ K⁻¹ G v)/damp, v a vector or p×m
        m = v.reshape(self.p, -1)
        return ((m - self.G.T @ torch.cholesky_solve(self.G @ m, self.chol)) / self.damp).reshape(v.shape)

    def block(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        eye = (rows[:, None] == cols[None, :]).to(DTYPE)
        return (eye - self.G[:, rows].T @ torch.cholesky_solve(self.G[:, cols], self.chol)) / self.damp

    def dense(self) -> torch.Tensor:  # for tests and small blocks only
        return self.block(torch.arange(self.p), torch.arange(self.p))

    def kept_inverse(self, kept: torch.Tensor) -> torch.Tensor:
        """L⁻¹ (N×N) for L = N·damp·I + G_K G_Kᵀ, K the kept weights: the pruned set's quantities in N-space.
        [ours, by Woodbury twice] With P the pruned set and K + G_P G_Pᵀ = L, (F⁻¹_PP)⁻¹ = damp·(I + G_Pᵀ L⁻¹ G_P),
        so Q(P) = ½·damp·(‖w_P‖² + uᵀL⁻¹u) with u = G_P w_P, and the joint OBS update of the kept weights,
        F_KK⁻¹ F_KP w_P, is G_Kᵀ L⁻¹ u (push-through identity)."""
        Gk = self.G[:, _idx(kept)]
        n = self.G.shape[0]
        return torch.cholesky_inverse(torch.linalg.cholesky(Gk @ Gk.T + n * self.damp * torch.eye(n, dtype=DTYPE)))


def empirical_fisher_inverse(G, damp: float, *, woodbury: bool | None = None) -> DenseInverse:
    """F⁻¹ for F = damp·I + GᵀG/N (WF): :class:`WoodburyInverse` when N < p (or ``woodbury=True``), else the
    explicit inverse of the p×p matrix (then no larger than the N×N one)."""
    G, damp = _gradients(G, None), _positive(damp, "damp (Fisher dampening)")
    n, p = G.shape
    if woodbury if woodbury is not None else n < p:
        return WoodburyInverse(G, damp)
    return DenseInverse(torch.cholesky_inverse(torch.linalg.cholesky(damp * torch.eye(p, dtype=DTYPE) + G.T @ G / n)))


def _inverse(inverse) -> DenseInverse:
    return inverse if isinstance(inverse, DenseInverse) else DenseInverse(inverse)


# OBS updates, magnitude and WoodFisher
def obs_saliency(w: torch.Tensor, inverse) -> torch.Tensor:
    """ρ_q = w_q² / (2·[F⁻¹]_qq): OBS's loss increase for removing weight q alone (OBS Eq. 5; WF Eq. 4)."""
    return w * w / (2.0 * _inverse(inverse).diagonal())


def woodfisher_update(w, inverse, pruned) -> torch.Tensor:
    """δw = −F⁻¹ Σ_{q∈P} (w_q/[F⁻¹]_qq) e_q: the sum of the single-weight OBS updates δw = −(w_q/[F⁻¹]_qq) F⁻¹e_q
    (OBS Eq. 5), WF's approximation for removing many weights at once (one F⁻¹ product)."""
    w, inv, idx = _vector(w), _inverse(inverse), _idx(pruned)
    u = torch.zeros_like(w)
    u[idx] = w[idx] / inv.diagonal()[idx]
    return -inv.matvec(u)


def obs_update_exact(w, inverse, pruned) -> torch.Tensor:
    """δw = −F⁻¹_{:,P} (F⁻¹_{PP})⁻¹ w_P: OBS for the set P (its Lagrangian with the constraints e_qᵀ(w + δw) = 0,
    q ∈ P, solved jointly); (w + δw)_P = 0 and the quadratic model rises by Q(P) (:func:`cbs_objective`)."""
    w, inv, idx = _vector(w), _inverse(inverse), _idx(pruned)
    if isinstance(inv, WoodburyInverse) and idx.numel():  # N-space: no |P|×|P| solve (kept_inverse)
        kept = torch.ones_like(w, dtype=torch.bool)
        kept[idx] = False
        delta = torch.zeros_like(w)
        delta[kept] = inv.G[:, kept].T @ (inv.kept_inverse(kept) @ (inv.G[:, idx] @ w[idx]))
        delta[idx] = -w[idx]
        return delta
    u = torch.zeros_like(w)
    if idx.numel():
        u[idx] = _spd_solve(inv.block(idx, idx), w[idx])
    return -inv.matvec(u)


def magnitude_prune(w, sparsity: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(pruned w, keep mask): the round((1 − s)·p) largest |w| kept, no update (MP)."""
    w = _vector(w)
    keep = _top(w.abs(), keep_count(w.numel(), check_open_sparsity(sparsity)))
    return torch.where(keep, w, torch.zeros_like(w)), keep


def woodfisher_prune(w, G, sparsity: float, damp: float = DEFAULT_DAMP, *, joint: bool = False,
                     inverse=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(new w, keep mask): prune the weights of lowest saliency ρ_q (WF Eq. 4), apply the summed OBS updates
    (:func:`woodfisher_update`; ``joint``: :func:`obs_update_exact`), zero the pruned weights.
    ``inverse`` (e.g. an exact inverse Hessian) replaces the empirical Fisher of ``G``."""
    w = _vector(w)
    inv = _inverse(inverse) if inverse is not None else empirical_fisher_inverse(_gradients(G, w.numel()), damp)
    keep = _top(obs_saliency(w, inv), keep_count(w.numel(), check_open_sparsity(sparsity)))
    return _apply(w, (obs_update_exact if joint else woodfisher_update)(w, inv, ~keep), keep), keep

