"""CHITA on one block: IHT on the ℓ0-constrained least squares ½‖X(w̄ − w)‖² + ½λ₂‖w − w̄‖² (X = G/√N, the
quadratic model of the damped empirical Fisher's data term), then the backsolve on the final support.
Learnt from the paper, no code copied; each formula's source or derivation is in its docstring.
CHITA: Benbaki et al., "Fast as CHITA: Neural Network Pruning with Combinatorial Optimization", ICML 2023.
"""

from __future__ import annotations

import math

import torch

from ..sparsity import keep_count
from .fisher import DTYPE, _count, _gradients, _idx, _positive, _spd_solve, _top, _vector, check_open_sparsity

DEFAULT_RIDGE = 1e-3  # λ₂
DEFAULT_ITERS = 100  # at most this many IHT iterations
LIPSCHITZ_MARGIN = 1.05  # [ours, per the issue] IHT step 1/(1.05·L): a 5% margin over the exact Lipschitz constant


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


def chita_prune(w, G, sparsity: float, ridge: float = DEFAULT_RIDGE, iters: int = DEFAULT_ITERS
                ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """(new w, keep mask, objective history) of CHITA: min ½‖X(w̄ − w)‖² + ½λ₂‖w − w̄‖² s.t. ‖w‖₀ <= k, X = G/√N,
    by IHT w ← H_k(w − ∇f(w)/L) from the magnitude-pruned w̄, then the backsolve on the final support. With
    step 1/L and a k-sparse start f never increases (majorisation: f(x⁺) <= f(x) + ⟨∇f, x⁺ − x⟩ + L/2‖x⁺ − x‖²
    <= f(x), x⁺ being the k-sparse point nearest x − ∇f/L). History: start, each iterate, the backsolved point."""
    w, s = _vector(w), check_open_sparsity(sparsity)
    G = _gradients(G, w.numel())
    ridge, iters = _positive(ridge, "ridge (CHITA λ₂)", zero_ok=True), _count(iters, "iters", 1)
    return _chita_block(w, G / math.sqrt(G.shape[0]), keep_count(w.numel(), s), ridge, iters)

