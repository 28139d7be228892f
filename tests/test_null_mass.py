"""The null mass off a known support enters SLQ exactly, at λ = 0, and f₀ tops up only the rest."""

import json

import numpy as np
import pytest
import torch

from prunelimit import gaussian_width
from prunelimit.io import PrunelimitError
from prunelimit.lanczos import slq
from prunelimit.sparsity import MagnitudeRanking
from prunelimit.spectrum import Quadrature, SLQResult, from_eigenvalues, top_up_zero_mass, with_exact_null_mass

D, NULL = 400, 150  # 150 coordinates whose rows and columns are exactly zero


def _toy(seed=0):
    """An indefinite symmetric H (D = 400): zero on 150 random coordinates, a random spectrum on the rest."""
    rng = np.random.default_rng(seed)
    support = np.sort(rng.choice(D, D - NULL, replace=False))
    eig = np.concatenate([rng.uniform(-1.0, 0.0, 50), rng.uniform(0.0, 10.0, D - NULL - 50)])
    basis, _ = np.linalg.qr(rng.standard_normal((D - NULL, D - NULL)))
    H = np.zeros((D, D))
    H[np.ix_(support, support)] = (basis * eig) @ basis.T
    return (H + H.T) / 2, support


class _OnSupport:
    """The toy operator on its support alone: what ``on_support()`` returns."""

    def __init__(self, H, support):
        self.block = torch.tensor(H[np.ix_(support, support)])
        self.index = torch.as_tensor(support)
        self.dim, self.dtype, self.device = len(support), torch.float64, torch.device("cpu")
        self.null_mass = (len(H) - len(support)) / len(H)

    def compress(self, v):
        return v[self.index]

    def matvec(self, x):
        return self.block @ x


class Dense:
    """A dense float64 matrix as an operator; with ``support`` it also tells Lanczos where H lives."""

    def __init__(self, H, support=None):
        self.H, self.support = H, support
        self.matrix = torch.tensor(H)
        self.dim, self.dtype, self.device = len(H), torch.float64, torch.device("cpu")

    def matvec(self, v):
        return self.matrix @ v

    def on_support(self):
        return None if self.support is None else _OnSupport(self.H, self.support)

    def describe(self):
        return {}  # nothing to record beside SLQ's own settings


STEPS, RUNS, EPS = 120, 30, 10.0


def test_exact_null_mass_on_an_indefinite_toy_matches_the_exact_eigenvalues():
    H, support = _toy()
    eigenvalues = np.linalg.eigvalsh(H)
    lambda_max = np.abs(eigenvalues).max()
    threshold = gaussian_width.NULL_RELATIVE * lambda_max
    f0 = NULL / D
    ranking = MagnitudeRanking.of(np.random.default_rng(1).standard_normal(D))
    exact = gaussian_width.predict_from_spectrum(ranking, from_eigenvalues(eigenvalues), EPS, zero_fraction=f0)
    assert 0.45 < exact["predicted_sparsity"] < 0.65  # mid-range: the null mass and the rest both matter

    # the problem: on the whole space the null share sits on a Ritz node that 0 is interior to (H is
    # indefinite); after 120 steps it is still 1e-5·λmax away, above the null threshold, so f₀ is
    # topped up beside it and the same mass counts twice
    full = slq(Dense(H), n_runs=RUNS, n_iter=STEPS, seed=0, progress=False)
    assert full.exact_null_mass == 0.0
    theta, tau = full.ritz_values[0], full.ritz_weights[0]
    low = np.argmin(np.abs(theta))
    assert abs(theta[low]) > 5 * threshold and tau[low] == pytest.approx(f0, abs=0.01)
    doubled = gaussian_width.predict_from_spectrum(ranking, full.quadrature(), EPS, zero_fraction=f0)
    assert doubled["null_mass"]["top_up"] > 0.2
    assert doubled["predicted_sparsity"] - exact["predicted_sparsity"] > 0.1

    # the fix: Lanczos on the support, the share off it exactly at 0, nothing left to top up
    result = slq(Dense(H, support), n_runs=RUNS, n_iter=STEPS, seed=0, progress=False)
    assert result.settings["exact_null_mass"] == NULL / D == result.exact_null_mass
    q = result.quadrature()
    assert q.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert q.nodes[-1] == 0.0 and q.weights[-1] == NULL / D
    assert np.abs(result.ritz_values).min() > threshold  # no Ritz node carries the null share
    ours = gaussian_width.predict_from_spectrum(ranking, q, EPS, zero_fraction=f0,
                                                exact_null_mass=result.exact_null_mass)
    assert ours["predicted_sparsity"] == pytest.approx(exact["predicted_sparsity"], abs=0.005)
    assert ours["null_mass"] == {"slq_found": 0.0, "exact_off_support": NULL / D, "f0": f0, "top_up": 0.0,
                                 "total": pytest.approx(NULL / D, abs=1e-12)}
    # each run's own rule carries the exact share too (the per-run predictions of slq_report)
    for r in range(RUNS):
        rule = result.run_quadrature(r)
        assert rule.nodes[-1] == 0.0 and rule.weights[-1] == NULL / D
        assert rule.weights.sum() == pytest.approx(1.0, abs=1e-12)
    report = gaussian_width.slq_report(result, ranking, EPS, f0)
    assert np.mean(report["per_run_predicted_sparsity"]) == pytest.approx(exact["predicted_sparsity"], abs=0.01)


def test_converging_slq_sees_the_exact_null_mass():
    H, support = _toy()
    seen = []

    def functional(q):
        seen.append((q.nodes[-1], q.weights[-1], q.weights.sum()))
        return 0.0

    slq(Dense(H, support), n_runs=1, n_iter=8, max_iter=32, predict=functional, tol=0.5, progress=False)
    assert seen and all(node == 0.0 and weight == NULL / D and total == pytest.approx(1.0)
                        for node, weight, total in seen)


def test_slq_result_round_trips_the_exact_null_mass_and_old_files_read_zero(tmp_path):
    H, support = _toy()
    result = slq(Dense(H, support), n_runs=2, n_iter=20, seed=4, progress=False)
    result.save(tmp_path / "slq.npz", n_bins=200, sigma2=1e-5)
    back = SLQResult.load(tmp_path / "slq.npz")
    assert back.exact_null_mass == result.exact_null_mass == NULL / D
    assert back.quadrature().weights.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(back.quadrature().nodes, result.quadrature().nodes)
    np.testing.assert_array_equal(back.quadrature().weights, result.quadrature().weights)
    # a file written before the key existed: no exact share, the Ritz rule as it was
    old = {k: v for k, v in result.settings.items() if k != "exact_null_mass"}
    arrays = {"ritz_values": result.ritz_values, "ritz_weights": result.ritz_weights, "alphas": result.alphas,
              "betas": result.betas, "steps": result.steps, "dim": result.dim, "settings": np.array(json.dumps(old))}
    np.savez(tmp_path / "old.npz", **arrays)
    legacy = SLQResult.load(tmp_path / "old.npz")
    assert legacy.exact_null_mass == 0.0 and legacy.quadrature().nodes.size == result.ritz_values.size
    assert legacy.quadrature().weights.sum() == pytest.approx(1.0, abs=1e-12)


def test_with_exact_null_mass_adds_one_node_at_zero_and_scales_the_rest():
    q = Quadrature(np.array([-1.0, 2.0]), np.array([0.25, 0.75]), 10)
    assert with_exact_null_mass(q, 0.0) is q
    out = with_exact_null_mass(q, 0.4)
    np.testing.assert_array_equal(out.nodes, [-1.0, 2.0, 0.0])
    np.testing.assert_allclose(out.weights, [0.25 * 0.6, 0.75 * 0.6, 0.4])
    assert out.dim == 10
    with pytest.raises(PrunelimitError, match="exact null mass"):
        with_exact_null_mass(q, 1.5)


def test_f0_tops_up_only_what_the_exact_share_and_the_null_ritz_nodes_leave():
    # 30% exact null mass, 10% on a near-null Ritz node; the Hessian rows say 50%: only 10% is added
    q = with_exact_null_mass(Quadrature(np.array([3e-9, 0.5, 2.0]), np.array([1 / 7, 3 / 7, 3 / 7]), 100), 0.3)
    topped, added = top_up_zero_mass(q, 0.5, null_threshold=1e-6, zero_value=1e-30)
    assert added == pytest.approx(0.1)
    np.testing.assert_allclose(topped.nodes, [1e-30, 0.5, 2.0, 1e-30, 1e-30])
    np.testing.assert_allclose(topped.weights, [0.1, 0.3 * 0.5 / 0.6, 0.3 * 0.5 / 0.6, 0.3, 0.1])
    # f₀ below what is found (0.4): nothing added
    same, added = top_up_zero_mass(q, 0.35, null_threshold=1e-6)
    assert added == 0.0 and np.array_equal(same.weights, q.weights)
    # the exact 0 node is null even at a zero threshold (all of H null: λmax = 0); 3e-9 then is not
    same, added = top_up_zero_mass(q, 0.35, null_threshold=0.0)
    assert added == pytest.approx(0.05) and same.nodes[3] == 1e-30 and same.nodes[0] == 3e-9
    ranking = MagnitudeRanking.of(np.random.default_rng(0).standard_normal(100))
    pred = gaussian_width.predict_from_spectrum(ranking, q, 0.1, zero_fraction=0.5, exact_null_mass=0.3)
    assert pred["null_mass"] == {"slq_found": pytest.approx(0.1), "exact_off_support": 0.3, "f0": 0.5,
                                 "top_up": pytest.approx(0.1), "total": pytest.approx(0.5)}
