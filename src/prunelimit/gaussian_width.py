"""The pruning limit: Gaussian width of the loss sublevel set, kinematic bounds, predicted threshold.

From the trained weights w* and the Hessian spectrum alone, predict the largest fraction of
weights one-shot global magnitude pruning can remove without losing performance (Zhang, Zhang,
Sun, Liu, NeurIPS 2024, arXiv 2306.05857; official code QiaozheZhang/Global-One-shot-Pruning,
``cal_rate.py``, ``gaussian_width.py``, ``gradient.py``). Marks as in docs/method.md: **[paper]** the
paper's text, **[code]** read from the official code, **[ours]** our derivation.

Pieces, in the order the prediction uses them:

1. ε, the loss tolerance of the sublevel set S(ε) = {w : L(w) ≤ L(w*) + ε}: the standard deviation
   of the per-minibatch training loss [code ``cal_loss``], or ``theory.epsilon`` [ours]; measured in
   :mod:`prunelimit.epsilon`.
2. Quadratic model [paper]: S(ε) ≈ ellipsoid with semi-axes r_i = √(2ε/|λ_i|) along the Hessian
   eigenvectors; negative eigenvalues by magnitude [code ``cal_gw``: ``abs(grids_list[i])``];
   (near-)zero eigenvalues, which SLQ cannot resolve, as mass f₀ at λ = 1e-30 [code
   ``cal_sparse_rate``], f₀ the fraction of zero Hessian rows at the pruning-threshold weights
   [code ``gradient.py``; :func:`prunelimit.hessian_rows.hessian_rows`].
3. The squared Gaussian width of S(ε) seen from distance R, normalised by D
   [code ``cal_gw``; paper]:  w²(R)/D = tr f_R(H)/D,  f_R(λ) = 1/(1 + R²|λ|/(2ε)) = r²/(R² + r²),
   evaluated as a quadrature ``spectrum.Quadrature.trace_f`` (SLQ or exact eigenvalues alike).
   What this number is, exactly, is derived in :func:`projected_ellipsoid_axes`.
4. R(s) = ‖w* − w_s‖₂ for global magnitude pruning at sparsity s [paper], from the one sort of |w|
   pruning uses too (:class:`prunelimit.sparsity.MagnitudeRanking`).
5. The predicted threshold: the largest s with s = w²(R(s))/D [code: crossing of the curves
   (R(s), s) and (R, w²(R)/D); we solve the fixed point by bisection], and the kinematic bounds
   [ours, docs/method.md]: s = (w²(R(s)) − a_η√D)/D and s = (w²(R(s)) + 1 + a_η√D)/D,
   a_η = √(8 log(4/η)) (Amelunxen, Lotz, McCoy & Tropp 2014, approximate kinematic formula).

From a trained model to the prediction: :func:`prunelimit.stages.predict_from_model`.
Conventions: ``sparsity`` s = fraction of prunable weights removed, ``density`` = 1 − s kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .io import PrunelimitError
from .settings import HessianSettings, TheorySettings
from .sparsity import MagnitudeRanking
from .spectrum import Quadrature, absolute_spectrum, smoothed_density, top_up_zero_mass

ZERO_EIGENVALUE = 1e-30  # where the unresolved zero-eigenvalue mass is placed [code cal_sparse_rate]
# |λ| below this share of the largest |λ| is numerically null: float32 Hessian products carry a
# rounding error of about 8 float32 epsilons (1e-6) of the largest eigenvalue [ours]
NULL_RELATIVE = 1e-6
CURVE_SPARSITIES = 201  # points of the R(s) curve in the output (s = 0, 0.005, …, 1)
CURVE_RADII = 200  # log-spaced R points of the w²(R)/D curve in the output
BISECTION_TOL = 1e-10  # width of the final bracket of every fixed-point bisection (in sparsity)

FORMULA_MARKS = {
    "epsilon": "[code] std of the per-batch training loss (cal_loss), or config theory.epsilon [ours]",
    "ellipsoid": "[paper] S(eps) ~ ellipsoid, r_i^2 = 2 eps / |lambda_i| ([code] abs of eigenvalues)",
    "zero_mass": "[code] f0 = fraction of Hessian rows with L1 norm < threshold; [ours] the exact share off the "
                 "Hessian's known support enters at lambda = 0, nodes with |lambda| < 1e-6 lambda_max are null "
                 "(placed at 1e-30) and their mass is topped up to f0, not added on top",
    "gaussian_width": "[code cal_gw] w^2(R)/D = tr f_R(H)/D, f_R = 1/(1 + R^2 |lambda| / (2 eps)); "
                      "[ours] evaluated as Gauss quadrature on the Ritz values, not on a smoothed density",
    "projection_distance": "[paper] R(s) = ||w* - w_s||_2, w_s = global magnitude pruning at sparsity s",
    "prediction": "[code] crossing s = w^2(R(s))/D; [ours] solved exactly by bisection",
    "kinematic_bounds": "[ours] s_low: s = (w^2 - a_eta sqrt(D))/D, s_up: s = (w^2 + 1 + a_eta sqrt(D))/D, "
                        "a_eta = sqrt(8 log(4/eta)) (Amelunxen et al. 2014)",
    "jensen": "[ours] s = 1/(1 + R(s)^2 mean|lambda| / (2 eps)) <= prediction (Jensen)",
    "official_smoothed": "[code cal_gw] w^2/D integrated against the Gaussian-smoothed SLQ density (comparison)",
    "hessian_rows": "[code gradient.py] L1 norm of the full-training-set Hessian row of the threshold weight",
    "epsilon_band": "[ours] eps over theory.epsilon_partitions random batch partitions of the un-augmented training "
                    "set (batch 128, L1 term included); the prediction at eps's 10th and 90th percentiles",
}


# ---------------------------------------------------------------------------------------------
# ε: the loss tolerance (measured in prunelimit.epsilon)
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


# ---------------------------------------------------------------------------------------------
# The ellipsoid and its Gaussian width
# ---------------------------------------------------------------------------------------------


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
    return _theory_spectrum_and_top_up(spectrum, zero_fraction)[0]


def _theory_spectrum_and_top_up(spectrum: Quadrature, zero_fraction: float) -> tuple[Quadrature, float]:
    q = absolute_spectrum(spectrum)
    return top_up_zero_mass(q, zero_fraction, NULL_RELATIVE * q.lambda_max, ZERO_EIGENVALUE)


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


def predict_from_spectrum(ranking: MagnitudeRanking, spectrum: Quadrature, epsilon: float, *,
                          zero_fraction: float, eta: float = 0.05, scale: float = 1.0,
                          spectrum_dim: int | None = None, exact_null_mass: float = 0.0) -> dict:
    """Predicted threshold and kinematic bounds for the weights ``ranking`` and a raw ``spectrum``.

    ``spectrum`` is the Hessian spectrum as estimated (signed); |λ| and the zero mass f₀ are
    applied here. ``scale`` multiplies R (the magnitude-scaling experiment). ``spectrum_dim`` is
    the dimension the spectrum must have (default: D, the prunable weights; the parameter count
    for ``hessian.params: all``, whose w²/D is then the fraction over all parameters [ours]).
    ``exact_null_mass`` is the share of ``spectrum`` placed at exactly 0 off a known support
    (:attr:`prunelimit.spectrum.SLQResult.exact_null_mass`; 0 for exact eigenvalues): it only
    splits the reported ``null_mass`` into what the Ritz nodes found and that exact share.
    Returns a JSON-ready dict of sparsities (fraction removed) and the quantities behind them.
    """
    epsilon = check_epsilon(epsilon, "the caller")
    expected = ranking.dim if spectrum_dim is None else int(spectrum_dim)
    if spectrum.dim != expected:
        raise PrunelimitError(f"the spectrum is over {spectrum.dim} parameters but the model has {expected} "
                              "(hessian.params); was the Hessian taken over another parameter set or model?")
    q, top_up = _theory_spectrum_and_top_up(spectrum, zero_fraction)
    null_total = float(np.sum(q.weights[q.nodes <= ZERO_EIGENVALUE]))  # after the top-up: max(m0, f0)
    exact_null_mass = float(exact_null_mass)
    null_mass = {"slq_found": max(0.0, null_total - top_up - exact_null_mass), "exact_off_support": exact_null_mass,
                 "f0": float(zero_fraction), "top_up": top_up, "total": null_total}
    dim = ranking.dim

    def width_at(s: float) -> float:
        return gaussian_width_sq(q, scale * ranking.distance(s), epsilon)

    a = a_eta(eta)
    s_pred = largest_fixed_point(width_at)
    s_low = largest_fixed_point(width_at, offset=-a * math.sqrt(dim) / dim)
    s_up = largest_fixed_point(width_at, offset=(1.0 + a * math.sqrt(dim)) / dim)
    mean_abs = float(np.sum(q.weights * q.nodes))  # tr|H|/D with the zero mass included
    s_jensen = largest_fixed_point(lambda s: 1.0 / (1.0 + (scale * ranking.distance(s)) ** 2 * mean_abs
                                                    / (2.0 * epsilon)))
    return {
        "predicted_sparsity": s_pred,
        "predicted_density": 1.0 - s_pred,
        "R_at_prediction": scale * ranking.distance(s_pred),
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
        "null_mass": null_mass,
    }


def sparsity_predictor(ranking: MagnitudeRanking, epsilon: float, zero_fraction: float,
                       spectrum_dim: int | None = None) -> Callable[[Quadrature], float]:
    """spectrum → predicted sparsity (the fixed point alone): the functional SLQ converges on."""
    epsilon = check_epsilon(epsilon, "the caller")

    def predict(spectrum: Quadrature) -> float:
        q = theory_spectrum(spectrum, zero_fraction)
        return largest_fixed_point(lambda s: gaussian_width_sq(q, ranking.distance(s), epsilon))

    return predict


# The ε band [ours]: the prediction at the ends of ε's spread over random batch partitions
# (:func:`prunelimit.epsilon.epsilon_spread`).
EPSILON_BAND_PERCENTILES = (10.0, 90.0)


def epsilon_band(ranking: MagnitudeRanking, spectrum: Quadrature, eps_values, *, zero_fraction: float,
                 eta: float = 0.05, spectrum_dim: int | None = None, batch_size: int = 128,
                 **predict_kwargs) -> dict:
    """ε's spread over batch partitions (:func:`prunelimit.epsilon.epsilon_spread`) and the
    prediction at its 10th and 90th percentiles [ours] (JSON-ready). The prediction rises with ε (a
    larger sublevel set), so the 10th percentile gives the band's low end. ``spectrum`` is the raw
    one the prediction uses; ``predict_kwargs`` go to :func:`predict_from_spectrum` as for the
    prediction itself.
    ``batch_size`` is the batch the values were measured with (recorded, not used).
    """
    values = np.asarray(eps_values, np.float64)
    if values.ndim != 1 or values.size < 2:
        raise PrunelimitError(f"the ε band needs at least 2 values of ε, got {values.size}")
    lo, hi = (float(v) for v in np.percentile(values, EPSILON_BAND_PERCENTILES))

    def at(eps: float) -> float:
        return predict_from_spectrum(ranking, spectrum, eps, zero_fraction=zero_fraction, eta=eta,
                                     spectrum_dim=spectrum_dim, **predict_kwargs)["predicted_sparsity"]

    n = int(values.size)
    return {
        "partitions": n,
        "batch_size": int(batch_size),
        "values": values.tolist(),
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)),  # sample sd over the partitions
        "p10": lo,
        "p90": hi,
        "predicted_sparsity_at_p10": at(lo),
        "predicted_sparsity_at_p90": at(hi),
        "rule": f"ε over {n} random partitions of the un-augmented training set into batches of {int(batch_size)}; "
                "predictions at its 10th and 90th percentiles",
    }


# ---------------------------------------------------------------------------------------------
# The report: prediction, curves, the official comparison, SLQ trust, the exact spectrum
# ---------------------------------------------------------------------------------------------


def curves(ranking: MagnitudeRanking, spectrum: Quadrature, epsilon: float, *, zero_fraction: float,
           max_scale: float = 1.0, smoothed: SmoothedSpectrum | None = None) -> dict:
    """The figure curves: R(s) on a sparsity grid and w²(R)/D on a log-spaced R grid covering it."""
    s_grid = np.linspace(0.0, 1.0, CURVE_SPARSITIES)
    r_of_s = ranking.distance(s_grid)
    positive = r_of_s[r_of_s > 0]
    r_top = max(ranking.norm, 1e-12) * max(1.0, max_scale) * 1.25
    r_bottom = 0.5 * positive.min() if positive.size else r_top * 1e-4
    r_grid = np.geomspace(r_bottom, r_top, CURVE_RADII)
    q = theory_spectrum(spectrum, zero_fraction)
    out = {"sparsity_grid": s_grid, "R_of_sparsity": r_of_s, "R_grid": r_grid,
           "gw2_over_D": gaussian_width_sq_curve(q, r_grid, epsilon)}
    if smoothed is not None:
        out["gw2_over_D_official_smoothed"] = np.array([smoothed.gaussian_width_sq(r, epsilon) for r in r_grid])
    return out


def prediction_report(ranking: MagnitudeRanking, spectrum: Quadrature, epsilon: float, *, zero_fraction: float,
                      hessian_settings: HessianSettings, theory_settings: TheorySettings,
                      spectrum_dim: int | None = None, exact_null_mass: float = 0.0) -> dict:
    """Prediction, kinematic bounds, curves and the official smoothed-density comparison.

    ``exact_null_mass``: the share of ``spectrum`` at exactly 0 off a known support
    (:func:`predict_from_spectrum`; ``SLQResult.exact_null_mass``)."""
    eta = float(theory_settings.eta)
    pred = predict_from_spectrum(ranking, spectrum, epsilon, zero_fraction=zero_fraction, eta=eta,
                                 spectrum_dim=spectrum_dim, exact_null_mass=exact_null_mass)
    n_bins, sigma2 = int(hessian_settings.n_bins), float(hessian_settings.sigma2)
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
        s_official = largest_fixed_point(lambda s: smooth.gaussian_width_sq(ranking.distance(s), epsilon))
        official.update(predicted_sparsity=s_official, predicted_density=1.0 - s_official)
    return {
        **pred,
        "official_smoothed": official,
        "spectrum": {"n_nodes": int(spectrum.nodes.size), "lambda_min": spectrum.lambda_min,
                     "lambda_max": spectrum.lambda_max, "dim": spectrum.dim},
        "curves": curves(ranking, spectrum, epsilon, zero_fraction=zero_fraction,
                         max_scale=max(theory_settings.scales), smoothed=smooth),
    }


def slq_report(result, ranking: MagnitudeRanking, epsilon: float, zero_fraction: float,
               spectrum_dim: int | None = None) -> dict:
    """How the SLQ estimate was made and how far to trust it: per-run predictions (their spread is
    the seed-to-seed error; None with one run), the step counts tried and whether every run converged."""
    if isinstance(result, Quadrature):  # an exact spectrum: nothing estimated
        return {"n_runs": 0, "steps": [], "per_run_predicted_sparsity": [], "spread": 0.0, "converged": None,
                "capped": None, "tol": None, "max_iter": None, "predictions_by_steps": None}
    predict = sparsity_predictor(ranking, epsilon, zero_fraction, spectrum_dim)
    per_run = [predict(result.run_quadrature(r)) for r in range(result.n_runs)]  # exact null mass included
    convergence = result.settings.get("convergence", {})
    return {"n_runs": result.n_runs, "steps": [int(m) for m in result.steps],
            "per_run_predicted_sparsity": per_run,
            "spread": float(max(per_run) - min(per_run)) if len(per_run) > 1 else None,  # one run: unknown
            "converged": not convergence.get("capped", True) if convergence else None,
            "capped": convergence.get("capped") if convergence else None,
            "tol": convergence.get("tol"), "max_iter": convergence.get("max_iter"),
            "predictions_by_steps": convergence.get("history")}


def exact_comparison(ranking: MagnitudeRanking, exact: Quadrature, slq_prediction: dict, *,
                     theory_settings: TheorySettings,
                     spectrum_dim: int | None = None) -> dict:
    """The prediction from exact eigenvalues beside the SLQ one (same ε, R(s) and, first, f₀)."""
    eps, f0, eta = slq_prediction["epsilon"], slq_prediction["zero_fraction"], float(theory_settings.eta)
    keys = ("predicted_sparsity", "predicted_density", "lower_sparsity", "upper_sparsity", "gap", "jensen_sparsity",
            "mean_abs_eigenvalue")
    same = predict_from_spectrum(ranking, exact, eps, zero_fraction=f0, eta=eta, spectrum_dim=spectrum_dim)
    raw = predict_from_spectrum(ranking, exact, eps, zero_fraction=0.0, eta=eta, spectrum_dim=spectrum_dim)
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
