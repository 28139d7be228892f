"""One-shot OBS-family pruning on a local quadratic model of the loss: magnitude (MP), WoodFisher, CBS, CHITA.

A block of p weights w (flat, float64) comes with N per-sample (or per-mini-batch) loss gradients, the rows of G.
WoodFisher and CBS take F = damp·I + GᵀG/N (damped empirical Fisher) as the Hessian and use F⁻¹ only through its
diagonal, products and sub-blocks (:class:`WoodburyInverse`: no p×p matrix when N < p); CHITA uses X = G/√N.
Each method keeps exactly round((1 − s)·p) weights (``keep_count``), ties to the earlier index (as :mod:`..prune`).
Learnt from the papers, no code copied; each formula's source or derivation is in its docstring.
OBS: Hassibi & Stork, "Second order derivatives for network pruning: Optimal Brain Surgeon", NeurIPS 1993.
WF: Singh & Alistarh, "WoodFisher: Efficient Second-Order Approximation for Neural Network Compression", NeurIPS 2020.
CBS: Yu, Serra, Ramalingam & Zhe, "The Combinatorial Brain Surgeon: Pruning Weights That Cancel One Another in
Neural Networks", ICML 2022. CHITA: Benbaki et al., "Fast as CHITA: Neural Network Pruning with Combinatorial
Optimization", ICML 2023.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..io import PrunelimitError
from ..models import prunable_parameters
from ..sparsity import keep_count

DTYPE = torch.float64
METHODS = ("mp", "wf", "cbs", "chita")  # the names of the method registry (prunelimit.methods)
DEFAULTS = {"block_size": 4096, "damp": 1e-4, "joint": False, "swaps": 100, "candidates": 256, "start": "magnitude",
            "ridge": 1e-3, "iters": 100}
SETTINGS = {"mp": ("block_size",), "wf": ("block_size", "damp", "joint"),
            "cbs": ("block_size", "damp", "swaps", "candidates", "start"), "chita": ("block_size", "ridge", "iters")}
LIPSCHITZ_MARGIN = 1.05  # [ours, per the issue] IHT step 1/(1.05·L): a 5% margin over the exact Lipschitz constant


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


def _check_start(start: str) -> str:
    if start not in ("magnitude", "woodfisher"):
        raise PrunelimitError(f"CBS start must be 'magnitude' or 'woodfisher', got {start!r}")
    return start


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


def woodfisher_prune(w, G, sparsity: float, damp: float = DEFAULTS["damp"], *, joint: bool = False,
                     inverse=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(new w, keep mask): prune the weights of lowest saliency ρ_q (WF Eq. 4), apply the summed OBS updates
    (:func:`woodfisher_update`; ``joint``: :func:`obs_update_exact`), zero the pruned weights.
    ``inverse`` (e.g. an exact inverse Hessian) replaces the empirical Fisher of ``G``."""
    w = _vector(w)
    inv = _inverse(inverse) if inverse is not None else empirical_fisher_inverse(_gradients(G, w.numel()), damp)
    keep = _top(obs_saliency(w, inv), keep_count(w.numel(), check_open_sparsity(sparsity)))
    return _apply(w, (obs_update_exact if joint else woodfisher_update)(w, inv, ~keep), keep), keep


# CBS: greedy swaps on the joint-OBS loss Q(P)
def cbs_objective(w, inverse, pruned) -> float:
    """Q(P) = ½ w_Pᵀ (F⁻¹_{PP})⁻¹ w_P: the quadratic model's increase when P is removed with the joint OBS update."""
    w, inv, idx = _vector(w), _inverse(inverse), _idx(pruned)
    if not idx.numel():
        return 0.0
    if isinstance(inv, WoodburyInverse):  # N-space (kept_inverse)
        kept = torch.ones_like(w, dtype=torch.bool)
        kept[idx] = False
        u = inv.G[:, idx] @ w[idx]
        return 0.5 * inv.damp * float(w[idx] @ w[idx] + u @ (inv.kept_inverse(kept) @ u))
    return 0.5 * float(w[idx] @ _spd_solve(inv.block(idx, idx), w[idx]))


def swap_gains(w, inverse, pruned, candidates) -> torch.Tensor:
    """Q(P − i + j) − Q(P) for every i in ``pruned`` (rows) and j in ``candidates`` (kept weights; columns).

    [ours: the derivation, by block inversion] With M = F⁻¹_{PP}, A = M⁻¹, z = A w_P, R = F⁻¹_{P,J}, T = A R
    and S = P − i: Q(S) = Q(P) − z_i²/(2A_ii) (Schur complement of A_ii) and M_S⁻¹ w_S = z_S − A_{S,i} z_i/A_ii;
    bordering M_S with b = F⁻¹_{S,j}, c = F⁻¹_jj gives Q(S + j) = Q(S) + e²/(2σ), e = w_j − bᵀM_S⁻¹w_S =
    w_j − (Rᵀz)_j + T_ij z_i/A_ii and σ = c − bᵀM_S⁻¹b = c − (RᵀAR)_jj + T_ij²/A_ii. The swap move is CBS's
    local search (CBS Alg. 1); its objective here is Q, the loss after the joint OBS update."""
    w, inv, P, J = _vector(w), _inverse(inverse), _idx(pruned), _idx(candidates)
    A = torch.linalg.inv(inv.block(P, P))
    A = 0.5 * (A + A.T)
    z, a, R = A @ w[P], A.diagonal(), inv.block(P, J)
    T = A @ R
    e = w[J][None, :] - (R.T @ z)[None, :] + T * (z / a)[:, None]
    sigma = inv.diagonal()[J][None, :] - (R * T).sum(0)[None, :] + T * T / a[:, None]
    sigma = sigma.clamp_min(torch.finfo(DTYPE).tiny)  # > 0 in exact arithmetic (F⁻¹ is positive definite)
    return -(z * z / (2.0 * a))[:, None] + e * e / (2.0 * sigma)


def swap_gain(w, inverse, pruned, i: int, j: int) -> float:
    """The change of Q when pruned weight ``i`` is kept and kept weight ``j`` pruned instead (:func:`swap_gains`)."""
    P = _idx(pruned)
    rows = torch.nonzero(P == int(i)).reshape(-1)
    if rows.numel() != 1 or bool((P == int(j)).any()):
        raise PrunelimitError(f"a swap needs i={i} pruned and j={j} kept")
    return float(swap_gains(w, inverse, P, [int(j)])[rows[0], 0])


def _candidates(w, inv, keep: torch.Tensor, candidates: int | None) -> torch.Tensor:
    """The weights a swap may move, fixed for the whole search [ours]: the ``candidates`` pruned weights of largest
    OBS saliency and the ``candidates`` kept ones of smallest (all of a side when ``None`` or fewer), the two sides
    of the cut where swaps pay."""
    saliency = obs_saliency(w, inv)
    pruned, kept = _idx(~keep), _idx(keep)
    if candidates is not None and pruned.numel() > candidates:
        pruned = pruned[torch.argsort(-saliency[pruned], stable=True)[:candidates]]
    if candidates is not None and kept.numel() > candidates:
        kept = kept[torch.argsort(saliency[kept], stable=True)[:candidates]]
    return torch.cat([pruned, kept])


def _improves(gain: float, q: float) -> bool:
    return gain < -1e-12 * max(q, 1e-300)


def cbs_search(w, inverse, keep: torch.Tensor, swaps: int, candidates: int | None = None
               ) -> tuple[torch.Tensor, list[float]]:
    """Greedy best-improvement swaps from the keep mask ``keep`` (CBS Alg. 1's swap search): each step makes the
    pruned ↔ kept swap of most negative gain among the candidate weights (:func:`_candidates`) until none lowers
    Q or ``swaps`` were made. Returns the mask and Q after each step. A Woodbury inverse takes the N-space path
    (:func:`_woodbury_swaps`: the same swaps, no |P|×|P| solve)."""
    w, inv, keep = _vector(w), _inverse(inverse), keep.clone()
    swaps, movable = _count(swaps, "swaps", 0), _candidates(w, inv, keep, candidates)
    if isinstance(inv, WoodburyInverse):
        return _woodbury_swaps(w, inv, keep, swaps, movable)
    history = [cbs_objective(w, inv, ~keep)]
    in_play = torch.zeros_like(keep)
    in_play[movable] = True
    for _ in range(swaps):
        P, K = _idx(~keep), _idx(keep & in_play)
        if not bool((~keep & in_play).any()) or not K.numel():
            break
        gains = swap_gains(w, inv, P, K).masked_fill(~in_play[P][:, None], float("inf"))
        best = int(torch.argmin(gains))
        if not _improves(float(gains.reshape(-1)[best]), history[-1]):
            break
        i, j = int(P[best // K.numel()]), int(K[best % K.numel()])
        keep[i], keep[j] = True, False
        q = cbs_objective(w, inv, ~keep)  # from scratch: the history is exact
        if q > history[-1]:  # round-off beat the predicted gain: undo and stop
            keep[i], keep[j] = False, True
            break
        history.append(q)
    return keep, history


def _woodbury_swaps(w: torch.Tensor, inv: WoodburyInverse, keep: torch.Tensor, swaps: int, movable: torch.Tensor,
                    refresh: int = 25) -> tuple[torch.Tensor, list[float]]:
    """:func:`cbs_search` in N-space [ours]. Q(P) = ½·damp·(‖w_P‖² + uᵀL⁻¹u) (:meth:`WoodburyInverse.kept_inverse`);
    a swap (i back in, j out) changes L by g_i g_iᵀ − g_j g_jᵀ and u by −w_i g_i + w_j g_j, so every candidate
    pair's Q follows from L⁻¹ by the rank-2 Woodbury identity with S = diag(1, −1) + VᵀL⁻¹V, V = [g_i, g_j]:
    u'ᵀL'⁻¹u' = u'ᵀL⁻¹u' − xᵀS⁻¹x, x = VᵀL⁻¹u'. L⁻¹, M = L⁻¹G_C (C the candidates) and a = L⁻¹u are updated by
    the same identity after each swap (O(N·|C|)), and rebuilt from scratch every ``refresh`` swaps."""
    G, damp = inv.G, inv.damp
    pruned = ~keep[movable]  # per candidate: in P now
    Gc, wc = G[:, movable], w[movable]

    def rebuild():
        linv = inv.kept_inverse(keep)
        u = G[:, ~keep] @ w[~keep]
        return linv, linv @ Gc, u, linv @ u

    Linv, M, u, a = rebuild()
    wp2 = float(w[~keep] @ w[~keep])
    history = [0.5 * damp * (wp2 + float(u @ a))]
    for step in range(swaps):
        rows, cols = _idx(pruned), _idx(~pruned)
        if not rows.numel() or not cols.numel():
            break
        gi, gj, mi, mj = Gc[:, rows], Gc[:, cols], M[:, rows], M[:, cols]
        alpha, gamma, beta = (gi * mi).sum(0)[:, None], (gj * mj).sum(0)[None, :], gi.T @ mj
        p, q = (gi.T @ a)[:, None], (gj.T @ a)[None, :]
        wi, wj = wc[rows][:, None], wc[cols][None, :]
        quad = (float(u @ a) - 2 * wi * p + 2 * wj * q + wi * wi * alpha + wj * wj * gamma - 2 * wi * wj * beta)
        x1, x2 = p - wi * alpha + wj * beta, q - wi * beta + wj * gamma
        det = (1 + alpha) * (gamma - 1) - beta * beta  # < 0: γ_j < 1 for a kept j, so S is never singular
        quad = quad - ((gamma - 1) * x1 * x1 - 2 * beta * x1 * x2 + (1 + alpha) * x2 * x2) / det
        gains = 0.5 * damp * (wp2 - wi * wi + wj * wj + quad) - history[-1]
        best = int(torch.argmin(gains))
        if not _improves(float(gains.reshape(-1)[best]), history[-1]):
            break
        r, c = int(rows[best // cols.numel()]), int(cols[best % cols.numel()])
        i, j = int(movable[r]), int(movable[c])
        saved = (Linv, M, u, a, wp2)
        keep[i], keep[j], pruned[r], pruned[c] = True, False, False, True
        if (step + 1) % refresh == 0:
            Linv, M, u, a = rebuild()
        else:
            V = G[:, [i, j]]
            LV = Linv @ V
            S_inv = torch.linalg.inv(torch.diag(torch.tensor([1.0, -1.0], dtype=DTYPE)) + V.T @ LV)
            Linv = Linv - LV @ S_inv @ LV.T
            M = M - LV @ (S_inv @ (V.T @ M))
            u = u - w[i] * G[:, i] + w[j] * G[:, j]
            a = Linv @ u
        wp2 += float(w[j] * w[j] - w[i] * w[i])
        q_new = 0.5 * damp * (wp2 + float(u @ a))
        if q_new > history[-1]:  # round-off beat the predicted gain: undo and stop
            keep[i], keep[j], pruned[r], pruned[c] = False, True, True, False
            Linv, M, u, a, wp2 = saved
            break
        history.append(q_new)
    return keep, history


def cbs_prune(w, G, sparsity: float, damp: float = DEFAULTS["damp"], *, swaps: int = DEFAULTS["swaps"],
              candidates: int | None = DEFAULTS["candidates"], start: str = "magnitude", inverse=None
              ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """(new w, keep mask, Q per swap): the magnitude (``start="magnitude"``) or WoodFisher-saliency (``"woodfisher"``)
    selection, improved by :func:`cbs_search`, then the joint OBS update (CBS-U's role)."""
    w = _vector(w)
    inv = _inverse(inverse) if inverse is not None else empirical_fisher_inverse(_gradients(G, w.numel()), damp)
    score = w.abs() if _check_start(start) == "magnitude" else obs_saliency(w, inv)
    keep, history = cbs_search(w, inv, _top(score, keep_count(w.numel(), check_open_sparsity(sparsity))), swaps,
                               candidates)
    return _apply(w, obs_update_exact(w, inv, ~keep), keep), keep, history


# CHITA: IHT on the ℓ0-constrained least squares, then the backsolve
def chita_objective(w, w_bar, X, ridge: float) -> float:
    """½‖X(w̄ − w)‖² + ½λ₂‖w − w̄‖² (CHITA's problem: the quadratic model with H = XᵀX, X = G/√N, plus a ridge)."""
    d = w_bar - w
    return 0.5 * float((X @ d).square().sum()) + 0.5 * ridge * float(d @ d)


def backsolve(w_bar, X, ridge: float, support) -> torch.Tensor:
    """The minimiser of :func:`chita_objective` with w zero off ``support`` S: (X_SᵀX_S + λ₂I) v = X_Sᵀ X w̄ + λ₂ w̄_S.
    When N < |S| (and λ₂ > 0) by Woodbury, (λ₂I + X_SᵀX_S)⁻¹r = (r − X_Sᵀ(λ₂I_N + X_SX_Sᵀ)⁻¹X_S r)/λ₂ (CHITA Sec. 3)."""
    w_bar, X = _vector(w_bar), torch.as_tensor(X).to(DTYPE)
    S, out, n = _idx(support), torch.zeros_like(w_bar), X.shape[0]
    if not S.numel():
        return out
    Xs = X[:, S]
    rhs = Xs.T @ (X @ w_bar) + ridge * w_bar[S]
    if ridge > 0 and n < S.numel():
        out[S] = (rhs - Xs.T @ _spd_solve(Xs @ Xs.T + ridge * torch.eye(n, dtype=DTYPE), Xs @ rhs)) / ridge
    else:
        out[S] = _spd_solve(Xs.T @ Xs + ridge * torch.eye(S.numel(), dtype=DTYPE), rhs)
    return out


def lipschitz_constant(X: torch.Tensor, ridge: float) -> float:
    """∇f's Lipschitz constant, f = chita_objective: λ_max(XᵀX + λ₂I) = σ_max(X)² + λ₂ (IHT's step 1/L, CHITA
    Sec. 3), with LIPSCHITZ_MARGIN."""
    return LIPSCHITZ_MARGIN * (float(torch.linalg.matrix_norm(X, ord=2)) ** 2 + ridge)


def _chita_block(w_bar: torch.Tensor, X: torch.Tensor, keep: int, ridge: float, iters: int,
                 lipschitz: float | None = None) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    L = lipschitz_constant(X, ridge) if lipschitz is None else lipschitz
    mask = _top(w_bar.abs(), keep)
    x = torch.where(mask, w_bar, torch.zeros_like(w_bar))  # the k-sparse start: w̄ hard-thresholded (MP)
    history = [chita_objective(x, w_bar, X, ridge)]
    for _ in range(iters):
        d = x - w_bar
        step = x - (X.T @ (X @ d) + ridge * d) / L
        new_mask = _top(step.abs(), keep)  # hard thresholding H_k: the k largest |·|
        new_x = torch.where(new_mask, step, torch.zeros_like(step))
        history.append(chita_objective(new_x, w_bar, X, ridge))
        done, x, mask = bool((new_mask == mask).all()) and torch.allclose(new_x, x, rtol=1e-12, atol=0), new_x, new_mask
        if done:
            break
    w = backsolve(w_bar, X, ridge, mask)
    history.append(chita_objective(w, w_bar, X, ridge))  # the backsolve: the optimum on the final support
    return w, mask, history


def chita_prune(w, G, sparsity: float, ridge: float = DEFAULTS["ridge"], iters: int = DEFAULTS["iters"]
                ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """(new w, keep mask, objective history) of CHITA: min ½‖X(w̄ − w)‖² + ½λ₂‖w − w̄‖² s.t. ‖w‖₀ <= k, X = G/√N,
    by IHT w ← H_k(w − ∇f(w)/L) from the magnitude-pruned w̄, then the backsolve on the final support. With
    step 1/L and a k-sparse start f never increases (majorisation: f(x⁺) <= f(x) + ⟨∇f, x⁺ − x⟩ + L/2‖x⁺ − x‖²
    <= f(x), x⁺ being the k-sparse point nearest x − ∇f/L). History: start, each iterate, the backsolved point."""
    w, s = _vector(w), check_open_sparsity(sparsity)
    G = _gradients(G, w.numel())
    ridge, iters = _positive(ridge, "ridge (CHITA λ₂)", zero_ok=True), _count(iters, "iters", 1)
    return _chita_block(w, G / math.sqrt(G.shape[0]), keep_count(w.numel(), s), ridge, iters)


# Models
def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, batch: int = 1,
                         chunk: int = 64) -> torch.Tensor:
    """G (n × D, float64): the gradient of the mean cross-entropy over each of ``n`` consecutive mini-batches of
    ``batch`` samples (the first n·batch of x) w.r.t. the prunable weights, in :func:`prunable_parameters` order;
    by ``torch.func`` vmap over grad, the model in eval mode (BatchNorm uses its running statistics)."""
    n, batch, chunk = _count(n, "n (gradients)", 1), _count(batch, "batch", 1), _count(chunk, "chunk", 1)
    params = prunable_parameters(model)
    if not params:
        raise PrunelimitError(f"model {type(model).__name__} has no prunable (conv or linear) weights")
    if n * batch > len(x) or len(x) != len(y):
        raise PrunelimitError(f"n={n} gradients of batch={batch} need {n * batch} samples, got {len(x)}/{len(y)}")
    xs = x[:n * batch].to(params[0][1].device).reshape(n, batch, *x.shape[1:])
    ys = y[:n * batch].to(params[0][1].device).reshape(n, batch)

    def loss(weights: dict, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, weights, (xb,)), yb)

    was_training = model.training
    model.eval()
    try:
        g = vmap(grad(loss), in_dims=(None, 0, 0), chunk_size=chunk)({k: p.detach() for k, p in params}, xs, ys)
    finally:
        model.train(was_training)
    return torch.cat([g[name].reshape(n, -1) for name, _ in params], 1).to(DTYPE).cpu()


def make_blocks(sizes: list[int], block_size: int) -> list[tuple[int, int]]:
    """Flat (start, stop) ranges: one block of everything when it fits ``block_size``, else one per layer, a layer
    larger than ``block_size`` cut into ceil(n/block_size) near-equal contiguous chunks."""
    block_size = _count(block_size, "block_size", 1)
    if sum(sizes) <= block_size:
        return [(0, sum(sizes))]
    blocks, start = [], 0
    for n in sizes:
        edges = [start + n * i // -(-n // block_size) for i in range(-(-n // block_size) + 1)]
        blocks, start = blocks + list(zip(edges[:-1], edges[1:])), start + n
    return blocks


@dataclass
class OneShotResult:
    model: nn.Module  # pruned in place
    masks: dict[str, torch.Tensor]  # name → 0/1 float mask, as prunelimit.prune's
    kept: int
    n_prunable: int
    blocks: list[tuple[int, int]]
    history: dict[int, list[float]] = field(default_factory=dict)  # block → CBS's Q per swap / CHITA's objective


def _settings(method: str, settings: dict) -> dict:
    if method not in METHODS:
        raise PrunelimitError(f"unknown one-shot method {method!r}; known: {', '.join(METHODS)}")
    unknown = sorted(set(settings) - set(SETTINGS[method]))
    if unknown:
        raise PrunelimitError(f"unknown settings for {method}: {unknown}; known: {list(SETTINGS[method])}")
    checks = {"damp": lambda v: _positive(v, "damp (Fisher dampening)"), "joint": bool, "start": _check_start,
              "ridge": lambda v: _positive(v, "ridge (CHITA λ₂)", zero_ok=True),
              "swaps": lambda v: _count(v, "swaps", 0), "iters": lambda v: _count(v, "iters", 1),
              "block_size": lambda v: _count(v, "block_size", 1),
              "candidates": lambda v: None if v is None else _count(v, "candidates", 1)}
    return {k: checks[k](settings.get(k, DEFAULTS[k])) for k in SETTINGS[method]}


def prune_model(model: nn.Module, method: str, sparsity: float, grads=None, cache: dict | None = None,
                **settings) -> OneShotResult:
    """Prune ``model``'s prunable weights in place with ``method`` (:data:`METHODS`) at ``sparsity``, ``grads``
    being its per-sample gradients (:func:`per_sample_gradients`; magnitude needs none). Settings: :data:`SETTINGS`.

    One global selection of the round((1 − s)·D) kept weights: by |w| (magnitude; CBS's and CHITA's start) or by
    the saliency under the block-diagonal Fisher inverse (WoodFisher, as WF prunes globally; CBS with
    ``start="woodfisher"``). CBS's swaps and CHITA's IHT then work within each block at its share of that count
    [ours: the per-block budgets], and each block gets its update. ``cache``: a dict shared by calls on the same
    model and ``grads`` (e.g. one per sparsity) keeps the block inverses and Lipschitz constants between them."""
    s, opts = check_open_sparsity(sparsity), _settings(method, settings)
    params = prunable_parameters(model)
    if not params:
        raise PrunelimitError(f"model {type(model).__name__} has no prunable (conv or linear) weights")
    w = torch.cat([p.detach().reshape(-1) for _, p in params]).to(DTYPE).cpu()
    D, blocks = w.numel(), make_blocks([p.numel() for _, p in params], opts["block_size"])
    if method != "mp" and grads is None:
        raise PrunelimitError(f"{method} needs grads (per-sample gradients, N × {D})")
    G = None if method == "mp" else _gradients(grads, D)
    cache = {} if cache is None else cache  # one model and one G: what does not depend on the sparsity, kept

    def cached(key, make):
        if key not in cache:
            cache[key] = make()
        return cache[key]

    inverses = [cached(("inverse", a, b, opts["damp"]),
                       lambda a=a, b=b: empirical_fisher_inverse(G[:, a:b], opts["damp"]))
                for a, b in blocks] if "damp" in opts else []
    by_saliency = method == "wf" or opts.get("start") == "woodfisher"
    keep = _top(torch.cat([obs_saliency(w[a:b], inv) for (a, b), inv in zip(blocks, inverses)]) if by_saliency
                else w.abs(), keep_count(D, s))
    new_w, history = torch.where(keep, w, torch.zeros_like(w)), {}
    for n, (a, b) in enumerate(blocks):
        wb, kb = w[a:b], keep[a:b]
        if method == "wf":
            new_w[a:b] = _apply(wb, (obs_update_exact if opts["joint"] else woodfisher_update)(wb, inverses[n], ~kb),
                                kb)
        elif method == "cbs":
            kb, history[n] = cbs_search(wb, inverses[n], kb, opts["swaps"], opts["candidates"])
            keep[a:b], new_w[a:b] = kb, _apply(wb, obs_update_exact(wb, inverses[n], ~kb), kb)
        elif method == "chita" and 0 < int(kb.sum()) < b - a:  # a block kept whole or pruned whole: nothing to solve
            X = G[:, a:b] / math.sqrt(G.shape[0])
            lipschitz = cached(("lipschitz", a, b, opts["ridge"]), lambda X=X: lipschitz_constant(X, opts["ridge"]))
            new_w[a:b], keep[a:b], history[n] = _chita_block(wb, X, int(kb.sum()), opts["ridge"], opts["iters"],
                                                             lipschitz)
    new_w, masks, i = torch.where(keep, new_w, torch.zeros_like(new_w)), {}, 0
    with torch.no_grad():
        for name, p in params:
            m = p.numel()
            p.copy_(new_w[i:i + m].view_as(p).to(p.dtype))
            masks[name] = keep[i:i + m].view_as(p).to(device=p.device, dtype=torch.float32)
            i += m
    return OneShotResult(model, masks, int(keep.sum()), D, blocks, history)
