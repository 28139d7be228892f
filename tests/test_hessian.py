"""Hessian operator, Lanczos and SLQ against dense float64 Hessians from torch.func.hessian."""

import json
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from pipeline_utils import hessian_with, load_config, snakemake, write_config
from prunelimit.checkpoint import save_torch
from prunelimit.data import TensorData, load_tensors, prepare_dataset
from prunelimit.gaussian_width import predict_from_spectrum, width_kernel
from prunelimit.hessian import HessianOperator, exact_eigenvalues, exact_hessian
from prunelimit.io import PrunelimitError, save_json
from prunelimit.lanczos import Lanczos, slq
from prunelimit.models import build_model, count_prunable, prunable_parameters
from prunelimit.settings import HessianSettings
from prunelimit.sparsity import MagnitudeRanking
from prunelimit.spectrum import SLQResult, from_eigenvalues, load_exact, save_exact
from prunelimit.stages import exact_spectrum_of_trained, spectrum_of_trained
from prunelimit.train import TrainConfig, load_trained, train

N_SAMPLES = 300  # a subset of digits keeps every dense Hessian small and fast
N_CNN = 120  # float64 convolutions are slow on CPU: the CNN's Hessians use fewer samples


class TinyCNN(nn.Module):
    """Two conv-BN-ReLU blocks and a classifier: BatchNorm checks that products use eval mode."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),  # 8×8 → 6×6 → 3×3
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        )
        self.linear = nn.Linear(4, 10)

    def forward(self, x):
        return self.linear(self.conv(x).flatten(1))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = prepare_dataset("digits", tmp_path_factory.mktemp("data") / "digits.npz", progress=False)
    full = load_tensors(path)
    return TensorData(full.x_train[:N_SAMPLES], full.y_train[:N_SAMPLES], full.x_test, full.y_test, 10)


def _trained(kind, digits):
    torch.manual_seed(0)
    model = build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[12, 8]) if kind == "mlp" else TinyCNN()
    train(model, digits, TrainConfig(epochs=8, lr=0.05, batch_size=64, seed=0), progress=False)
    return model.eval()


@pytest.fixture(scope="module")
def nets(digits):
    """Briefly trained nets in float64, with the float64 samples their Hessians are taken over."""
    x64, y = digits.x_train.double(), digits.y_train
    return {"mlp": (_trained("mlp", digits).double(), x64, y),
            "cnn": (_trained("cnn", digits).double(), x64[:N_CNN], y[:N_CNN])}


def dense_hessian(model, x, y, params):
    """Independent ground truth: torch.func.hessian (forward-over-reverse) of a flat-vector loss."""
    model.eval()
    named = prunable_parameters(model) if params == "prunable" else list(model.named_parameters())
    names = [n for n, _ in named]
    shapes, sizes = [p.shape for _, p in named], [p.numel() for _, p in named]
    fixed = {**{k: v.detach() for k, v in model.named_parameters()}, **dict(model.named_buffers())}
    theta0 = torch.cat([p.detach().reshape(-1) for _, p in named])

    def loss(theta):
        parts = {n: t.view(s) for n, t, s in zip(names, theta.split(sizes), shapes)}
        return F.cross_entropy(functional_call(model, {**fixed, **parts}, (x,)), y)

    return torch.func.hessian(loss)(theta0)


@pytest.fixture(scope="module")
def references(nets):
    return {(kind, params): dense_hessian(*nets[kind], params)
            for kind in ("mlp", "cnn") for params in ("prunable", "all")}


def _rel(a, b):
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


# ---------------------------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("params", ["prunable", "all"])
def test_hvp_matches_dense_float64_hessian(kind, params, nets, references):
    model, x, y = nets[kind]
    model.train()  # the operator must switch to eval mode (BN running statistics) by itself
    op = HessianOperator(model, x, y, params=params)
    assert model.training  # … and leave the caller's mode as it was
    model.eval()
    H = references[kind, params]
    assert op.dim == H.shape[0]
    assert op.dim == (count_prunable(model) if params == "prunable" else sum(p.numel() for p in model.parameters()))
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
        assert _rel(op.matvec(v), H @ v) < 1e-5
    V = torch.randn(op.dim, 4, generator=gen, dtype=torch.float64)
    assert _rel(op.matmat(V), H @ V) < 1e-5


@pytest.mark.parametrize("params", ["prunable", "all"])
def test_mlp_products_leave_out_units_that_are_zero_on_every_sample(digits, params):
    """Units never active (a ReLU off on every sample, an input pixel always 0) have zero Hessian rows
    and columns: the operator takes its products on the MLP without them, and they still equal the
    whole net's dense Hessian (and the operator that keeps every unit)."""
    x, y = digits.x_train[:80].double().clone(), digits.y_train[:80]
    x[:, 0, 0, :3] = 0.0  # three input pixels 0 on every sample
    model = build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[12, 8]).double().eval()
    with torch.no_grad():
        model.linear[0].bias[[2, 5, 7]] = -1e3  # three hidden units of each layer never active
        model.linear[2].bias[[0, 3, 6]] = -1e3
    first, second = model.linear[0], model.linear[2]
    with torch.no_grad():  # units active on some sample, from the model's own modules
        active1 = (first(x.flatten(1)) > 0).any(0)
        active2 = (second(torch.relu(first(x.flatten(1)))) > 0).any(0)
    op = HessianOperator(model, x, y, params=params)
    whole = HessianOperator(model, x, y, params=params, skip_dead_units=False)
    assert op._live_units is not None and whole._live_units is None
    assert op._live_units.kept_units == [int(active1.sum()), int(active2.sum())] and active1.sum() <= 9
    kept = (61 * int(active1.sum()) + int(active1.sum()) * int(active2.sum()) + int(active2.sum()) * 10
            + (int(active1.sum()) + int(active2.sum()) + 10 if params == "all" else 0))
    assert len(op._live_units.gather) == kept < op.dim
    H = dense_hessian(model, x, y, params)
    dropped = torch.ones(op.dim, dtype=torch.bool)
    dropped[op._live_units.gather] = False
    assert torch.all(H[dropped] == 0) and torch.all(H[:, dropped] == 0)  # why leaving them out is exact
    gen = torch.Generator().manual_seed(8)
    for _ in range(3):
        v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
        assert _rel(op.matvec(v), H @ v) < 1e-10
        assert _rel(op.matvec(v), whole.matvec(v)) < 1e-12
    assert op.loss == pytest.approx(whole.loss, rel=1e-13)
    assert torch.equal(op.support, torch.nonzero(~dropped).squeeze(1))
    assert _rel(exact_hessian(op, block=100), H) < 1e-10  # only the support's columns computed
    eig = exact_eigenvalues(op)
    assert np.sum(eig == 0) >= int(dropped.sum())  # the dropped rows' eigenvalues, exactly 0
    np.testing.assert_allclose(eig, torch.linalg.eigvalsh(H).numpy(), atol=1e-10 * np.abs(eig).max())
    # Lanczos on the support alone, the rest an exact null mass (D − |S|)/D at λ = 0
    on_support = op.on_support()
    assert on_support.dim == kept and whole.on_support() is None
    assert on_support.null_mass == (op.dim - kept) / op.dim
    v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
    compressed = on_support.compress(v)
    assert torch.equal(compressed, v[op._live_units.gather])
    assert _rel(on_support.matvec(compressed), on_support.compress(H @ v)) < 1e-10
    ours, reference = (slq(o, n_runs=2, n_iter=40, seed=3, progress=False) for o in (op, whole))
    assert np.array_equal(ours.steps, reference.steps) and ours.dim == reference.dim == op.dim
    assert ours.exact_null_mass == (op.dim - kept) / op.dim and reference.exact_null_mass == 0.0
    assert ours.quadrature().nodes.size == ours.ritz_values.size + 1  # one node at exactly 0
    # both are 40-node Gauss rules of the same start vectors' spectral measures: exact, so equal, on
    # every polynomial of degree < 80 (the null part through its mass alone)
    scale = np.abs(eig).max()
    for k in range(5):
        for r in range(2):
            assert ours.run_quadrature(r).trace_f(lambda lam, k=k: (lam / scale) ** k) == pytest.approx(
                reference.run_quadrature(r).trace_f(lambda lam, k=k: (lam / scale) ** k), rel=1e-8, abs=1e-12)
        assert ours.trace_f(lambda lam, k=k: (lam / scale) ** k) == pytest.approx(
            reference.trace_f(lambda lam, k=k: (lam / scale) ** k), rel=1e-8, abs=1e-12)
    # run to their invariant subspaces, both are exact on any functional: the width kernel, the
    # prediction (the whole operator's null node converged to 0 here: nothing for f₀ to double)
    ours, reference = (slq(o, n_runs=2, n_iter=op.dim, seed=3, progress=False) for o in (op, whole))
    eps = 1e-3
    for radius in (0.1, 1.0, 10.0):
        kernel = lambda lam, radius=radius: width_kernel(lam, radius, eps)  # noqa: E731
        assert ours.trace_f(kernel) == pytest.approx(reference.trace_f(kernel), rel=1e-8)
    ranking = MagnitudeRanking.of(op.flat_params().numpy())
    f0 = (op.dim - kept) / op.dim
    ours_pred, reference_pred = (predict_from_spectrum(ranking, q, eps, zero_fraction=f0, exact_null_mass=m)
                                 for q, m in ((ours.quadrature(), ours.exact_null_mass), (reference.quadrature(), 0.0)))
    assert ours_pred["predicted_sparsity"] == pytest.approx(reference_pred["predicted_sparsity"], abs=1e-6)
    assert 0.4 < ours_pred["predicted_sparsity"] < 0.99
    assert ours_pred["null_mass"]["exact_off_support"] == f0 and ours_pred["null_mass"]["top_up"] == 0.0
    assert ours_pred["null_mass"]["total"] == pytest.approx(reference_pred["null_mass"]["total"], abs=1e-8)


class BatchNormZoo(nn.Module):
    """Every BatchNorm placement the folding must handle: after a conv with and without bias, on the
    input (nothing to fold into), without affine parameters, after a linear layer, and one without
    running statistics (batch statistics even in eval mode: left to the module)."""

    def __init__(self, running_stats_last: bool = True):
        super().__init__()
        self.bn_in = nn.BatchNorm2d(1)
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.bn1 = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 4, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(4, affine=False)
        self.fc = nn.Linear(16, 6)
        self.bn3 = nn.BatchNorm1d(6, track_running_stats=running_stats_last)
        self.out = nn.Linear(6, 10)

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(self.bn_in(x))))  # 8×8 → 6×6
        h = F.max_pool2d(torch.relu(self.bn2(self.conv2(h))), 2)  # → 4×4 → 2×2
        return self.out(torch.relu(self.bn3(self.fc(h.flatten(1)))))


def _zoo(running_stats_last=True):
    torch.manual_seed(5)
    model = BatchNormZoo(running_stats_last).double()
    with torch.no_grad():  # running statistics and affine parameters far from 0 / 1, so folding matters
        for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            if bn.running_mean is not None:
                bn.running_mean.uniform_(-1, 1)
                bn.running_var.uniform_(0.3, 3)
            if bn.weight is not None:
                bn.weight.uniform_(0.3, 3)
                bn.bias.uniform_(-1, 1)
    return model.eval()


def _module_double_backward(model, x, y, params, v):
    """H·v by double backward through the model as written (BatchNorm's own kernels)."""
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    parts = [t.view_as(p) for t, p in zip(v.split([p.numel() for p in params]), params)]
    return torch.cat([h.reshape(-1) for h in torch.autograd.grad(grads, params, grad_outputs=parts)])


def _graph_node_names(roots):
    seen, stack, names = set(), [t.grad_fn for t in roots], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.add(type(fn).__name__)
        stack.extend(f for f, _ in fn.next_functions)
    return names


@pytest.mark.parametrize("params", ["prunable", "all"])
def test_folded_batchnorm_products_equal_module_double_backward(digits, params):
    """Eval BatchNorm folded into its layer (hessian_graph.FoldEvalBatchNorm) changes only rounding."""
    x, y = digits.x_train[:64].double(), digits.y_train[:64]
    model = _zoo()
    op = HessianOperator(model, x, y, params=params)
    chunked = HessianOperator(model, x, y, params=params, chunk_size=24)
    names = _graph_node_names(op._grads)
    # folded: no BatchNorm kernel is left in the graph; the unfoldable one on the input became addcmul
    assert not any("BatchNorm" in n for n in names) and "AddcmulBackward0" in names
    wanted = prunable_parameters(model) if params == "prunable" else list(model.named_parameters())
    gen = torch.Generator().manual_seed(6)
    for _ in range(2):
        v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
        ref = _module_double_backward(model, x, y, [p for _, p in wanted], v)
        assert _rel(op.matvec(v), ref) < 1e-12
        assert _rel(chunked.matvec(v), ref) < 1e-12
    assert op.loss == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-13)


def test_batchnorm_without_running_statistics_is_left_to_the_module(digits):
    x, y = digits.x_train[:64].double(), digits.y_train[:64]
    model = _zoo(running_stats_last=False)  # bn3 normalises by the batch's statistics even in eval mode
    op = HessianOperator(model, x, y, params="all")
    assert "NativeBatchNormBackward0" in _graph_node_names(op._grads)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    ref = _module_double_backward(model, x, y, list(model.parameters()), v)
    assert _rel(op.matvec(v), ref) < 1e-12


def test_flat_params_follow_prunable_order(nets):
    model, x, y = nets["mlp"]
    op = HessianOperator(model, x, y)
    expected = torch.cat([p.detach().flatten() for _, p in prunable_parameters(model)])
    assert torch.equal(op.flat_params(), expected)
    assert op.params == [p for _, p in prunable_parameters(model)]


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_chunked_products_equal_unchunked(kind, nets):
    model, x, y = nets[kind]
    whole = HessianOperator(model, x, y, params="all")
    # unequal chunks: 4 × 70 + 20 samples (mlp), 70 + 50 (cnn)
    chunked = HessianOperator(model, x, y, params="all", chunk_size=70)
    assert not chunked.cached and whole.cached
    assert chunked.loss == pytest.approx(whole.loss, rel=1e-12)
    v = torch.randn(whole.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert _rel(chunked.matvec(v), whole.matvec(v)) < 1e-10


def test_vmap_matmat_equals_column_loop(nets):
    model, x, y = nets["mlp"]
    looped, batched = HessianOperator(model, x, y), HessianOperator(model, x, y, vmap_matmat=True)
    V = torch.randn(looped.dim, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert _rel(batched.matmat(V), looped.matmat(V)) < 1e-10
    assert batched.products == looped.products == 5


def test_exact_hessian_and_eigenvalues(nets, references):
    model, x, y = nets["mlp"]
    op = HessianOperator(model, x, y)
    H = exact_hessian(op, block=300)  # several column blocks
    ref = references["mlp", "prunable"]
    assert torch.equal(H, H.t())
    assert _rel(H, ref) < 1e-8
    eig = exact_eigenvalues(op)
    assert np.all(np.diff(eig) >= 0)
    np.testing.assert_allclose(eig, torch.linalg.eigvalsh(ref).numpy(), atol=1e-8 * np.abs(eig).max())
    with pytest.raises(PrunelimitError, match="too large"):
        exact_hessian(op, max_dim=op.dim - 1)


# ---------------------------------------------------------------------------------------------
# Lanczos and SLQ
# ---------------------------------------------------------------------------------------------


def test_lanczos_top_ritz_values_match_top_eigenvalues(nets, references):
    model, x, y = nets["mlp"]
    op = HessianOperator(model, x, y)
    v0 = torch.randn(op.dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    run = Lanczos(op, v0, 150)
    assert run.extend(150) == 150
    alphas, betas, Q = run.alphas, run.betas, run.basis[:150]
    assert len(alphas) == 150 and len(betas) == 149
    eye = torch.eye(len(alphas), dtype=torch.float64)
    assert torch.linalg.matrix_norm(Q @ Q.t() - eye) < 1e-10  # full reorthogonalisation keeps Q orthonormal
    H = references["mlp", "prunable"]
    T = torch.diag(torch.from_numpy(alphas)) + torch.diag(torch.from_numpy(betas), 1) + torch.diag(
        torch.from_numpy(betas), -1)
    assert _rel(Q @ H @ Q.t(), T) < 1e-8  # the tridiagonal is the projection of H onto the Krylov basis
    ritz = np.linalg.eigvalsh(T.numpy())
    eig = torch.linalg.eigvalsh(H).numpy()
    np.testing.assert_allclose(ritz[-3:], eig[-3:], rtol=1e-6)
    np.testing.assert_allclose(ritz[0], eig[0], rtol=1e-6)  # the extreme negative one converges too


class Diagonal:
    """A diagonal operator with few distinct eigenvalues: the Krylov space is exhausted early."""

    def __init__(self, diag):
        self.diag = diag
        self.dim, self.dtype = len(diag), diag.dtype

    def matvec(self, v):
        return self.diag * v

    def on_support(self):
        return None  # no known support: Lanczos runs on the whole space

    def describe(self):
        return {}  # nothing to record beside SLQ's own settings


def test_lanczos_stops_on_breakdown_with_exact_ritz_values():
    diag = torch.tensor([3.0, 3.0, -1.0, 0.5, 0.5, 0.5, 3.0, -1.0], dtype=torch.float64)
    run = Lanczos(Diagonal(diag), torch.ones(8, dtype=torch.float64), 8)
    assert run.extend(8) == 3 and run.broke_down  # three distinct eigenvalues
    alphas, betas = run.alphas, run.betas
    theta = np.linalg.eigvalsh(np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1))
    np.testing.assert_allclose(theta, [-1.0, 0.5, 3.0], atol=1e-12)
    result = slq(Diagonal(diag), n_runs=2, n_iter=6, progress=False)
    assert result.steps.tolist() == [3, 3] and result.ritz_values.shape == (2, 3)  # columns no run reached dropped
    # Gauss quadrature on an exhausted Krylov space is exact for any f (here: per start vector)
    q = result.quadrature()
    assert q.trace_f(np.ones_like) == pytest.approx(8.0)
    np.testing.assert_allclose(result.ritz_values[:, :3], [[-1.0, 0.5, 3.0]] * 2, atol=1e-12)


def test_slq_stiff_direction_count_within_10_percent_of_exact(digits):
    """D − tr f(H) with f(λ) = 1/(1 + R²|λ|/(2ε)), R spanning the spectrum, 10 runs of 48 steps."""
    model = _trained("mlp", digits)  # float32, as in the pipeline
    op = HessianOperator(model, digits.x_train, digits.y_train)
    result = slq(op, n_runs=10, n_iter=48, seed=0, progress=False)
    exact = from_eigenvalues(np.abs(torch.linalg.eigvalsh(
        dense_hessian(model.double(), digits.x_train.double(), digits.y_train, "prunable")).numpy()))
    eps = 1e-3
    lam = np.sort(exact.nodes)[::-1]
    for rank in (3, 10, 30, 100, 300):  # R² puts the knee of f at the rank-th largest |λ|
        R2 = 2 * eps / lam[rank]

        def f(lam, R2=R2):
            return 1.0 / (1.0 + R2 * np.abs(lam) / (2 * eps))

        stiff_exact = exact.dim - exact.trace_f(f)
        stiff_slq = result.dim - result.trace_f(f, absolute=True)
        assert stiff_slq == pytest.approx(stiff_exact, rel=0.10), rank
    assert result.trace_f(np.ones_like) == pytest.approx(op.dim)


def test_slq_is_reproducible_and_round_trips(nets, tmp_path):
    model, x, y = nets["mlp"]
    op = HessianOperator(model, x, y)
    a = slq(op, n_runs=3, n_iter=20, seed=7, progress=False)
    b = slq(op, n_runs=3, n_iter=20, seed=7, progress=False)
    c = slq(op, n_runs=3, n_iter=20, seed=8, progress=False)
    assert np.array_equal(a.ritz_values, b.ritz_values) and not np.array_equal(a.ritz_values, c.ritz_values)
    assert a.ritz_values.shape == a.ritz_weights.shape == (3, 20) and a.betas.shape == (3, 19)
    np.testing.assert_allclose(a.ritz_weights.sum(axis=1), 1.0, atol=1e-12)
    assert a.settings["params"] == "prunable" and a.settings["products"] == 3 * 20
    a.save(tmp_path / "slq.npz", n_bins=500, sigma2=1e-5)
    back = SLQResult.load(tmp_path / "slq.npz")
    for name in ("ritz_values", "ritz_weights", "alphas", "betas", "steps"):
        assert np.array_equal(getattr(back, name), getattr(a, name))
    assert back.dim == a.dim and back.settings == json.loads(json.dumps(a.settings))
    with np.load(tmp_path / "slq.npz") as npz:
        grid, density = npz["grid"], npz["density"]
    assert grid.shape == density.shape == (500,) and np.trapezoid(density, grid) == pytest.approx(1.0)


def test_slq_load_rejects_missing_and_inconsistent_files(nets, tmp_path):
    with pytest.raises(PrunelimitError, match="missing SLQ result"):
        SLQResult.load(tmp_path / "absent.npz")
    model, x, y = nets["mlp"]
    good = slq(HessianOperator(model, x, y), n_runs=2, n_iter=5, progress=False)
    arrays = {"ritz_values": good.ritz_values, "ritz_weights": good.ritz_weights[:, :4], "alphas": good.alphas,
              "betas": good.betas, "steps": good.steps, "dim": good.dim, "settings": np.array("{}")}
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(PrunelimitError, match="bad.npz.*ritz_weights"):
        SLQResult.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", ritz_values=good.ritz_values)
    with pytest.raises(PrunelimitError, match="lacks arrays"):
        SLQResult.load(tmp_path / "short.npz")
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(PrunelimitError, match="cannot read"):
        SLQResult.load(tmp_path / "junk.npz")


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [0, 100])
def test_nan_loss_at_the_weights_is_refused(digits, chunk_size):
    model = build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[12, 8])
    with torch.no_grad():
        prunable_parameters(model)[1][1][0, 0] = float("nan")
    with pytest.raises(PrunelimitError, match="loss at the given weights is nan"):
        HessianOperator(model, digits.x_train, digits.y_train, chunk_size=chunk_size)


def test_checkpoint_not_matching_the_model_is_refused(tmp_path):
    model = build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[12, 8])
    save_torch(model.state_dict(), tmp_path / "model.pt")
    save_json({"model": "mlp", "model_args": {"hidden": [16, 8]}, "in_shape": [1, 8, 8], "num_classes": 10},
              tmp_path / "metrics.json")
    with pytest.raises(PrunelimitError, match=r"model\.pt does not fit the model: shape mismatch at linear\.0"):
        load_trained(tmp_path / "model.pt", tmp_path / "metrics.json")


def test_products_refuse_weights_changed_after_construction(digits):
    model = build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[12, 8])
    op = HessianOperator(model, digits.x_train, digits.y_train)
    v = torch.ones(op.dim)
    op.matvec(v)
    with torch.no_grad():
        model.linear[0].weight.mul_(2.0)
    with pytest.raises(PrunelimitError, match="weights changed"):
        op.matvec(v)
    op = HessianOperator(model, digits.x_train, digits.y_train)
    model.double()  # replaces each parameter's data: the cached float32 graph no longer applies
    with pytest.raises(PrunelimitError, match="weights changed"):
        op.matmat(v[:, None])


def test_bad_arguments_name_the_culprit(nets):
    model, x, y = nets["mlp"]
    with pytest.raises(PrunelimitError, match="params must be one of"):
        HessianOperator(model, x, y, params="weights")
    with pytest.raises(PrunelimitError, match="chunk_size"):
        HessianOperator(model, x, y, chunk_size=-1)
    with pytest.raises(PrunelimitError, match="labels"):
        HessianOperator(model, x, y[:-1])
    op = HessianOperator(model, x, y)
    with pytest.raises(PrunelimitError, match=rf"shape \({op.dim},\)"):
        op.matvec(torch.zeros(op.dim + 1, dtype=torch.float64))
    with pytest.raises(PrunelimitError, match="matmat"):
        op.matmat(torch.zeros(op.dim, dtype=torch.float64))
    with pytest.raises(PrunelimitError, match="zero"):
        Lanczos(op, torch.zeros(op.dim, dtype=torch.float64), 5)
    with pytest.raises(PrunelimitError, match="n_runs"):
        slq(op, n_runs=0, n_iter=5, progress=False)
    with pytest.raises(ValueError, match="lacks"):  # settings come whole (the schema fills defaults)
        HessianSettings.from_section({"n_runs": 2})


# ---------------------------------------------------------------------------------------------
# Pipeline entry points
# ---------------------------------------------------------------------------------------------


def test_spectrum_of_trained_and_exact_agree_on_the_trace(digits, tmp_path):
    model = _trained("mlp", digits)
    cfg = hessian_with({"params": "prunable", "n_runs": 4, "n_iter": 30, "max_iter": 30, "seed": 0, "chunk_size": 0,
                        "n_bins": 100})
    result = spectrum_of_trained(model, digits, cfg, progress=False)
    assert result.dim == count_prunable(model) and result.settings["n_runs"] == 4
    eigenvalues, settings = exact_spectrum_of_trained(model, digits, cfg)
    save_exact(tmp_path / "exact.npz", eigenvalues, settings)
    back = load_exact(tmp_path / "exact.npz")
    assert np.array_equal(back, eigenvalues) and back.size == result.dim
    # tr H by SLQ is Hutchinson's estimate over 4 Rademacher vectors: within 4 of its standard
    # deviations, sqrt(2(‖H‖²_F − Σ H_ii²)/runs) ≤ sqrt(2 Σ λ²/runs), of the exact trace
    bound = 4 * np.sqrt(2 * np.sum(eigenvalues**2) / 4)
    assert abs(result.trace_f(lambda lam: lam) - eigenvalues.sum()) < bound < abs(eigenvalues.sum())
    assert result.quadrature().lambda_max == pytest.approx(eigenvalues.max(), rel=1e-4)
    with pytest.raises(PrunelimitError, match="missing exact spectrum"):
        load_exact(tmp_path / "absent.npz")


def test_spectrum_plot_is_written(nets, tmp_path):
    from prunelimit.figures.hessian import plot_hessian_spectrum

    model, x, y = nets["mlp"]
    result = slq(HessianOperator(model, x, y), n_runs=2, n_iter=10, progress=False)
    out = tmp_path / "spectrum.png"
    plot_hessian_spectrum(result, out, title="mlp", n_bins=200, sigma2=1e-5)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    assert not list(tmp_path.glob(".*tmp"))  # written atomically


def test_exact_spectrum_is_planned_only_for_small_tasks(tmp_path):
    """hessian.smk decides at parse time, from each task's D, which tasks get the exact spectrum."""
    config = load_config()
    config["hessian"]["exact_max_params"] = 100_000  # now the quarter-width FC5s (D = 66,875 and 60,875) qualify too
    configfile = write_config(tmp_path / "config.yaml", config)
    proc = snakemake(tmp_path, "-n", "all", configfile=configfile, timeout=300)
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.MULTILINE))
    from prunelimit.config import main_study_tasks

    # the main study's tasks and the one-shot comparison's (its figure marks their predictions); the regime
    # map's tasks are its own rules'
    assert jobs["slq"] == str(len(main_study_tasks(config)) + len(config["oneshot"]["tasks"]))
    assert jobs["exact_spectrum"] == "3"
    assert "hessian/fc5_digits/exact.npz" in proc.stdout and "hessian/vgg_digits/exact.npz" not in proc.stdout


# ---------------------------------------------------------------------------------------------
# Converged SLQ: the step count doubles until the functional is stable
# ---------------------------------------------------------------------------------------------


def _known_spectrum(dim=600, seed=0):
    """A diagonal operator whose spectrum is known: a cluster near 0 and a spread-out bulk."""
    rng = np.random.default_rng(seed)
    eig = np.concatenate([rng.uniform(0, 1e-3, dim // 3), rng.uniform(0.01, 10.0, dim - dim // 3)])
    return Diagonal(torch.tensor(eig, dtype=torch.float64)), eig


def test_converged_slq_stops_when_the_functional_is_stable_on_doubling():
    op, eig = _known_spectrum()
    c = 1e-2  # f(λ) = 1/(1 + λ/c): the width kernel, sharp near 0 like the theory's

    def functional(q):
        return q.trace_f(lambda lam: 1.0 / (1.0 + np.abs(lam) / c)) / q.dim

    exact = float(np.mean(1.0 / (1.0 + eig / c)))
    result = slq(op, n_runs=2, n_iter=8, seed=1, progress=False, max_iter=512, predict=functional, tol=0.005,
                 stable_doublings=1)
    conv = result.settings["convergence"]
    assert conv["converged"] == [True, True] and not conv["capped"]
    for run, tried in enumerate(conv["history"]):
        steps = [m for m, _ in tried]
        assert steps == [8 * 2 ** i for i in range(len(steps))]  # doubling from n_iter
        values = [v for _, v in tried]
        assert abs(values[-1] - values[-2]) < 0.005  # the stop rule held ...
        assert all(abs(b - a) >= 0.005 for a, b in zip(values[:-2], values[1:-1]))  # ... and not before
        assert result.steps[run] == steps[-1]
        # the value at the stop is the run's own quadrature, and near the exact trace
        assert functional(result.run_quadrature(run)) == pytest.approx(values[-1], abs=1e-12)
        assert abs(values[-1] - exact) < 0.03
    # the extended runs equal fresh runs of the same length (the doubling keeps the earlier steps)
    fresh = slq(op, n_runs=2, n_iter=int(result.steps[0]), seed=1, progress=False)
    np.testing.assert_allclose(fresh.alphas[0, :result.steps[0]], result.alphas[0, :result.steps[0]], rtol=1e-10)


def test_converged_slq_reports_the_cap():
    op, _ = _known_spectrum()

    result = slq(op, n_runs=1, n_iter=4, seed=0, progress=False, max_iter=32, predict=lambda q: float(len(q.nodes)),
                 tol=0.5)  # the node count doubles with the steps: never stable
    assert result.settings["convergence"]["capped"] and result.steps.tolist() == [32]
    assert [m for m, _ in result.settings["convergence"]["history"][0]] == [4, 8, 16, 32]


def test_two_stable_doublings_see_past_a_plateau():
    op, _ = _known_spectrum()
    plateau = iter([0.50, 0.70, 0.70, 0.60, 0.60, 0.60])  # flat from 16 to 32 steps, then a drop

    def scripted(q):
        return next(plateau)

    one = slq(op, n_runs=1, n_iter=4, max_iter=1024, predict=lambda q: [0.5, 0.7, 0.7, 0.6][min(
        int(np.log2(q.nodes.size // 4)), 3)], tol=0.005, stable_doublings=1, progress=False)
    assert one.steps.tolist() == [16]  # stopped on the plateau
    two = slq(op, n_runs=1, n_iter=4, max_iter=1024, predict=scripted, tol=0.005, stable_doublings=2, progress=False)
    assert [v for _, v in two.settings["convergence"]["history"][0]] == [0.5, 0.7, 0.7, 0.6, 0.6, 0.6]
    assert two.steps.tolist() == [128] and two.settings["convergence"]["converged"] == [True]
    with pytest.raises(PrunelimitError, match="max_iter"):
        slq(op, n_runs=1, n_iter=16, max_iter=8, predict=lambda q: 0.0, progress=False)
