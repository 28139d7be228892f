"""Theory: Gaussian width against closed forms and Monte Carlo, R(s) against brute force, the fixed
point against a grid search, kinematic bounds in closed form, Hessian rows against a dense Hessian,
bad ε and bad spectrum files."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline_utils import hessian_with, load_config, theory_with
from prunelimit import epsilon, gaussian_width, hessian, hessian_rows, magnitude_scaling, stages
from prunelimit.data import TensorData
from prunelimit.io import PrunelimitError, save_json
from prunelimit.lanczos import slq
from prunelimit.models import build_model, prunable_parameters
from prunelimit.prune import magnitude_ranking
from prunelimit.settings import PruneSettings
from prunelimit.sparsity import MagnitudeRanking, keep_count
from prunelimit.spectrum import Quadrature, SLQResult, absolute_spectrum, from_eigenvalues, save_exact


def _single(lam: float, dim: int) -> Quadrature:
    return Quadrature(np.array([lam]), np.array([1.0]), dim)


# ---------------------------------------------------------------------------------------------
# Closed forms of the width functional
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [0.0, 0.1, 1.0, 7.5])
def test_equal_eigenvalues_ball_closed_form(radius):
    # All λ equal: the sublevel set is a ball of radius r = √(2ε/λ); w²/D = r²/(R² + r²) = 1/(1 + R²λ/2ε).
    lam, eps, dim = 0.37, 0.02, 500
    expected = 1.0 / (1.0 + radius**2 * lam / (2 * eps))
    width = gaussian_width.gaussian_width_sq(from_eigenvalues(np.full(dim, lam)), radius, eps)
    assert width == pytest.approx(expected, 1e-12)
    r_sq = np.full(3, 2 * eps / lam)  # the ball's squared radius r² = 2ε/λ
    assert np.allclose(gaussian_width.projected_ellipsoid_axes(r_sq, radius) ** 2, expected)


def test_equal_axes_ellipsoid_is_scale_free_in_r_over_radius():
    # An axis-aligned ellipsoid with equal axes r seen from R depends only on r/R.
    eps = 0.5
    for r, radius in [(1.0, 2.0), (3.0, 6.0), (0.01, 0.02)]:
        lam = 2 * eps / r**2
        assert gaussian_width.gaussian_width_sq(_single(lam, 10), radius, eps) == pytest.approx(0.2, 1e-12)


def test_subspace_limit_counts_zero_directions():
    # λ ∈ {0, ∞}: zero directions contribute 1 each, infinite ones 0 — the statistical dimension of a
    # k-dimensional subspace is k, at every R > 0.
    dim, k = 400, 123
    lam = np.concatenate([np.zeros(k), np.full(dim - k, 1e300)])
    for radius in (1e-3, 1.0, 1e3):
        assert gaussian_width.gaussian_width_sq(from_eigenvalues(lam), radius, 0.1) * dim == pytest.approx(k, abs=1e-6)
    # the same through the zero mass f₀ = k/D added to a spectrum of infinite eigenvalues
    q = gaussian_width.theory_spectrum(_single(1e300, dim), k / dim)
    assert gaussian_width.gaussian_width_sq(q, 1.0, 0.1) * dim == pytest.approx(k, abs=1e-6)
    assert gaussian_width.gaussian_width_sq(q, 0.0, 0.1) == pytest.approx(1.0)  # R = 0: the whole space


def test_negative_eigenvalues_enter_by_magnitude():
    q = Quadrature(np.array([-2.0, 3.0]), np.array([0.5, 0.5]), 10)
    expected = 0.5 / (1 + 2.0 / 0.2) + 0.5 / (1 + 3.0 / 0.2)
    assert gaussian_width.gaussian_width_sq(gaussian_width.theory_spectrum(q, 0.0), 1.0, 0.1) == pytest.approx(expected)


def test_circular_cone_statistical_dimension_monte_carlo():
    # Equal axes r at distance R: the cone over the projected set is the circular cone of angle
    # α = arctan(r/R) in R^{D+1}; its statistical dimension δ = E‖Π_C(g)‖² (Amelunxen et al. 2014)
    # lies within [w², w² + 1] of the formula D r²/(R² + r²) = D sin²α.
    rng = np.random.default_rng(0)
    dim, n = 200, 400_000
    g0 = rng.standard_normal(n)
    t = np.sqrt(rng.chisquare(dim, n))  # norm of the D orthogonal components
    for ratio in (0.3, 1.0, 3.0):  # r / R
        alpha = math.atan(ratio)
        phi = np.arctan2(t, g0)  # angle of g from the cone axis
        norm_sq = g0**2 + t**2
        proj_sq = np.where(phi <= alpha, norm_sq,
                           np.where(phi >= alpha + math.pi / 2, 0.0, norm_sq * np.cos(phi - alpha) ** 2))
        delta, se = proj_sq.mean(), proj_sq.std() / math.sqrt(n)
        formula = gaussian_width.gaussian_width_sq(_single(2 * 0.5 / ratio**2, dim), 1.0, 0.5) * dim
        assert formula == pytest.approx(dim * math.sin(alpha) ** 2)
        assert -4 * se <= delta - formula <= 1 + 4 * se, (ratio, delta, formula)


def test_projection_of_ellipsoid_onto_sphere_is_the_ellipsoid_rho():
    # Boundary points y of E = {Σ y²/r² ≤ 1}, seen from distance R and projected radially, satisfy
    # Σ z²(1 + R²/r²) = 1 (the derivation in gaussian_width.projected_ellipsoid_axes).
    rng = np.random.default_rng(1)
    r = 10 ** rng.uniform(-1, 1, 50)
    radius = 1.7
    u = rng.standard_normal((1000, 50))
    y = r * u / np.linalg.norm(u, axis=1, keepdims=True)
    z = y / np.sqrt(radius**2 + (y**2).sum(1, keepdims=True))
    assert np.allclose((z**2 * (1 + radius**2 / r**2)).sum(1), 1.0)


def test_gaussian_width_of_projected_ellipsoid_monte_carlo():
    # w(P)² = (E sup_{z∈P} ⟨g, z⟩)² for P the radial projection of E from distance R, with the sup
    # found numerically over E (KKT family y ∝ g/(1 + β/r²), β ≥ 0, on the boundary of E), against
    # Σ r²/(R² + r²) (the docstring's bound: within max ρ² ≤ 1, here < 1% of the value).
    rng = np.random.default_rng(2)
    dim, n, radius = 300, 1000, 1.0
    r_sq = 10 ** rng.uniform(-2, 2, dim)
    g = rng.standard_normal((n, dim))
    best = np.full(n, -np.inf)
    for beta in np.concatenate([[0.0], np.geomspace(1e-4, 1e4, 801)]):
        y = g / (1 + beta / r_sq)
        y /= np.sqrt((y**2 / r_sq).sum(1, keepdims=True))  # onto the boundary of E
        best = np.maximum(best, (g * y).sum(1) / np.sqrt(radius**2 + (y**2).sum(1)))
    formula = r_sq / (radius**2 + r_sq)
    closed = np.sqrt((formula * g**2).sum(1))  # sup over the ellipsoid with axes ρ
    assert np.all(best <= closed + 1e-9) and np.all(best >= closed * (1 - 1e-4))
    width_sq = best.mean() ** 2
    target = gaussian_width.gaussian_width_sq(from_eigenvalues(2 * 0.5 / r_sq), radius, 0.5) * dim
    assert target == pytest.approx(formula.sum())
    assert width_sq == pytest.approx(target, rel=0.02)
    assert (best**2).mean() == pytest.approx(target, rel=0.02)  # E sup² = Σρ² exactly


# ---------------------------------------------------------------------------------------------
# R(s) and masks
# ---------------------------------------------------------------------------------------------


def test_distance_against_brute_force_mask_and_norm():
    rng = np.random.default_rng(3)
    w = np.round(rng.standard_normal(1001), 1)  # many ties
    w[:50] = 0.0
    ranking = MagnitudeRanking.of(w)
    # ties: of equal |w| the earlier flat index is kept, as a stable descending sort orders them
    reference = torch.sort(torch.from_numpy(np.abs(w)), descending=True, stable=True).indices.numpy()
    assert np.array_equal(ranking.order, reference)
    for s in (0.0, 0.05, 0.1, 1 / 3, 0.5, 0.77, 0.999, 1.0):
        keep = keep_count(w.size, s)
        brute_sq = np.sort(np.abs(w))[::-1][keep:] ** 2  # everything below the keep largest
        assert ranking.distance(s) == pytest.approx(math.sqrt(brute_sq.sum()), rel=1e-12, abs=1e-12)
        mask = ranking.keep_mask(s)
        assert mask.sum() == keep
        assert np.array_equal(np.flatnonzero(mask), np.sort(reference[:keep]))
        assert ranking.distance(s) == pytest.approx(np.linalg.norm(w - w * mask), abs=1e-12)
    grid = np.linspace(0, 1, 11)
    assert np.allclose(ranking.distance(grid), [ranking.distance(s) for s in grid])
    # the threshold weight is the largest removed one
    s = 0.4
    idx = ranking.threshold_index(s)
    assert not ranking.keep_mask(s)[idx]
    assert abs(w[idx]) == np.abs(w[~ranking.keep_mask(s)]).max() == ranking.threshold_magnitude(s)


def test_ranking_rejects_bad_weights():
    with pytest.raises(PrunelimitError, match="non-finite"):
        MagnitudeRanking.of(np.array([1.0, np.nan]))
    with pytest.raises(PrunelimitError, match="no prunable"):
        MagnitudeRanking.of(np.array([]))


# ---------------------------------------------------------------------------------------------
# Fixed points
# ---------------------------------------------------------------------------------------------


def _random_case(seed=4, dim=5000):
    rng = np.random.default_rng(seed)
    nodes = rng.choice([-1, 1], 64) * 10 ** rng.uniform(-6, 1, 64)
    q = Quadrature(nodes, rng.dirichlet(np.ones(64)), dim)
    ranking = MagnitudeRanking.of(rng.standard_normal(dim) * 0.05)
    return q, ranking


def test_fixed_point_against_dense_grid_search():
    q, ranking = _random_case()
    eps, f0, eta = 0.01, 0.1, 0.05
    pred = gaussian_width.predict_from_spectrum(ranking, q, eps, zero_fraction=f0, eta=eta)
    qq = gaussian_width.theory_spectrum(q, f0)
    grid = np.linspace(0, 1, 100_001)
    radii = ranking.distance(grid)
    width = (qq.weights[None, :] / (1 + radii[:, None] ** 2 * qq.nodes[None, :] / (2 * eps))).sum(1)
    a = gaussian_width.a_eta(eta)
    assert a == pytest.approx(math.sqrt(8 * math.log(80)))
    dim = ranking.dim
    for key, offset in [("predicted_sparsity", 0.0), ("lower_sparsity", -a / math.sqrt(dim)),
                        ("upper_sparsity", (1 + a * math.sqrt(dim)) / dim)]:
        ok = width + offset - grid >= 0
        assert ok[0] and not ok[-1]
        assert pred[key] == pytest.approx(grid[np.flatnonzero(ok)[-1]], abs=1e-4), key
    assert pred["lower_sparsity"] <= pred["predicted_sparsity"] <= pred["upper_sparsity"]
    assert pred["gap"] == pytest.approx(pred["upper_sparsity"] - pred["lower_sparsity"])
    assert pred["predicted_density"] == pytest.approx(1 - pred["predicted_sparsity"])
    assert pred["jensen_sparsity"] <= pred["predicted_sparsity"] + 1e-9


def test_prediction_and_kinematic_bounds_closed_form():
    # |w_i| = a for all i, one eigenvalue λ: R(s)² ≈ a² s D and s = 1/(1 + κ s), κ = a² D λ/(2ε), so
    # κ s² + s − 1 = 0; the bounds solve the same quadratic with the kinematic offsets.
    dim, a, eps, lam, eta = 100_000, 0.01, 0.05, 0.06, 0.05
    kappa = a**2 * dim * lam / (2 * eps)
    assert kappa == pytest.approx(6.0)
    w = np.where(np.arange(dim) % 2 == 0, a, -a)
    pred = gaussian_width.predict_from_spectrum(MagnitudeRanking.of(w), _single(lam, dim), eps,
                                        zero_fraction=0.0, eta=eta)
    assert pred["predicted_sparsity"] == pytest.approx(1 / 3, abs=1e-4)  # (−1 + √(1 + 4κ))/(2κ) = 4/12
    c = gaussian_width.a_eta(eta) / math.sqrt(dim)
    low = (-(1 + c * kappa) + math.sqrt((1 + c * kappa) ** 2 + 4 * kappa * (1 - c))) / (2 * kappa)
    d = (1 + gaussian_width.a_eta(eta) * math.sqrt(dim)) / dim
    up = (-(1 - d * kappa) + math.sqrt((1 - d * kappa) ** 2 + 4 * kappa * (1 + d))) / (2 * kappa)
    assert pred["lower_sparsity"] == pytest.approx(low, abs=1e-4)
    assert pred["upper_sparsity"] == pytest.approx(up, abs=1e-4)
    assert pred["jensen_sparsity"] == pytest.approx(pred["predicted_sparsity"], abs=1e-9)  # one eigenvalue: equal


def test_bounds_clip_to_unit_interval():
    # Tiny D: a_η√D > D, so the lower bound clips to 0 and the upper to 1.
    pred = gaussian_width.predict_from_spectrum(MagnitudeRanking.of(np.ones(20)), _single(1.0, 20), 0.1,
                                        zero_fraction=0.0)
    assert pred["lower_sparsity"] == 0.0 and pred["upper_sparsity"] == 1.0
    assert 0 < pred["predicted_sparsity"] < 1


def test_larger_weights_lower_the_predicted_threshold():
    q, ranking = _random_case(seed=5, dim=3000)
    out = magnitude_scaling.magnitude_scaling(ranking, q, 0.01, [1, 2, 3, 4, 5], zero_fraction=0.05,
                                   actual_threshold=lambda c: {"actual_sparsity": 1.0 / c})
    pred = [row["predicted_sparsity"] for row in out["scales"]]
    assert all(a > b for a, b in zip(pred, pred[1:]))
    base = gaussian_width.predict_from_spectrum(ranking, q, 0.01, zero_fraction=0.05)
    assert pred[0] == base["predicted_sparsity"]
    assert out["scales"][2]["actual_sparsity"] == pytest.approx(1 / 3)
    with pytest.raises(PrunelimitError, match="scales"):
        magnitude_scaling.magnitude_scaling(ranking, q, 0.01, [0.0], zero_fraction=0.0)


def test_smoothed_estimate_matches_quadrature_for_narrow_kernel():
    q = Quadrature(np.array([0.5, -2.0]), np.array([0.3, 0.7]), 100)
    smooth = gaussian_width.smoothed_spectrum(q, 0.2, n_bins=20000, sigma2=1e-6)
    exact = gaussian_width.gaussian_width_sq(gaussian_width.theory_spectrum(q, 0.2), 0.8, 0.05)
    assert smooth.gaussian_width_sq(0.8, 0.05) == pytest.approx(exact, abs=1e-4)


# ---------------------------------------------------------------------------------------------
# ε and bad inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -1e-3, float("nan"), float("inf"), "x"])
def test_bad_epsilon_is_a_clear_error(bad):
    with pytest.raises(PrunelimitError, match="epsilon"):
        gaussian_width.check_epsilon(bad, "config theory.epsilon")
    q, ranking = _random_case(dim=200)
    with pytest.raises(PrunelimitError, match="epsilon"):
        gaussian_width.predict_from_spectrum(ranking, q, bad, zero_fraction=0.0)


def test_spectrum_of_another_dimension_is_rejected():
    q, ranking = _random_case(dim=200)
    with pytest.raises(PrunelimitError, match="spectrum is over 201"):
        gaussian_width.predict_from_spectrum(ranking, Quadrature(q.nodes, q.weights, 201), 0.1, zero_fraction=0.0)
    with pytest.raises(PrunelimitError, match="eta"):
        gaussian_width.a_eta(1.5)


def _tiny(seed=0, n=40):
    """A tiny MLP on 2×3 inputs whose pixel 0 is always 0 (its weights have zero Hessian rows)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 2, 3, generator=gen)
    x[:, 0, 0, 0] = 0.0
    y = torch.randint(0, 3, (n,), generator=gen)
    model = build_model("mlp", (1, 2, 3), 3, seed=seed, hidden=[4]).eval()
    with torch.no_grad():
        model.linear[0].weight[:, 0] = 0.0  # like an L1-trained dead input: zero and pruned first
    return model, TensorData(x, y, x[:20].clone(), y[:20].clone(), 3)


def test_loss_tolerance_override_and_measured():
    from prunelimit.train import per_batch_loss_std

    model, data = _tiny(n=64)
    eps, source = epsilon.loss_tolerance(model, data, override=0.25)
    assert (eps, source) == (0.25, "config theory.epsilon")
    eps, source = epsilon.loss_tolerance(model, data, l1=1e-3, seed=3)
    assert eps == per_batch_loss_std(model, data, batch_size=32, l1=1e-3, seed=3)
    assert "batch 32" in source
    with pytest.raises(PrunelimitError, match="epsilon"):
        epsilon.loss_tolerance(model, data, override=-1.0)
    constant = build_model("mlp", (1, 2, 3), 3, hidden=[4]).eval()
    for p in constant.parameters():
        torch.nn.init.zeros_(p)
    with pytest.raises(PrunelimitError, match="epsilon"):  # identical batch losses: ε = 0
        epsilon.loss_tolerance(constant, TensorData(data.x_train, torch.zeros_like(data.y_train), data.x_test,
                                                   data.y_test, 3))


def test_epsilon_spread_is_the_loss_std_over_derived_batch_partitions():
    import zlib

    from prunelimit.train import per_batch_loss_std

    model, data = _tiny(n=300)  # batches of 128, 128 and 44, as a pass over the training set cuts them
    values = epsilon.epsilon_spread(model, data, l1=1e-3, partitions=5, seed=0)
    assert values.shape == (5,) and np.all(values > 0)
    assert len(set(values.tolist())) == 5  # each partition its own shuffle
    assert np.array_equal(values, epsilon.epsilon_spread(model, data, l1=1e-3, partitions=5, seed=0))
    assert not np.array_equal(values, epsilon.epsilon_spread(model, data, l1=1e-3, partitions=5, seed=1))
    for i, value in enumerate(values):
        # the partition's seed computed here, independently: SeedSequence([seed, index, tag]) in [2^62, 2^63)
        state = int(np.random.SeedSequence([0, i, zlib.crc32(b"epsilon_partition")]).generate_state(1, np.uint64)[0])
        seed = (state >> 2) | (1 << 62)
        assert epsilon.epsilon_partition_seed(0, i) == seed and seed >= 2**62  # never a run's own seed
        assert value == per_batch_loss_std(model, data, batch_size=128, l1=1e-3, seed=seed)
    assert values[0] != per_batch_loss_std(model, data, batch_size=128, l1=1e-3, seed=0)  # not the seed-0 pass
    with pytest.raises(PrunelimitError, match="at least 2 batch partitions"):
        epsilon.epsilon_spread(model, data, l1=0.0, partitions=1)


def test_epsilon_band_percentiles_and_predictions_at_them():
    q, ranking = _random_case(dim=2000)
    values = np.random.default_rng(1).uniform(0.005, 0.02, 10)
    band = gaussian_width.epsilon_band(ranking, q, values, zero_fraction=0.05, eta=0.05, spectrum_dim=2000)
    assert band["partitions"] == 10 and band["batch_size"] == 128 and band["values"] == values.tolist()
    assert band["p10"] == np.percentile(values, 10) and band["p90"] == np.percentile(values, 90)
    assert band["mean"] == pytest.approx(values.mean()) and band["sd"] == pytest.approx(values.std(ddof=1))
    for key in ("p10", "p90"):
        direct = gaussian_width.predict_from_spectrum(ranking, q, band[key], zero_fraction=0.05, eta=0.05)
        assert band[f"predicted_sparsity_at_{key}"] == direct["predicted_sparsity"]
    assert band["predicted_sparsity_at_p10"] <= band["predicted_sparsity_at_p90"]  # the prediction rises with ε
    assert "10 random partitions" in band["rule"] and "batches of 128" in band["rule"]
    assert json.loads(json.dumps(band)) == band
    assert "epsilon_band" in gaussian_width.FORMULA_MARKS
    with pytest.raises(PrunelimitError, match="at least 2 values"):
        gaussian_width.epsilon_band(ranking, q, values[:1], zero_fraction=0.05)


# ---------------------------------------------------------------------------------------------
# Hessian rows against a dense autograd Hessian
# ---------------------------------------------------------------------------------------------


def _dense_hessian(model, data, params: str) -> torch.Tensor:
    """Dense float64 Hessian of the mean cross-entropy over the training set (reference)."""
    model = model.double()
    names = [n for n, _ in prunable_parameters(model)] if params == "prunable" else \
        [n for n, p in model.named_parameters() if p.requires_grad]
    base = dict(model.named_parameters())
    shapes = [base[n].shape for n in names]
    flat = torch.cat([base[n].detach().flatten() for n in names])

    def loss(v):
        chunks = torch.split(v, [math.prod(s) for s in shapes])
        new = {**{k: t.detach() for k, t in base.items()}, **{n: c.view(s) for n, c, s in zip(names, chunks, shapes)}}
        out = torch.func.functional_call(model, new, (data.x_train.double(),))
        return F.cross_entropy(out, data.y_train)

    h = torch.autograd.functional.hessian(loss, flat)
    model.float()
    return h


@pytest.mark.parametrize("params", ["prunable", "all"])
def test_hessian_rows_against_dense_autograd_hessian(params):
    model, data = _tiny()
    dense = _dense_hessian(model, data, params)
    ranking = magnitude_ranking(model)
    levels = ranking.dim  # every threshold weight
    rows = hessian_rows.hessian_rows(model, data, hessian_settings=hessian_with({"params": params, "chunk_size": 0}),
                               theory_settings=theory_with({"row_levels": levels, "zero_row_threshold": 1e-7}),
                               ranking=ranking)
    positions = hessian.operator_positions(model, params)[rows.weight_indices]
    expected = dense[torch.as_tensor(positions)].abs().sum(1).numpy()
    assert np.allclose(rows.l1_norms, expected, rtol=1e-4, atol=1e-6)
    assert np.array_equal(rows.weight_indices, [ranking.threshold_index(s) for s in rows.sparsities])
    n_zero = int((expected < 1e-7).sum())
    assert n_zero >= 4  # the dead input's 4 weights (and level 0 repeats the smallest)
    assert rows.zero_fraction == pytest.approx(n_zero / levels)


def test_hessian_rows_roundtrip_and_dimension_check(tmp_path):
    rows = hessian_rows.HessianRows(np.array([0.0, 0.5]), np.array([3, 1]), np.array([0.0, 0.2]), np.array([0.0, 2.5]),
                              1e-7, 10)
    assert rows.zero_fraction == 0.5
    rows.save(tmp_path / "rows.npz")
    back = hessian_rows.HessianRows.load(tmp_path / "rows.npz", dim=10)
    assert np.array_equal(back.l1_norms, rows.l1_norms) and back.zero_fraction == 0.5
    with pytest.raises(PrunelimitError, match="is for 10 weights"):
        hessian_rows.HessianRows.load(tmp_path / "rows.npz", dim=11)
    with pytest.raises(PrunelimitError, match="missing Hessian-rows file"):
        hessian_rows.HessianRows.load(tmp_path / "absent.npz")


def test_predict_from_model_with_exact_spectrum_is_json_ready(tmp_path):
    model, data = _tiny(n=64)
    eig = torch.linalg.eigvalsh(_dense_hessian(model, data, "prunable")).numpy()
    out = stages.predict_from_model(model, data, hessian_settings=hessian_with({"params": "prunable", "n_bins": 2000,
                                                                              "sigma2": 1e-5}),
                                    theory_settings=theory_with({"epsilon": None, "eta": 0.05, "row_levels": 10,
                                                                "scales": [1, 2]}),
                                    spectrum=from_eigenvalues(eig))
    ranking = magnitude_ranking(model)
    direct = gaussian_width.predict_from_spectrum(ranking, from_eigenvalues(eig), out["epsilon"],
                                          zero_fraction=out["zero_fraction"])
    assert out["predicted_sparsity"] == direct["predicted_sparsity"]
    assert out["lower_sparsity"] <= out["predicted_sparsity"] <= out["upper_sparsity"]
    assert out["D"] == ranking.dim and out["zero_rows"]["n_rows"] == 10
    assert out["curves"]["R_grid"][-1] >= 2 * ranking.norm  # covers the scaled R range
    save_json(out, tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text())["bounds"] == "kinematic bounds"


def test_predict_from_model_reports_the_epsilon_band_unless_off():
    model, data = _tiny(n=64)
    eig = torch.linalg.eigvalsh(_dense_hessian(model, data, "prunable")).numpy()
    h = hessian_with({"params": "prunable", "n_bins": 200})
    theory = theory_with({"epsilon": None, "epsilon_partitions": 3, "row_levels": 4})

    def run(**kw):
        return stages.predict_from_model(model, data, hessian_settings=h, spectrum=from_eigenvalues(eig),
                                        l1=1e-3, seed=2, **kw)

    out = run(theory_settings=theory)
    band = out["epsilon_band"]
    assert band["partitions"] == 3 and band["batch_size"] == 32  # 64 samples: ε's batch halved to 2 batches
    assert band["values"] == epsilon.epsilon_spread(model, data, l1=1e-3, batch_size=32, partitions=3,
                                                           seed=2).tolist()
    direct = gaussian_width.predict_from_spectrum(magnitude_ranking(model), from_eigenvalues(eig), band["p90"],
                                                  zero_fraction=out["zero_fraction"])
    assert band["predicted_sparsity_at_p90"] == direct["predicted_sparsity"]
    assert band["predicted_sparsity_at_p10"] <= band["predicted_sparsity_at_p90"]
    assert "epsilon_band" in out["provenance"]["formulas"]
    assert run(theory_settings=theory, epsilon_band=False)["epsilon_band"] is None  # the caller's choice
    assert run(theory_settings=replace(theory, epsilon_partitions=0))["epsilon_band"] is None  # the config's
    assert run(theory_settings=replace(theory, epsilon=0.1))["epsilon_band"] is None  # ε set, not measured


# ---------------------------------------------------------------------------------------------
# Pipeline entry points: files in, files out, bad files stop with a clear error
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def task_files(tmp_path):
    """A tiny trained-task layout: model.pt, metrics.json, data .npz, SLQ and exact spectra."""
    model, data = _tiny(n=64)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    save_json({"model": "mlp", "in_shape": [1, 2, 3], "num_classes": 3, "model_args": {"hidden": [4]},
               "train": {"l1": 0.0, "seed": 0}, "loss_std": 0.1}, tmp_path / "metrics.json")
    np.savez(tmp_path / "data.npz", x_train=data.x_train.numpy(), y_train=data.y_train.numpy(),
             x_test=data.x_test.numpy(), y_test=data.y_test.numpy(), mean=np.zeros(1, np.float32),
             std=np.ones(1, np.float32), num_classes=np.int64(3))
    op = hessian.HessianOperator(model, data.x_train, data.y_train)
    slq(op, 3, 12, seed=0, progress=False).save(tmp_path / "slq.npz")
    eig, settings = stages.exact_spectrum_of_trained(model, data, hessian_with({"params": "prunable"}))
    save_exact(tmp_path / "exact.npz", eig, settings)
    return tmp_path, model


HCFG = hessian_with({"params": "prunable", "chunk_size": 0, "n_bins": 1000, "sigma2": 1e-5})
TCFG = theory_with({"epsilon": None, "epsilon_data": "train_loader", "eta": 0.05, "zero_row_threshold": 1e-7,
                   "row_levels": 6,
        "scales": [1, 2], "scaling_grid": 20})


PCFG = PruneSettings.from_section(load_config()["prune"])  # the sweep rule's criteria; the grid is TCFG's


def _paths(d):
    return {"model_path": d / "model.pt", "metrics_path": d / "metrics.json", "data_path": d / "data.npz"}


def test_rule_functions_write_rows_prediction_with_exact_and_scaling(task_files):
    d, model = task_files
    rows = stages.rows_task(**_paths(d), out_path=d / "rows.npz", hessian_settings=HCFG, theory_settings=TCFG)
    assert len(rows.l1_norms) == 6 and (d / "rows.npz").exists()
    out = stages.theory_task(**_paths(d), slq_path=d / "slq.npz", rows_path=d / "rows.npz",
                             exact_path=d / "exact.npz", out_path=d / "prediction.json", hessian_settings=HCFG,
                             theory_settings=TCFG)
    saved = json.loads((d / "prediction.json").read_text())
    assert saved["predicted_sparsity"] == out["predicted_sparsity"]
    assert saved["lower_sparsity"] <= saved["predicted_sparsity"] <= saved["upper_sparsity"]
    assert saved["zero_fraction"] == rows.zero_fraction
    exact = saved["exact"]
    assert exact["slq_minus_exact"] == pytest.approx(saved["predicted_sparsity"]
                                                     - exact["same_zero_mass"]["predicted_sparsity"])
    assert exact["n_eigenvalues"] == saved["D"]
    assert len(exact["gw2_over_D"]) == len(saved["curves"]["R_grid"])
    assert saved["provenance"]["spectrum_file"].endswith("slq.npz")
    scaling = stages.scaling_task(**_paths(d), slq_path=d / "slq.npz", prediction_path=d / "prediction.json",
                                  out_path=d / "scaling.json", hessian_settings=HCFG, theory_settings=TCFG,
                                  prune_settings=PCFG)
    rows_out = json.loads((d / "scaling.json").read_text())["scales"]
    assert [r["scale"] for r in rows_out] == [1.0, 2.0]
    assert rows_out[0]["predicted_sparsity"] == pytest.approx(saved["predicted_sparsity"])
    assert rows_out[1]["predicted_sparsity"] <= rows_out[0]["predicted_sparsity"]
    assert all(0.0 <= r["actual_sparsity"] <= 1.0 for r in scaling["scales"])
    # scaling by 1 is the model itself: its curve starts at the model's own test accuracy
    from prunelimit.train import evaluate

    _, data = _tiny(n=64)
    assert scaling["scales"][0]["dense_test_acc"] == evaluate(model, data.x_test, data.y_test)[1]
    assert len(scaling["scales"][0]["curve"]) == TCFG.scaling_grid


def test_missing_or_inconsistent_spectrum_file_stops(task_files):
    d, model = task_files
    with pytest.raises(PrunelimitError, match="missing SLQ result file"):
        stages.load_spectrum(d / "absent.npz", kind="slq", model=model, hessian_settings=HCFG)
    with pytest.raises(PrunelimitError, match="missing exact spectrum file"):
        stages.load_spectrum(d / "absent.npz", kind="exact", model=model, hessian_settings=HCFG)
    (d / "garbage.npz").write_bytes(b"not an npz")
    with pytest.raises(PrunelimitError, match="garbage.npz"):
        stages.load_spectrum(d / "garbage.npz", kind="slq", model=model, hessian_settings=HCFG)
    res = SLQResult.load(d / "slq.npz")
    wrong_dim = SLQResult(res.ritz_values, res.ritz_weights, res.alphas, res.betas, res.dim + 1,
                                  {**res.settings, "dim": res.dim + 1}, res.steps)
    wrong_dim.save(d / "other.npz")
    with pytest.raises(PrunelimitError, match=r"other.npz is over 37 parameters, but the model has 36"):
        stages.load_spectrum(d / "other.npz", kind="slq", model=model, hessian_settings=HCFG)
    with pytest.raises(PrunelimitError, match="params='prunable'"):
        stages.load_spectrum(d / "slq.npz", kind="slq", model=model, hessian_settings=replace(HCFG, params="all"))
    save_exact(d / "short.npz", np.ones(5), {})
    with pytest.raises(PrunelimitError, match="short.npz is over 5 parameters"):
        stages.load_spectrum(d / "short.npz", kind="exact", model=model, hessian_settings=HCFG)
    stages.rows_task(**_paths(d), out_path=d / "rows.npz", hessian_settings=HCFG, theory_settings=TCFG)
    with pytest.raises(PrunelimitError, match="missing SLQ result file"):
        stages.theory_task(**_paths(d), slq_path=d / "absent.npz", rows_path=d / "rows.npz",
                           out_path=d / "p.json", hessian_settings=HCFG, theory_settings=TCFG)
    assert not (d / "p.json").exists()


def test_non_positive_epsilon_in_config_stops_the_theory_rule(task_files):
    d, _ = task_files
    stages.rows_task(**_paths(d), out_path=d / "rows.npz", hessian_settings=HCFG, theory_settings=TCFG)
    for bad in (0.0, -0.5):
        with pytest.raises(PrunelimitError, match="epsilon from config theory.epsilon must be finite and > 0"):
            stages.theory_task(**_paths(d), slq_path=d / "slq.npz", rows_path=d / "rows.npz", out_path=d / "p.json",
                               hessian_settings=HCFG, theory_settings=replace(TCFG, epsilon=bad))
    assert not (d / "p.json").exists()


def test_official_smoothed_estimate_is_undefined_not_fatal_when_kernels_miss_the_grid():
    # Two far-apart nodes, 5 grid points and a vanishing kernel: the smoothed density is zero on
    # every grid point. The comparison becomes None; the prediction itself is unaffected.
    rng = np.random.default_rng(0)
    ranking = MagnitudeRanking.of(rng.normal(size=400))
    spectrum = Quadrature(np.array([0.0137, 97.31]), np.array([0.5, 0.5]), 400)
    out = gaussian_width.prediction_report(ranking, spectrum, 0.01, zero_fraction=0.0,
                                           hessian_settings=hessian_with({"n_bins": 5, "sigma2": 1e-12}),
                                           theory_settings=theory_with({"eta": 0.05}))
    assert out["official_smoothed"]["predicted_sparsity"] is None
    assert "undefined" in out["official_smoothed"]["note"]
    assert 0.0 < out["predicted_sparsity"] < 1.0
    assert "gw2_over_D_official_smoothed" not in out["curves"]


# ---------------------------------------------------------------------------------------------
# The zero-eigenvalue mass: f₀ tops up what SLQ found, it is not added on top
# ---------------------------------------------------------------------------------------------


def test_top_up_raises_the_null_mass_to_f0_and_keeps_the_rest_in_proportion():
    from prunelimit.spectrum import top_up_zero_mass

    # SLQ found 30% at (numerically) zero; the Hessian rows say 40%: 10% is added, the rest shrinks 0.6/0.7
    q = Quadrature(np.array([3e-9, 0.5, 2.0]), np.array([0.3, 0.4, 0.3]), 100)
    topped, added = top_up_zero_mass(q, 0.4, null_threshold=1e-6, zero_value=1e-30)
    assert added == pytest.approx(0.1)
    np.testing.assert_allclose(topped.nodes, [1e-30, 0.5, 2.0, 1e-30])
    np.testing.assert_allclose(topped.weights, [0.3, 0.4 * 0.6 / 0.7, 0.3 * 0.6 / 0.7, 0.1])
    # equal to the exact spectrum with 40% zeros and the same shape above
    eig = np.concatenate([np.zeros(40), np.full(60 * 4 // 7, 0.5), np.full(60 * 3 // 7 + 1, 2.0)])
    f = lambda lam: 1.0 / (1.0 + np.abs(lam) / 0.3)  # noqa: E731
    assert topped.trace_f(f) == pytest.approx(from_eigenvalues(eig).trace_f(f), rel=1e-2)
    # f₀ below what SLQ found changes nothing but the placement of the null nodes
    same, added = top_up_zero_mass(q, 0.2, null_threshold=1e-6)
    assert added == 0.0 and np.allclose(same.weights, q.weights) and same.nodes[0] == 1e-30


def _dead_inputs_model():
    """An MLP whose 7 of 16 input pixels are always 0 with zeroed weights: 56 of 152 Hessian rows are
    exactly zero (the weights an L1-trained net has killed), trained a little on the live pixels."""
    from prunelimit.train import TrainConfig, train

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 1, 4, 4, generator=gen)
    dead = [0, 1, 2, 3, 4, 8, 12]
    x.view(200, 16)[:, dead] = 0.0
    y = (x.view(200, 16) @ torch.randn(16, 3, generator=gen)).argmax(1)
    data = TensorData(x, y, x[:50].clone(), y[:50].clone(), 3)
    model = build_model("mlp", (1, 4, 4), 3, seed=0, hidden=[8])
    train(model, data, TrainConfig(epochs=30, batch_size=32, lr=0.05, l1=1e-3), progress=False)
    with torch.no_grad():
        model.linear[0].weight[:, dead] = 0.0
    return model.eval(), data


def test_slq_plus_f0_matches_the_exact_spectrum_on_a_model_with_zero_hessian_rows():
    model, data = _dead_inputs_model()
    op = hessian.HessianOperator(model, data.x_train, data.y_train)
    ranking = magnitude_ranking(model)
    eps, _ = epsilon.loss_tolerance(model, data)
    rows = hessian_rows.hessian_rows(model, data, hessian_settings=hessian_with({"params": "prunable"}),
                                theory_settings=theory_with({"row_levels": 50}),
                               ranking=ranking, operator=op)
    assert 0.3 <= rows.zero_fraction <= 56 / 152  # the rows see the dead weights (never more than there are)
    exact = gaussian_width.sparsity_predictor(ranking, eps, 0.0)(from_eigenvalues(hessian.exact_eigenvalues(op)))
    # every run to its invariant subspace, so the only error left is the stochastic trace estimate
    result = slq(op, n_runs=60, n_iter=op.dim, seed=1, progress=False)
    with_f0 = gaussian_width.sparsity_predictor(ranking, eps, rows.zero_fraction)(result.quadrature())
    assert abs(with_f0 - exact) < 0.005
    assert 0.1 < exact < 0.99  # a prediction the zero mass can move
    # the official rescale-and-add counts the null mass SLQ found a second time: far off
    q = absolute_spectrum(result.quadrature())
    f0 = rows.zero_fraction
    doubled = Quadrature(np.append(q.nodes, 1e-30), np.append(q.weights * (1 - f0), f0), q.dim)
    official = gaussian_width.largest_fixed_point(
        lambda s: gaussian_width.gaussian_width_sq(doubled, ranking.distance(s), eps))
    assert official - exact > 0.03
