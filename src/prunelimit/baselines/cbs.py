"""CBS on one block: greedy swaps of pruned and kept weights on the joint-OBS loss Q(P), the quadratic model's
increase when the set P is removed with the joint OBS update under the damped empirical Fisher (:mod:`.fisher`).
Learnt from the paper, no code copied; each formula's source or derivation is in its docstring.
CBS: Yu, Serra, Ramalingam & Zhe, "The Combinatorial Brain Surgeon: Pruning Weights That Cancel One Another in
Neural Networks", ICML 2022.
"""

from __future__ import annotations

import torch

from ..io import PrunelimitError
from ..sparsity import keep_count
from .fisher import (
    DEFAULT_DAMP,
    DTYPE,
    WoodburyInverse,
    _apply,
    _count,
    _gradients,
    _idx,
    _inverse,
    _spd_solve,
    _top,
    _vector,
    check_open_sparsity,
    empirical_fisher_inverse,
    obs_saliency,
    obs_update_exact,
)

DEFAULT_SWAPS = 100  # at most this many swaps per block
DEFAULT_CANDIDATES = 256  # the pruned and the kept weights a swap may move, each side (_candidates)


def _check_start(start: str) -> str:
    if start not in ("magnitude", "woodfisher"):
        raise PrunelimitError(f"CBS start must be 'magnitude' or 'woodfisher', got {start!r}")
    return start


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


def cbs_prune(w, G, sparsity: float, damp: float = DEFAULT_DAMP, *, swaps: int = DEFAULT_SWAPS,
              candidates: int | None = DEFAULT_CANDIDATES, start: str = "magnitude", inverse=None
              ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """(new w, keep mask, Q per swap): the magnitude (``start="magnitude"``) or WoodFisher-saliency (``"woodfisher"``)
    selection, improved by :func:`cbs_search`, then the joint OBS update (CBS-U's role)."""
    w = _vector(w)
    inv = _inverse(inverse) if inverse is not None else empirical_fisher_inverse(_gradients(G, w.numel()), damp)
    score = w.abs() if _check_start(start) == "magnitude" else obs_saliency(w, inv)
    keep, history = cbs_search(w, inv, _top(score, keep_count(w.numel(), check_open_sparsity(sparsity))), swaps,
                               candidates)
    return _apply(w, obs_update_exact(w, inv, ~keep), keep), keep, history
