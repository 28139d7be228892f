"""The pruning limit: Gaussian width of the loss sublevel set, kinematic bounds, predicted threshold.

From the trained weights w* and the Hessian spectrum alone, predict the largest fraction of
weights one-shot global magnitude pruning can remove without losing performance (Zhang, Zhang,
Sun, Liu, NeurIPS 2024, arXiv 2306.05857; official code QiaozheZhang/Global-One-shot-Pruning,
``cal_rate.py``, ``gaussian_width.py``, ``gradient.py``). Marks as in PAPER.md: **[paper]** the
paper's text, **[code]** read from the official code, **[ours]** our derivation.

Pieces, in the order the prediction uses them:

1. ε, the loss tolerance of the sublevel set S(ε) = {w : L(w) ≤ L(w*) + ε}: the standard deviation
   of the per-minibatch training loss [code ``cal_loss``], or ``theory.epsilon`` [ours].
2. Quadratic model [paper]: S(ε) ≈ ellipsoid with semi-axes r_i = √(2ε/|λ_i|) along the Hessian
   eigenvectors; negative eigenvalues by magnitude [code ``cal_gw``: ``abs(grids_list[i])``];
   (near-)zero eigenvalues, which SLQ cannot resolve, as mass f₀ at λ = 1e-30 [code
   ``cal_sparse_rate``], f₀ the fraction of zero Hessian rows at the pruning-threshold weights
   [code ``gradient.py``].
3. The squared Gaussian width of S(ε) seen from distance R, normalised by D
   [code ``cal_gw``; paper]:  w²(R)/D = tr f_R(H)/D,  f_R(λ) = 1/(1 + R²|λ|/(2ε)) = r²/(R² + r²),
   evaluated as a quadrature ``spectrum.Quadrature.trace_f`` (SLQ or exact eigenvalues alike).
   What this number is, exactly, is derived in :func:`projected_ellipsoid_axes`.
4. R(s) = ‖w* − w_s‖₂ for global magnitude pruning at sparsity s [paper], from one sort of |w|.
5. The predicted threshold: the largest s with s = w²(R(s))/D [code: crossing of the curves
   (R(s), s) and (R, w²(R)/D); we solve the fixed point by bisection], and the kinematic bounds
   [ours, PAPER.md]: s = (w²(R(s)) − a_η√D)/D and s = (w²(R(s)) + 1 + a_η√D)/D,
   a_η = √(8 log(4/η)) (Amelunxen, Lotz, McCoy & Tropp 2014, approximate kinematic formula).

Conventions: ``sparsity`` s = fraction of prunable weights removed, ``density`` = 1 − s kept.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .io import PrunelimitError, load_npz, save_npz
from .models import prunable_parameters
from .prune import keep_count
from .spectrum import Quadrature, absolute_spectrum, smoothed_density, top_up_zero_mass

ZERO_EIGENVALUE = 1e-30  # where the unresolved zero-eigenvalue mass is placed [code cal_sparse_rate]
# |λ| below this share of the largest |λ| is numerically null: float32 Hessian products carry a
# rounding error of about 8 float32 epsilons (1e-6) of the largest eigenvalue [ours]
NULL_RELATIVE = 1e-6
CURVE_SPARSITIES = 201  # points of the R(s) curve in the output (s = 0, 0.005, …, 1)
CURVE_RADII = 200  # log-spaced R points of the w²(R)/D curve in the output
BISECTION_TOL = 1e-10  # width of the final bracket of every fixed-point bisection (in sparsity)
ROW_BATCH = 16  # basis vectors per batched HVP (HessianOperator.matmat) of the Hessian-row experiment

FORMULA_MARKS = {
    "epsilon": "[code] std of the per-batch training loss (cal_loss), or config theory.epsilon [ours]",
    "ellipsoid": "[paper] S(eps) ~ ellipsoid, r_i^2 = 2 eps / |lambda_i| ([code] abs of eigenvalues)",
    "zero_mass": "[code] f0 = fraction of Hessian rows with L1 norm < threshold; [ours] nodes with |lambda| < 1e-6 "
                 "lambda_max are null (placed at 1e-30) and their mass is topped up to f0, not added on top",
    "gaussian_width": "[code cal_gw] w^2(R)/D = tr f_R(H)/D, f_R = 1/(1 + R^2 |lambda| / (2 eps)); "
                      "[ours] evaluated as Gauss quadrature on the Ritz values, not on a smoothed density",
    "projection_distance": "[paper] R(s) = ||w* - w_s||_2, w_s = global magnitude pruning at sparsity s",
    "prediction": "[code] crossing s = w^2(R(s))/D; [ours] solved exactly by bisection",
    "kinematic_bounds": "[ours] s_low: s = (w^2 - a_eta sqrt(D))/D, s_up: s = (w^2 + 1 + a_eta sqrt(D))/D, "
                        "a_eta = sqrt(8 log(4/eta)) (Amelunxen et al. 2014)",
    "jensen": "[ours] s = 1/(1 + R(s)^2 mean|lambda| / (2 eps)) <= prediction (Jensen)",
    "official_smoothed": "[code cal_gw] w^2/D integrated against the Gaussian-smoothed SLQ density (comparison)",
    "hessian_rows": "[code gradient.py] L1 norm of the full-training-set Hessian row of the threshold weight",
}


# ---------------------------------------------------------------------------------------------
# ε: the loss tolerance
# ---------------------------------------------------------------------------------------------


def check_epsilon(epsilon: float, source: str) -> float:
    """Return ε as a float, or stop: the ellipsoid needs a finite, positive loss tolerance."""
    try:
        value = float(epsilon)
    except (TypeError, ValueError):
        raise PrunelimitError(f"loss tolerance epsilon from {source} is not a number: {epsilon!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise PrunelimitError(f"loss tolerance epsilon from {source} must be finite and > 0, got {value}")
    return value


def loss_tolerance(model: nn.Module, data, *, l1: float = 0.0, override: float | None = None,
                   batch_size: int = 128, seed: int = 0) -> tuple[float, str]:
    """ε and where it came from: ``override`` (config ``theory.epsilon``) or the per-batch loss std.

    [code ``cal_loss``] ε is the population standard deviation of the per-minibatch training loss
    (batch 128, the loss including the L1 term) of the trained model, measured by
    :func:`prunelimit.train.per_batch_loss_std` on the un-augmented training set (``prunelimit
    predict`` and iterative pruning, which hold no loader). The pipeline's theory rule reads the
    value the train rule measured instead (:func:`epsilon_from_metrics`).
    """
    if override is not None:
        return check_epsilon(override, "config theory.epsilon"), "config theory.epsilon"
    from .train import epsilon_batch_size, per_batch_loss_std

    batch = epsilon_batch_size(batch_size, len(data.x_train))
    value = per_batch_loss_std(model, data, batch_size=batch, l1=l1, seed=seed)
    source = f"per-batch training-loss std (batch {batch}, seed {seed}, l1 {l1:g}, clean data)"
    return check_epsilon(value, source), source


EPSILON_DATA = {"train_loader": "loss_std", "clean": "loss_std_clean"}  # theory.epsilon_data → metrics key


def epsilon_from_metrics(meta: dict, theory_cfg: dict, where: str = "metrics.json") -> tuple[float, str]:
    """ε from the train rule's metrics: over the training loader (augmented where the task augments,
    the official ``cal_loss``) or on clean data, as ``theory.epsilon_data`` says; or the override."""
    if theory_cfg.get("epsilon") is not None:
        return check_epsilon(theory_cfg["epsilon"], "config theory.epsilon"), "config theory.epsilon"
    choice = theory_cfg.get("epsilon_data", "train_loader")
    if choice not in EPSILON_DATA:
        raise PrunelimitError(f"theory.epsilon_data must be one of {sorted(EPSILON_DATA)}, got {choice!r}")
    key = EPSILON_DATA[choice]
    if key not in meta:
        raise PrunelimitError(f"{where} has no {key!r} (written by an older train rule?); retrain the task")
    source = f"per-batch training-loss std over the {choice.replace('_', ' ')} ({where}: {key})"
    return check_epsilon(meta[key], source), source


# ---------------------------------------------------------------------------------------------
# The ellipsoid and its Gaussian width
# ---------------------------------------------------------------------------------------------


def ellipsoid_radii_sq(eigenvalues: np.ndarray, epsilon: float) -> np.ndarray:
    """Squared semi-axes r_i² = 2ε/|λ_i| of the quadratic model's sublevel set [paper]; ∞ at λ = 0.

    L(w* + x) − L(w*) ≈ ½ xᵀHx ≤ ε  ⇔  Σ_i x_i² |λ_i| / (2ε) ≤ 1 in the eigenbasis (the gradient
    term is dropped at a trained point; negative curvature enters by magnitude [code]).
    """
    lam = np.abs(np.asarray(eigenvalues, np.float64))
    with np.errstate(divide="ignore"):
        return 2.0 * check_epsilon(epsilon, "the caller") / lam


def width_kernel(eigenvalues: np.ndarray, radius: float, epsilon: float) -> np.ndarray:
    """f_R(λ) = r²/(R² + r²) = 1/(1 + R²|λ|/(2ε)): one direction's share of w²(R) [code ``cal_gw``]."""
    return 1.0 / (1.0 + radius * radius * np.abs(eigenvalues) / (2.0 * epsilon))


def projected_ellipsoid_axes(radii_sq: np.ndarray, radius: float) -> np.ndarray:
    """Semi-axes ρ_i = r_i/√(R² + r_i²) of the ellipsoid seen from distance R, projected to the sphere.

    What Σ_i r_i²/(R² + r_i²) is [ours; the paper states the formula, this is our derivation]:

    Model the view from the pruned point w_s as follows: the ellipsoid E = {y ∈ R^D :
    Σ y_i²/r_i² ≤ 1} (the sublevel set, centred at w*) lies in the affine plane orthogonal to the
    line of sight, at distance R = ‖w* − w_s‖ (the offset is treated as orthogonal to every axis
    of E; this is the picture in which the formula is exact). In R^{D+1} the viewpoint is 0 and
    E sits at R·e₀ + (0, y). Radial projection onto
    the unit sphere sends (R, y) to (R, y)/√(R² + ‖y‖²); keep its D tangential coordinates
    z = y/√(R² + ‖y‖²). Then ‖z‖² = ‖y‖²/(R² + ‖y‖²), so y = R z/√(1 − ‖z‖²), and
        Σ y_i²/r_i² ≤ 1  ⇔  R² Σ z_i²/r_i² ≤ 1 − ‖z‖²  ⇔  Σ z_i² (1 + R²/r_i²) ≤ 1:
    the projection P is exactly the ellipsoid with semi-axes ρ_i = r_i/√(R² + r_i²).
    For an ellipsoid sup_{z∈P} ⟨g, z⟩ = ‖ρ ∘ g‖₂ (Cauchy–Schwarz), hence, with g ~ N(0, I_D),
        E[ sup_{z∈P} ⟨g, z⟩² ] = Σ_i ρ_i² = Σ_i r_i²/(R² + r_i²)          exactly, and
        Σ ρ_i² − max ρ_i² ≤ w(P)² = (E ‖ρ ∘ g‖)² ≤ Σ ρ_i²
    (Jensen above; the Gaussian Poincaré inequality below, ‖ρ ∘ ·‖ being max ρ_i-Lipschitz, and
    max ρ_i² ≤ 1). So the formula is the squared Gaussian width of the projected sublevel set up
    to less than 1, which is the slack between w²(C ∩ S^{D−1}) and δ(C) in the kinematic formula;
    for equal axes the cone over P is the circular cone of angle α = arctan(r/R) in R^{D+1}, whose
    statistical dimension is (D + 1) sin²α + cos 2α + o(1) = D r²/(R² + r²) + cos²α + o(1)
    (Amelunxen et al. 2014, Prop. 3.4).
    tests/test_theory.py checks both against Monte Carlo.
    """
    radii_sq = np.asarray(radii_sq, np.float64)
    with np.errstate(invalid="ignore"):
        rho_sq = np.where(np.isinf(radii_sq), 1.0, radii_sq / (radius * radius + radii_sq))
    return np.sqrt(rho_sq)


def gaussian_width_sq(spectrum: Quadrature, radius: float, epsilon: float) -> float:
    """w²(R)/D = tr f_R(H)/D for the sublevel set seen from distance ``radius`` [code ``cal_gw``].

    ``spectrum`` is the Quadrature the theory uses (SLQ or exact eigenvalues, after
    :func:`theory_spectrum`); the value is D⁻¹ · D Σ_j τ_j f_R(λ_j) via ``Quadrature.trace_f``.
    """
    return spectrum.trace_f(lambda lam: width_kernel(lam, radius, epsilon)) / spectrum.dim  # Σ_j τ_j f_R(λ_j)


def gaussian_width_sq_curve(spectrum: Quadrature, radii: np.ndarray, epsilon: float) -> np.ndarray:
    return np.array([gaussian_width_sq(spectrum, float(r), epsilon) for r in np.asarray(radii, np.float64)])


def theory_spectrum(spectrum: Quadrature, zero_fraction: float) -> Quadrature:
    """The spectrum the theory integrates: |λ| [code], its numerically null nodes at λ = 1e-30 and
    their mass topped up to the Hessian-row share f₀ [ours; the official code adds f₀ on top of what
    SLQ found: see :func:`spectrum.top_up_zero_mass`]."""
    q = absolute_spectrum(spectrum)
    return top_up_zero_mass(q, zero_fraction, NULL_RELATIVE * q.lambda_max, ZERO_EIGENVALUE)[0]


@dataclass(frozen=True)
class SmoothedSpectrum:
    """The official estimate's density: Gaussian-smoothed SLQ density on a grid [code ``cal_gw``]."""

    grid: np.ndarray
    density: np.ndarray
    zero_fraction: float

    def gaussian_width_sq(self, radius: float, epsilon: float) -> float:
        """(1 − f₀)·Σ_b d_b f_R(|x_b|)/Σ_b d_b + f₀·f_R(1e-30): ``cal_gw`` after ``cal_sparse_rate``
        appends mass f₀/(1 − f₀)·Σ d at 1e-30 (the same f₀ share of the total)."""
        share = np.sum(self.density * width_kernel(self.grid, radius, epsilon)) / np.sum(self.density)
        zero = float(width_kernel(np.array(ZERO_EIGENVALUE), radius, epsilon))
        return float((1.0 - self.zero_fraction) * share + self.zero_fraction * zero)


def smoothed_spectrum(spectrum: Quadrature, zero_fraction: float, n_bins: int, sigma2: float) -> SmoothedSpectrum:
    """Density of the raw (signed) spectrum on ``n_bins`` points, used by magnitude [code]."""
    grid, density = smoothed_density(spectrum, n_bins=n_bins, sigma2=sigma2)
    if not np.sum(density) > 0:
        raise PrunelimitError("smoothed spectral density is zero everywhere; check the spectrum file")
    return SmoothedSpectrum(grid, density, float(zero_fraction))


# ---------------------------------------------------------------------------------------------
# Projection distance of global magnitude pruning
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MagnitudeProfile:
    """One sort of |w*| over the prunable weights, and everything magnitude pruning needs from it.

    ``order`` is the removal order: ascending |w|, ties broken as :mod:`prunelimit.prune` does (of
    equal |w| the later flat index goes first, the earlier is kept). At sparsity s,
    #removed(s) = D − keep_count(D, s) (``prune.keep_count``: round((1 − s)·D), halves up), so the
    mask is exactly prune's. ``cumsq[k]`` is the sum of the k smallest squares: R(s)² =
    cumsq[#removed(s)], and the weight at the threshold is ``order[#removed − 1]``.
    """

    weights: np.ndarray  # (D,) float64, the flat prunable weights in prunable_parameters order
    order: np.ndarray  # (D,) removal order, ascending |w|
    cumsq: np.ndarray  # (D + 1,) cumulative sums of the sorted squares, cumsq[0] = 0

    @property
    def dim(self) -> int:
        return int(self.weights.size)

    @property
    def norm(self) -> float:
        return float(math.sqrt(self.cumsq[-1]))

    def removed(self, sparsity: float) -> int:
        return self.dim - keep_count(self.dim, sparsity)

    def distance(self, sparsity: float | np.ndarray) -> float | np.ndarray:
        """R(s) = ‖w* − w_s‖₂ = √(sum of the removed squares) [paper]; scalar or array ``sparsity``."""
        if np.ndim(sparsity) == 0:
            return float(math.sqrt(self.cumsq[self.removed(float(sparsity))]))
        return np.sqrt(self.cumsq[[self.removed(float(s)) for s in np.ravel(sparsity)]])

    def threshold_index(self, sparsity: float) -> int:
        """Flat index of the weight at the magnitude threshold: the largest removed one [code
        ``get_sparse_threshold``], or the smallest weight when nothing is removed."""
        return int(self.order[max(self.removed(sparsity) - 1, 0)])

    def mask(self, sparsity: float) -> np.ndarray:
        """Boolean keep-mask of global magnitude pruning at ``sparsity`` (equal to prune's)."""
        keep = np.ones(self.dim, bool)
        keep[self.order[:self.removed(sparsity)]] = False
        return keep


def magnitude_profile(weights: np.ndarray | torch.Tensor) -> MagnitudeProfile:
    """Sort |w| once; cumulative sums of sorted squares in float64."""
    w = weights.detach().cpu().double().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights, np.float64)
    w = w.ravel()
    if w.size == 0:
        raise PrunelimitError("no prunable weights: the model has no conv or linear layer")
    if not np.all(np.isfinite(w)):
        raise PrunelimitError(f"the weights contain {int(np.sum(~np.isfinite(w)))} non-finite values")
    order = np.argsort(-np.abs(w), kind="stable")[::-1].copy()  # prune's ranking, reversed
    cumsq = np.concatenate([[0.0], np.cumsum(w[order] ** 2)])
    return MagnitudeProfile(w, order, cumsq)


def flat_prunable(model: nn.Module) -> torch.Tensor:
    """The prunable weights (models.prunable_parameters, in its order) as one flat float64 vector."""
    return torch.cat([p.detach().flatten().double().cpu() for _, p in prunable_parameters(model)])


# ---------------------------------------------------------------------------------------------
# Fixed points: the prediction and the kinematic bounds
# ---------------------------------------------------------------------------------------------


def a_eta(eta: float) -> float:
    """a_η = √(8 log(4/η)) of the approximate kinematic formula (Amelunxen et al. 2014, Thm I)."""
    if not 0.0 < eta < 1.0:
        raise PrunelimitError(f"theory.eta must be in (0, 1), got {eta}")
    return math.sqrt(8.0 * math.log(4.0 / eta))


def largest_fixed_point(width_of_s: Callable[[float], float], offset: float = 0.0,
                        tol: float = BISECTION_TOL) -> float:
    """sup{s ∈ [0, 1] : width_of_s(s) + offset ≥ s}, for a non-increasing ``width_of_s``.

    g(s) = width_of_s(s) + offset − s is strictly decreasing, so the set is an interval [0, s*]
    and bisection on the sign of g finds s* to ``tol`` (R(s) is a step function of s, so g may jump
    across 0 rather than pass through it: s* is then the jump). Clipped to [0, 1]: 0 when
    g(0) < 0, 1 when g(1) ≥ 0.
    """
    def g(s: float) -> float:
        return width_of_s(s) + offset - s

    if g(0.0) < 0:
        return 0.0
    if g(1.0) >= 0:
        return 1.0
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if g(mid) >= 0:
            lo = mid
        else:
            hi = mid
    return lo


def predict_from_spectrum(profile: MagnitudeProfile, spectrum: Quadrature, epsilon: float, *,
                          zero_fraction: float, eta: float = 0.05, scale: float = 1.0,
                          spectrum_dim: int | None = None) -> dict:
    """Predicted threshold and kinematic bounds for the weights ``profile`` and a raw ``spectrum``.

    ``spectrum`` is the Hessian spectrum as estimated (signed); |λ| and the zero mass f₀ are
    applied here. ``scale`` multiplies R (the magnitude-scaling experiment). ``spectrum_dim`` is
    the dimension the spectrum must have (default: D, the prunable weights; the parameter count
    for ``hessian.params: all``, whose w²/D is then the fraction over all parameters [ours]).
    Returns a JSON-ready dict of sparsities (fraction removed) and the quantities behind them.
    """
    epsilon = check_epsilon(epsilon, "the caller")
    expected = profile.dim if spectrum_dim is None else int(spectrum_dim)
    if spectrum.dim != expected:
        raise PrunelimitError(f"the spectrum is over {spectrum.dim} parameters but the model has {expected} "
                              "(hessian.params); was the Hessian taken over another parameter set or model?")
    q = theory_spectrum(spectrum, zero_fraction)
    null_found = float(np.sum(q.weights[q.nodes <= ZERO_EIGENVALUE]))  # after the top-up: max(m0, f0)
    dim = profile.dim

    def width_at(s: float) -> float:
        return gaussian_width_sq(q, scale * profile.distance(s), epsilon)

    a = a_eta(eta)
    s_pred = largest_fixed_point(width_at)
    s_low = largest_fixed_point(width_at, offset=-a * math.sqrt(dim) / dim)
    s_up = largest_fixed_point(width_at, offset=(1.0 + a * math.sqrt(dim)) / dim)
    mean_abs = float(np.sum(q.weights * q.nodes))  # tr|H|/D with the zero mass included
    s_jensen = largest_fixed_point(lambda s: 1.0 / (1.0 + (scale * profile.distance(s)) ** 2 * mean_abs
                                                    / (2.0 * epsilon)))
    return {
        "predicted_sparsity": s_pred,
        "predicted_density": 1.0 - s_pred,
        "R_at_prediction": scale * profile.distance(s_pred),
        "gw2_over_D_at_prediction": width_at(s_pred),
        "bounds": "kinematic bounds",
        "lower_sparsity": s_low,
        "upper_sparsity": s_up,
        "gap": s_up - s_low,
        "eta": eta,
        "a_eta": a,
        "jensen_sparsity": s_jensen,
        "mean_abs_eigenvalue": mean_abs,
        "zero_fraction": zero_fraction,
        "null_mass": null_found,
    }


def sparsity_predictor(profile: MagnitudeProfile, epsilon: float, zero_fraction: float,
                       spectrum_dim: int | None = None) -> Callable[[Quadrature], float]:
    """spectrum → predicted sparsity (the fixed point alone): the functional SLQ converges on."""
    epsilon = check_epsilon(epsilon, "the caller")

    def predict(spectrum: Quadrature) -> float:
        q = theory_spectrum(spectrum, zero_fraction)
        return largest_fixed_point(lambda s: gaussian_width_sq(q, profile.distance(s), epsilon))

    return predict


# ---------------------------------------------------------------------------------------------
# Hessian rows: the zero-eigenvalue fraction f₀
# ---------------------------------------------------------------------------------------------


def row_sparsities(levels: int) -> np.ndarray:
    """Sparsities j/levels, j = 1 … levels.

    The official code takes j = 0 … levels − 1 [code ``gradient.py``: index i·10 of 1000, i < 100];
    its level 0 (nothing removed) repeats the smallest weight of level 1/levels, so a share d of
    zero rows is counted as (⌊d·levels⌋ + 1)/levels, up to one level too many. With j = 1 … levels
    the count is ⌊d·levels⌋/levels ≤ d [ours], which suits f₀'s role: topping up the null mass SLQ
    already finds (:func:`spectrum.top_up_zero_mass`), never inflating it.
    """
    if levels < 1:
        raise PrunelimitError(f"theory.row_levels must be ≥ 1, got {levels}")
    return np.arange(1, levels + 1, dtype=np.float64) / levels


def spectrum_dimension(model: nn.Module, params: str) -> int:
    """D of the Hessian for ``hessian.params``: the prunable weights, or every trainable parameter."""
    return int(operator_positions(model, params).size if params == "prunable"
               else sum(p.numel() for p in model.parameters() if p.requires_grad))


def operator_positions(model: nn.Module, params: str) -> np.ndarray:
    """Position of each prunable weight (prunable_parameters order) in the operator's flat vector.

    ``prunable``: the operator's vector is the prunable weights themselves. ``all``: every
    trainable parameter in ``model.parameters()`` order, the prunable weights at their offsets.
    """
    prunable = prunable_parameters(model)
    if params == "prunable":
        return np.arange(sum(p.numel() for _, p in prunable))
    if params != "all":
        raise PrunelimitError(f"hessian.params must be 'prunable' or 'all', got {params!r}")
    offsets, start = {}, 0
    for p in model.parameters():
        if p.requires_grad:
            offsets[id(p)] = start
            start += p.numel()
    return np.concatenate([offsets[id(p)] + np.arange(p.numel()) for _, p in prunable])


def hessian_row_norms(operator, positions: np.ndarray, batch: int = ROW_BATCH,
                      progress: bool = False) -> np.ndarray:
    """‖H e_i‖₁ for each operator index i in ``positions`` (H symmetric: row = column).

    Columns go through ``operator.matmat`` in blocks of ``batch`` basis vectors. The official code
    accumulates Σ_batches ‖H_b e_i‖₁/N over minibatch Hessians H_b [code ``gradient.py``]; we take
    the row of the full-training-set Hessian (the operator the spectrum comes from) [ours].
    """
    from tqdm import tqdm

    positions = np.asarray(positions, np.int64)
    dim = int(operator.dim)
    if positions.size and (positions.min() < 0 or positions.max() >= dim):
        raise PrunelimitError(f"Hessian row index out of range [0, {dim})")
    ref = operator.flat_params()
    norms = np.empty(positions.size)
    for start in tqdm(range(0, positions.size, batch), desc="hessian rows", disable=not progress, leave=False):
        block = positions[start:start + batch]
        basis = torch.zeros(dim, block.size, dtype=ref.dtype, device=ref.device)
        basis[torch.as_tensor(block, device=ref.device), torch.arange(block.size, device=ref.device)] = 1.0
        columns = operator.matmat(basis)  # (D, k)
        norms[start:start + block.size] = columns.abs().sum(dim=0).double().cpu().numpy()
    if not np.all(np.isfinite(norms)):
        raise PrunelimitError("a Hessian row has non-finite entries; the trained model's loss is not finite")
    return norms


@dataclass(frozen=True)
class HessianRows:
    """The Hessian-row experiment [code ``gradient.py``]: row L1 norms at the threshold weights."""

    sparsities: np.ndarray  # (k,) sparsity levels j/levels
    weight_indices: np.ndarray  # (k,) flat prunable index of the threshold weight at each level
    weight_values: np.ndarray  # (k,) w* at those indices
    l1_norms: np.ndarray  # (k,) ‖H e_i‖₁
    zero_threshold: float  # rows with a smaller L1 norm count as zero eigen-directions
    dim: int  # D of the prunable weights

    @property
    def zero_rows(self) -> int:
        return int(np.sum(self.l1_norms < self.zero_threshold))

    @property
    def zero_fraction(self) -> float:
        """f₀ = #zero rows / #levels [code ``gaussian_width.py``: num/100]."""
        return self.zero_rows / max(len(self.l1_norms), 1)

    def save(self, path: str | os.PathLike) -> None:
        save_npz(path, sparsities=self.sparsities, weight_indices=self.weight_indices,
                 weight_values=self.weight_values, l1_norms=self.l1_norms,
                 zero_threshold=np.float64(self.zero_threshold), dim=np.int64(self.dim),
                 zero_fraction=np.float64(self.zero_fraction))

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int | None = None) -> "HessianRows":
        arrays = load_npz(path, "Hessian-rows", ("sparsities", "weight_indices", "weight_values", "l1_norms",
                                                 "zero_threshold", "dim"))
        rows = cls(arrays["sparsities"], arrays["weight_indices"], arrays["weight_values"], arrays["l1_norms"],
                   float(arrays["zero_threshold"]), int(arrays["dim"]))
        if dim is not None and rows.dim != dim:
            raise PrunelimitError(f"Hessian-rows file {path} is for {rows.dim} weights, the model has {dim}")
        return rows


def hessian_rows(model: nn.Module, data, *, hessian_cfg: dict, theory_cfg: dict,
                 profile: MagnitudeProfile | None = None, progress: bool = False,
                 operator=None) -> HessianRows:
    """Row L1 norms of the Hessian at the threshold weights of ``theory.row_levels`` sparsities.

    At each level j/levels take the weight at the magnitude threshold (the largest one removed),
    compute its full-training-set Hessian row H e_i (batched HVPs with basis vectors) and its L1
    norm [code ``gradient.py``]; f₀ = fraction of rows below ``theory.zero_row_threshold``.
    """
    from .hessian import HessianOperator

    profile = profile or magnitude_profile(flat_prunable(model))
    levels = row_sparsities(int(theory_cfg.get("row_levels", 100)))
    indices = np.array([profile.threshold_index(s) for s in levels], np.int64)
    params = hessian_cfg.get("params", "prunable")
    positions = operator_positions(model, params)[indices]
    op = operator if operator is not None else HessianOperator(model, data.x_train, data.y_train, params=params,
                                                                chunk_size=int(hessian_cfg.get("chunk_size", 0)))
    norms = hessian_row_norms(op, positions, progress=progress)
    return HessianRows(levels, indices, profile.weights[indices], norms,
                       float(theory_cfg.get("zero_row_threshold", 1e-7)), profile.dim)


# ---------------------------------------------------------------------------------------------
# Magnitude scaling
# ---------------------------------------------------------------------------------------------


def scaled_model(model: nn.Module, scale: float) -> nn.Module:
    """A copy of ``model`` with every prunable weight multiplied by ``scale`` (biases, BN untouched).

    The magnitude-scaling experiment scales the weights pruning acts on; magnitude order, and so
    every mask, is the same for all scales.
    """
    scale = float(scale)
    if not (scale > 0 and math.isfinite(scale)):
        raise PrunelimitError(f"theory.scales must be positive finite numbers, got {scale}")
    scaled = copy.deepcopy(model).eval()
    with torch.no_grad():
        for _, p in prunable_parameters(scaled):
            p.mul_(scale)
    return scaled


def scaled_actual_threshold(model: nn.Module, data, scale: float, *, grid: int) -> dict:
    """The actual threshold of the scaled model: prune's in-place sweep on ``scale``·w* (test set only).

    Reference accuracy is the scaled unpruned model's (the sweep's sparsity-0 point).
    """
    from .prune import sweep_and_threshold

    curve, found = sweep_and_threshold(scaled_model(model, scale), data, grid=grid)
    return {"actual_sparsity": found["actual_sparsity"], "actual_criterion": found["actual_criterion"],
            "dense_test_acc": found["dense_test_acc"],
            "curve": [{"sparsity": r["sparsity"], "test_acc": r["test_acc"]} for r in curve]}


def magnitude_scaling(profile: MagnitudeProfile, spectrum: Quadrature, epsilon: float, scales: list[float], *,
                      zero_fraction: float, eta: float = 0.05, spectrum_dim: int | None = None,
                      actual_threshold: Callable[[float], float | dict] | None = None) -> dict:
    """Predicted threshold per weight scale c: the crossing of (c·R(s), s) with w²(R)/D.

    [paper, figure "pruning ratio prediction on different weight magnitude"] The figure draws
    one prediction curve w²(R)/D and the actual curves (c·R(s), s): the spectrum and ε are held
    at those of the trained model and only R is scaled (scaling the weights of a ReLU network
    changes its Hessian too; the paper derives no rule for that, so none is applied) [paper; ours
    for the choice]. ``actual_threshold(c)``, if given, supplies the measured threshold of the
    scaled model: a number, or a dict merged into the row (e.g. :func:`scaled_actual_threshold`).
    """
    out = []
    for c in scales:
        if not (float(c) > 0 and math.isfinite(float(c))):
            raise PrunelimitError(f"theory.scales must be positive finite numbers, got {c}")
        pred = predict_from_spectrum(profile, spectrum, epsilon, zero_fraction=zero_fraction, eta=eta, scale=float(c),
                                     spectrum_dim=spectrum_dim)
        row = {"scale": float(c), **{k: pred[k] for k in ("predicted_sparsity", "predicted_density", "R_at_prediction",
                                                          "lower_sparsity", "upper_sparsity", "gap")}}
        if actual_threshold is not None:
            actual = actual_threshold(float(c))
            row.update(actual if isinstance(actual, dict) else {"actual_sparsity": float(actual)})
        out.append(row)
    return {"scales": out, "spectrum_held_fixed": True,
            "note": "predicted: R scaled by c, spectrum and epsilon of the unscaled model (paper figure; its "
                    "'actual curve' is (c R(s), s)). actual_sparsity, where present, is the accuracy threshold of "
                    "the scaled network itself, which scaling changes (logits ~ c^depth, biases and BN statistics "
                    "unscaled), so it need not follow the prediction"}


# ---------------------------------------------------------------------------------------------
# The one code path: trained model → prediction
# ---------------------------------------------------------------------------------------------


def curves(profile: MagnitudeProfile, spectrum: Quadrature, epsilon: float, *, zero_fraction: float,
           max_scale: float = 1.0, smoothed: SmoothedSpectrum | None = None) -> dict:
    """The figure curves: R(s) on a sparsity grid and w²(R)/D on a log-spaced R grid covering it."""
    s_grid = np.linspace(0.0, 1.0, CURVE_SPARSITIES)
    r_of_s = profile.distance(s_grid)
    positive = r_of_s[r_of_s > 0]
    r_top = max(profile.norm, 1e-12) * max(1.0, max_scale) * 1.25
    r_bottom = 0.5 * positive.min() if positive.size else r_top * 1e-4
    r_grid = np.geomspace(r_bottom, r_top, CURVE_RADII)
    q = theory_spectrum(spectrum, zero_fraction)
    out = {"sparsity_grid": s_grid, "R_of_sparsity": r_of_s, "R_grid": r_grid,
           "gw2_over_D": gaussian_width_sq_curve(q, r_grid, epsilon)}
    if smoothed is not None:
        out["gw2_over_D_official_smoothed"] = np.array([smoothed.gaussian_width_sq(r, epsilon) for r in r_grid])
    return out


def prediction_report(profile: MagnitudeProfile, spectrum: Quadrature, epsilon: float, *, zero_fraction: float,
                      hessian_cfg: dict, theory_cfg: dict, spectrum_dim: int | None = None) -> dict:
    """Prediction, kinematic bounds, curves and the official smoothed-density comparison."""
    eta = float(theory_cfg.get("eta", 0.05))
    pred = predict_from_spectrum(profile, spectrum, epsilon, zero_fraction=zero_fraction, eta=eta,
                                 spectrum_dim=spectrum_dim)
    n_bins, sigma2 = int(hessian_cfg.get("n_bins", 10000)), float(hessian_cfg.get("sigma2", 1e-5))
    official = {"n_bins": n_bins, "sigma2": sigma2,
                "note": "comparison only: the density-smoothed estimate of the official code"}
    try:
        smooth = smoothed_spectrum(spectrum, zero_fraction, n_bins, sigma2)
    except PrunelimitError:
        # Kernels narrower than the grid spacing miss every grid point (a flaw of the smoothed
        # estimate, not of the spectrum): the comparison is undefined, the prediction is not.
        smooth = None
        official.update(predicted_sparsity=None, predicted_density=None,
                        note="undefined: every Gaussian kernel falls between grid points (kernel narrower than "
                             "the grid spacing); comparison only")
    else:
        s_official = largest_fixed_point(lambda s: smooth.gaussian_width_sq(profile.distance(s), epsilon))
        official.update(predicted_sparsity=s_official, predicted_density=1.0 - s_official)
    return {
        **pred,
        "official_smoothed": official,
        "spectrum": {"n_nodes": int(spectrum.nodes.size), "lambda_min": spectrum.lambda_min,
                     "lambda_max": spectrum.lambda_max, "dim": spectrum.dim},
        "curves": curves(profile, spectrum, epsilon, zero_fraction=zero_fraction,
                         max_scale=max(theory_cfg.get("scales", [1.0]) or [1.0]), smoothed=smooth),
    }


def slq_report(result, profile: MagnitudeProfile, epsilon: float, zero_fraction: float,
               spectrum_dim: int | None = None) -> dict:
    """How the SLQ estimate was made and how far to trust it: per-run predictions (their spread is
    the seed-to-seed error), the step counts tried and whether every run converged."""
    if isinstance(result, Quadrature):  # an exact spectrum: nothing estimated
        return {"n_runs": 0, "steps": [], "per_run_predicted_sparsity": [], "spread": 0.0, "converged": None,
                "capped": None, "tol": None, "max_iter": None, "predictions_by_steps": None}
    predict = sparsity_predictor(profile, epsilon, zero_fraction, spectrum_dim)
    per_run = []
    for r in range(result.n_runs):
        m = int(result.steps[r])
        per_run.append(predict(Quadrature(result.ritz_values[r, :m], result.ritz_weights[r, :m]
                                          / result.ritz_weights[r, :m].sum(), result.dim)))
    convergence = result.settings.get("convergence", {})
    return {"n_runs": result.n_runs, "steps": [int(m) for m in result.steps],
            "per_run_predicted_sparsity": per_run, "spread": float(max(per_run) - min(per_run)),
            "converged": not convergence.get("capped", True) if convergence else None,
            "capped": convergence.get("capped") if convergence else None,
            "tol": convergence.get("tol"), "max_iter": convergence.get("max_iter"),
            "predictions_by_steps": convergence.get("history")}


def predict_from_model(model: nn.Module, data, *, hessian_cfg: dict, theory_cfg: dict, l1: float = 0.0,
                       spectrum=None, rows: HessianRows | None = None, seed: int = 0,
                       epsilon: tuple[float, str] | None = None, progress: bool = False) -> dict:
    """Trained model → predicted pruning threshold, kinematic bounds and curves (JSON-ready dict).

    The one code path of the pipeline's theory rule, ``prunelimit predict`` and iterative pruning.
    ε: ``epsilon`` (value, source) if given, else from the model (:func:`loss_tolerance`). f₀: from
    ``rows`` if given, else the Hessian rows. The spectrum: ``spectrum`` (an :class:`SLQResult`, or
    a :class:`Quadrature` of exact eigenvalues) if given, else converged SLQ (:func:`hessian.spectrum_of_trained` with this prediction as the
    functional). One Hessian operator serves the rows and the spectrum.
    """
    from .hessian import operator_of_trained, spectrum_of_trained

    t0 = time.perf_counter()
    model = model.eval()
    profile = magnitude_profile(flat_prunable(model))
    epsilon, eps_source = epsilon or loss_tolerance(model, data, l1=l1, override=theory_cfg.get("epsilon"), seed=seed)
    params = hessian_cfg.get("params", "prunable")
    spectrum_dim = spectrum_dimension(model, params)
    operator = None
    if rows is None or spectrum is None:
        operator = operator_of_trained(model, data, hessian_cfg)
    if rows is None:
        rows = hessian_rows(model, data, hessian_cfg=hessian_cfg, theory_cfg=theory_cfg, profile=profile,
                            progress=progress, operator=operator)
    elif rows.dim != profile.dim:
        raise PrunelimitError(f"Hessian rows are for {rows.dim} weights, the model has {profile.dim}")
    f0 = rows.zero_fraction
    spectrum_source = "given"
    if spectrum is None:
        spectrum = spectrum_of_trained(model, data, hessian_cfg, progress=progress, operator=operator,
                                       predict=sparsity_predictor(profile, epsilon, f0, spectrum_dim))
        spectrum_source = "computed (hessian.spectrum_of_trained, converged on the prediction)"
    exact = isinstance(spectrum, Quadrature)
    quadrature = spectrum if exact else spectrum.quadrature()
    report = prediction_report(profile, quadrature, epsilon, zero_fraction=f0, hessian_cfg=hessian_cfg,
                               theory_cfg=theory_cfg, spectrum_dim=spectrum_dim)
    # the largest eigenvalues: exact ones, or the k-th largest Ritz value averaged over runs
    top = (np.sort(quadrature.nodes)[::-1][:10] if exact
           else np.sort(spectrum.ritz_values, axis=1)[:, ::-1][:, :10].mean(axis=0))
    return {
        "epsilon": epsilon,
        "epsilon_source": eps_source,
        "D": profile.dim,
        "weight_l2_norm": profile.norm,
        "zero_fraction": f0,
        "zero_rows": {"n_rows": int(len(rows.l1_norms)), "n_zero": rows.zero_rows,
                      "threshold": rows.zero_threshold, "important_fraction": 1.0 - f0},
        **report,
        "slq": slq_report(spectrum, profile, epsilon, f0, spectrum_dim),
        "top_eigenvalues": top.tolist(),
        "provenance": {"formulas": FORMULA_MARKS, "spectrum_source": spectrum_source,
                       "hessian": dict(hessian_cfg), "theory": dict(theory_cfg), "l1": l1,
                       "spectrum_settings": {} if exact else dict(spectrum.settings),
                       "bounds": "kinematic bounds", "seconds": time.perf_counter() - t0},
    }


# ---------------------------------------------------------------------------------------------
# Pipeline entry points (files in, files out; the rule scripts call these)
# ---------------------------------------------------------------------------------------------


def check_spectrum(q: Quadrature, *, path, model: nn.Module, hessian_cfg: dict, made_with: str | None = None) -> None:
    """Stop with a message naming ``path`` if its spectrum is not of ``model``'s Hessian as configured."""
    params = hessian_cfg.get("params", "prunable")
    if made_with is not None and made_with != params:
        raise PrunelimitError(f"spectrum file {path} was taken over params={made_with!r}, "
                              f"the config asks for {params!r}; rerun the hessian rule")
    dim = spectrum_dimension(model, params)
    if q.dim != dim:
        raise PrunelimitError(f"spectrum file {path} is over {q.dim} parameters, but the model has {dim} "
                              f"({params} parameters): it belongs to another model or setting")


def load_spectrum(path: str | os.PathLike, *, kind: str, model: nn.Module, hessian_cfg: dict) -> Quadrature:
    """The SLQ (``kind='slq'``) or exact (``'exact'``) spectrum file of ``model``, checked against it.

    A missing, unreadable or inconsistent file (another dimension, another parameter set) stops
    with a message naming it.
    """
    from .hessian import SLQResult, load_exact
    from .spectrum import from_eigenvalues

    made_with = None
    if kind == "slq":
        result = SLQResult.load(path)
        made_with = result.settings.get("params")
        q = result.quadrature()
    elif kind == "exact":
        q = from_eigenvalues(load_exact(path))
    else:
        raise PrunelimitError(f"unknown spectrum kind {kind!r}; use 'slq' or 'exact'")
    check_spectrum(q, path=path, model=model, hessian_cfg=hessian_cfg, made_with=made_with)
    return q


def _load_task(model_path, metrics_path, data_path, device):
    from .config import resolve_device
    from .data import load_tensors
    from .train import load_trained

    device = resolve_device(device) if isinstance(device, str) else device
    model, meta = load_trained(model_path, metrics_path, device)
    return model, meta, load_tensors(data_path, device)


def rows_task(*, model_path, metrics_path, data_path, out_path, hessian_cfg: dict, theory_cfg: dict,
              device: str = "cpu", progress: bool = False) -> HessianRows:
    """Rule ``hessian_rows``: the Hessian-row experiment of a trained task, saved as .npz."""
    model, _, data = _load_task(model_path, metrics_path, data_path, device)
    rows = hessian_rows(model, data, hessian_cfg=hessian_cfg, theory_cfg=theory_cfg, progress=progress)
    rows.save(out_path)
    return rows


def slq_task(*, model_path, metrics_path, data_path, rows_path, out_path, hessian_cfg: dict, theory_cfg: dict,
             device: str = "cpu", progress: bool = False):
    """Rule ``slq``: the SLQ spectrum of a trained task, its step count grown until the predicted
    threshold is stable (ε from metrics.json, f₀ from the Hessian rows), saved as .npz."""
    from .hessian import spectrum_of_trained

    model, meta, data = _load_task(model_path, metrics_path, data_path, device)
    profile = magnitude_profile(flat_prunable(model))
    rows = HessianRows.load(rows_path, dim=profile.dim)
    epsilon, _ = epsilon_from_metrics(meta, theory_cfg, str(metrics_path))
    spectrum_dim = spectrum_dimension(model, hessian_cfg.get("params", "prunable"))
    result = spectrum_of_trained(model, data, hessian_cfg, progress=progress,
                                 predict=sparsity_predictor(profile, epsilon, rows.zero_fraction, spectrum_dim))
    result.save(out_path, n_bins=int(hessian_cfg["n_bins"]), sigma2=float(hessian_cfg["sigma2"]))
    return result


def theory_task(*, model_path, metrics_path, data_path, slq_path, rows_path, out_path, hessian_cfg: dict,
                theory_cfg: dict, exact_path=None, device: str = "cpu") -> dict:
    """Rule ``theory``: prediction.json from the trained model, its SLQ spectrum and Hessian rows.

    ε is the one the train rule measured (metrics.json). With ``exact_path`` the same prediction
    from the exact eigenvalues goes under ``exact``, with the same f₀ (so the difference is the SLQ
    quadrature error) and without it (the quadratic model's own answer, every zero eigenvalue
    resolved).
    """
    from .hessian import SLQResult

    model, meta, data = _load_task(model_path, metrics_path, data_path, device)
    result = SLQResult.load(slq_path)
    check_spectrum(result.quadrature(), path=slq_path, model=model, hessian_cfg=hessian_cfg,
                   made_with=result.settings.get("params"))
    profile = magnitude_profile(flat_prunable(model))
    rows = HessianRows.load(rows_path, dim=profile.dim)
    train_cfg = meta.get("train", {})
    out = predict_from_model(model, data, hessian_cfg=hessian_cfg, theory_cfg=theory_cfg,
                             l1=float(train_cfg.get("l1", 0.0)), spectrum=result, rows=rows,
                             epsilon=epsilon_from_metrics(meta, theory_cfg, str(metrics_path)))
    out["provenance"].update({"model": str(model_path), "metrics": str(metrics_path), "spectrum_file": str(slq_path),
                              "hessian_rows_file": str(rows_path)})
    if exact_path is not None:
        out["exact"] = exact_comparison(profile, load_spectrum(exact_path, kind="exact", model=model,
                                                               hessian_cfg=hessian_cfg),
                                        out, theory_cfg=theory_cfg,
                                        spectrum_dim=spectrum_dimension(model, hessian_cfg.get("params", "prunable")))
        out["exact"]["spectrum_file"] = str(exact_path)
    from .io import save_json

    save_json(out, out_path)
    return out


def exact_comparison(profile: MagnitudeProfile, exact: Quadrature, slq_prediction: dict, *, theory_cfg: dict,
                     spectrum_dim: int | None = None) -> dict:
    """The prediction from exact eigenvalues beside the SLQ one (same ε, R(s) and, first, f₀)."""
    eps, f0, eta = slq_prediction["epsilon"], slq_prediction["zero_fraction"], float(theory_cfg.get("eta", 0.05))
    keys = ("predicted_sparsity", "predicted_density", "lower_sparsity", "upper_sparsity", "gap", "jensen_sparsity",
            "mean_abs_eigenvalue")
    same = predict_from_spectrum(profile, exact, eps, zero_fraction=f0, eta=eta, spectrum_dim=spectrum_dim)
    raw = predict_from_spectrum(profile, exact, eps, zero_fraction=0.0, eta=eta, spectrum_dim=spectrum_dim)
    radii = np.asarray(slq_prediction["curves"]["R_grid"])
    return {
        "same_zero_mass": {k: same[k] for k in keys},
        "no_zero_mass": {k: raw[k] for k in keys},
        "slq_minus_exact": slq_prediction["predicted_sparsity"] - same["predicted_sparsity"],
        "gw2_over_D": gaussian_width_sq_curve(theory_spectrum(exact, f0), radii, eps),
        "gw2_over_D_no_zero_mass": gaussian_width_sq_curve(theory_spectrum(exact, 0.0), radii, eps),
        "n_eigenvalues": int(exact.nodes.size), "lambda_min": exact.lambda_min, "lambda_max": exact.lambda_max,
        "zero_fraction_of_eigenvalues": {str(t): float(np.mean(np.abs(exact.nodes) < t)) for t in (1e-7, 1e-5, 1e-3)},
    }


def scaling_task(*, model_path, metrics_path, data_path, slq_path, prediction_path, out_path, hessian_cfg: dict,
                 theory_cfg: dict, device: str = "cpu") -> dict:
    """Rule ``magnitude_scaling``: predicted (and, by prune's sweep, actual) threshold per weight scale."""
    from .io import load_json, save_json

    model, _, data = _load_task(model_path, metrics_path, data_path, device)
    pred = load_json(prediction_path)
    spectrum = load_spectrum(slq_path, kind="slq", model=model, hessian_cfg=hessian_cfg)
    profile = magnitude_profile(flat_prunable(model))
    if pred.get("D") != profile.dim:
        raise PrunelimitError(f"{prediction_path} is for D = {pred.get('D')} weights, the model has {profile.dim}")

    def actual(c: float) -> dict:
        return scaled_actual_threshold(model, data, c, grid=int(theory_cfg["scaling_grid"]))

    out = magnitude_scaling(profile, spectrum, pred["epsilon"], list(theory_cfg.get("scales", [1, 2, 3, 4, 5])),
                            zero_fraction=pred["zero_fraction"], eta=float(theory_cfg.get("eta", 0.05)),
                            spectrum_dim=spectrum_dimension(model, hessian_cfg.get("params", "prunable")),
                            actual_threshold=actual)
    out.update({"epsilon": pred["epsilon"], "zero_fraction": pred["zero_fraction"], "D": profile.dim,
                "R_of_sparsity": pred["curves"]["R_of_sparsity"], "sparsity_grid": pred["curves"]["sparsity_grid"],
                "R_grid": pred["curves"]["R_grid"], "gw2_over_D": pred["curves"]["gw2_over_D"],
                "provenance": {"formulas": {k: FORMULA_MARKS[k] for k in ("gaussian_width", "prediction")},
                               "actual": "[code] official criterion on the scaled model's own sweep (test accuracy)",
                               "prediction_file": str(prediction_path), "spectrum_file": str(slq_path),
                               "scaling_grid": int(theory_cfg["scaling_grid"])}})
    save_json(out, out_path)
    return out
