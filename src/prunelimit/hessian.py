"""The training-loss Hessian as a linear operator, and its spectrum by stochastic Lanczos quadrature.

- :class:`HessianOperator`: products H·v of the Hessian of the full-training-set loss (mean
  cross-entropy, model in eval mode) with respect to the prunable weights (default) or all
  parameters. When the data fit, the gradient graph is built once and every product is one
  backward pass through it; otherwise the data are chunked. Eval-mode BatchNorm is folded into
  the layer before it. Measured on CPU (benchmarks/hessian.py, 1 thread, all parameters): 1.9
  gradients a product on the mini FC5 and FC12 (their exact products' matmul FLOPs are 1.83 and
  1.96 gradients'), 1.2 on the mini VGG16 (1.8 before the folding).
- :func:`lanczos`: Lanczos tridiagonalisation with full reorthogonalisation, its basis in one
  preallocated matrix.
- :func:`slq`: stochastic Lanczos quadrature (Ubaru, Chen & Saad 2017, "Fast estimation of
  tr(f(A)) via stochastic Lanczos quadrature"; PyHessian's ``density``, Yao et al. 2020):
  Rademacher start vectors, Ritz values as nodes, squared first eigenvector components as weights.
  The result is an :class:`SLQResult`; :meth:`SLQResult.quadrature` turns it into the
  :class:`~prunelimit.spectrum.Quadrature` every spectral functional is computed from
  (tr f(H) ≈ D · mean over runs of Σ_j τ_j f(θ_j), :meth:`~prunelimit.spectrum.Quadrature.trace_f`).
- :func:`exact_hessian`, :func:`exact_eigenvalues`: the dense Hessian of small models (validation).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .io import PrunelimitError
from .models import prunable_parameters
# SLQResult and the exact-spectrum files are numpy-only: they live in spectrum.py, where figure and
# table jobs read them without torch, and are re-exported here, where the library has always named them.
from .spectrum import Quadrature, SLQResult, load_exact, save_exact  # noqa: F401

PARAM_SETS = ("prunable", "all")
EXACT_MAX_DIM = 20_000  # dense Hessians beyond this are refused (20k² float64 = 3.2 GB)


class LinearOperator(Protocol):
    """What :func:`lanczos` needs: a dimension and a product with a flat vector."""

    dim: int

    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# ---------------------------------------------------------------------------------------------
# Eval-mode BatchNorm as an affine map, folded into the convolution or linear layer before it
# ---------------------------------------------------------------------------------------------

_BN_ARGS = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
_LAYER_ARGS = {F.conv1d: ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
               F.conv2d: ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
               F.conv3d: ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
               F.linear: ("input", "weight", "bias")}


class _FoldEvalBatchNorm(torch.overrides.TorchFunctionMode):
    """While active, eval-mode ``F.batch_norm`` is computed as the affine map it is, folded into its layer.

    With running statistics, BatchNorm is y = s·x + t per channel, s = γ/√(σ² + ε), t = β − μ·s
    (PyTorch's CPU kernel computes it so too: ``batch_norm_cpu_transform_input``). When x is the
    output of a convolution or a 2-D linear layer recorded here, y = layer(input; s·W, s·b + t):
    the weights-sized product s·W replaces every activation-sized BatchNorm operation in the
    forward, the gradient and the double backward (``torch.nn.utils.fusion.fuse_conv_bn_weights``
    folds the same way, but for inference: it cuts the weights from the graph). Any other input
    gets s·x + t in one ``addcmul``. The derivatives with respect to W, b, γ and β are unchanged:
    only the order of rounding differs (1.3e-6 relative on the mini VGG16's HVP in float32).
    Measured on the mini VGG16 (13 conv-BN blocks, 1 thread): a product fell from 1.76 to 1.21
    gradients (benchmarks/hessian.py --task vgg_digits). BatchNorm with batch statistics
    (training, or no running stats) is left to the module.
    """

    def __init__(self):
        super().__init__()
        self._layers: dict[int, tuple[torch.Tensor, Callable, dict]] = {}  # id(output) → (output, fn, args)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _LAYER_ARGS:
            out = func(*args, **kwargs)
            call = {**dict(zip(_LAYER_ARGS[func], args)), **kwargs}
            weight = call.get("weight")
            # the channel axis must be axis 1 (batched conv; linear only on (N, C), as BatchNorm1d reads it)
            if isinstance(weight, torch.Tensor) and out.ndim == call["input"].ndim and (
                    func is not F.linear or out.ndim == 2):
                self._layers[id(out)] = (out, func, call)  # holding out keeps its id from being reused
            return out
        if func is F.batch_norm:
            bn = {**dict(zip(_BN_ARGS, args)), **kwargs}
            if not bn.get("training", False) and bn["running_mean"] is not None and bn["running_var"] is not None:
                x = bn["input"]
                scale = torch.rsqrt(bn["running_var"] + bn.get("eps", 1e-5))
                if bn.get("weight") is not None:
                    scale = scale * bn["weight"]
                shift = -bn["running_mean"] * scale
                if bn.get("bias") is not None:
                    shift = shift + bn["bias"]
                layer = self._layers.pop(id(x), None)  # popped: the unfolded output is freed once unused
                if layer is not None and layer[0] is x:
                    _, fn, call = layer
                    call = dict(call)
                    weight, bias = call.pop("weight"), call.pop("bias", None)
                    call["weight"] = weight * scale.view(-1, *([1] * (weight.ndim - 1)))
                    call["bias"] = shift if bias is None else torch.addcmul(shift, bias, scale)
                    return fn(**call)
                return torch.addcmul(shift.view(1, -1, *([1] * (x.ndim - 2))), x,
                                     scale.view(1, -1, *([1] * (x.ndim - 2))))
        return func(*args, **kwargs)


def _hessian_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output in eval mode with BatchNorm folded (:class:`_FoldEvalBatchNorm`)."""
    with _FoldEvalBatchNorm():
        return model(x)


# ---------------------------------------------------------------------------------------------
# The Hessian operator
# ---------------------------------------------------------------------------------------------


class HessianOperator:
    """Hessian-vector products of the mean cross-entropy over ``(x, y)`` at the model's weights.

    ``params``: ``"prunable"`` (conv and linear weights, :func:`prunelimit.models.prunable_parameters`;
    D is their count) or ``"all"`` (every parameter that requires grad). BatchNorm uses its running
    statistics (eval mode), so the loss is a fixed function of the weights, summed over samples; it is
    computed as an affine map folded into the layer before it (:class:`_FoldEvalBatchNorm`).
    The L1 term λ·Σ|w| of LOMP training is omitted: it is piecewise linear, so its Hessian is zero
    wherever it exists and it adds exactly zero to every product.

    ``chunk_size = 0`` (or ≥ N): one forward and one ``create_graph`` backward at construction; each
    product is then a single backward through that cached graph. Otherwise every product re-runs
    forward and double backward over chunks of ``chunk_size`` samples, each weighted by
    n_chunk/N, and sums them (for data whose graph does not fit in memory).

    The operator holds the weights as they are at construction; changing them afterwards (in place,
    or their dtype or device) makes every later product raise :class:`PrunelimitError`.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: str = "prunable",
                 chunk_size: int = 0, vmap_matmat: bool = False):
        if params not in PARAM_SETS:
            raise PrunelimitError(f"hessian params must be one of {PARAM_SETS}, got {params!r}")
        if chunk_size < 0:
            raise PrunelimitError(f"hessian chunk_size must be ≥ 0 (0 = all samples at once), got {chunk_size}")
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
            raise PrunelimitError(f"Hessian data need inputs (N, ...) and labels (N,) with N ≥ 1, "
                                  f"got {tuple(x.shape)} and {tuple(y.shape)}")
        named = (prunable_parameters(model) if params == "prunable"
                 else [(n, p) for n, p in model.named_parameters() if p.requires_grad])
        if not named:
            raise PrunelimitError(f"model {type(model).__name__} has no {params} parameters to take a Hessian over")
        self.model = model
        self.param_set = params
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.shapes = [p.shape for p in self.params]
        self.sizes = [p.numel() for p in self.params]
        self.dim = sum(self.sizes)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.x, self.y = x.to(self.device, self.dtype), y.to(self.device)
        self.n = len(x)
        self.chunk_size = self.n if chunk_size == 0 or chunk_size >= self.n else int(chunk_size)
        self.cached = self.chunk_size == self.n
        self.vmap_matmat = vmap_matmat and self.cached
        self.products = 0  # Hessian-vector products computed so far (columns of matmat included)
        self._state = self._param_state()
        with _eval_mode(model):
            if self.cached:
                loss = F.cross_entropy(_hessian_forward(model, self.x), self.y)
                self._check_loss(loss)
                grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                # a weight the loss does not depend on (unused module) has a zero row and column
                self._live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
                self._grads = [grads[i] for i in self._live]
            else:
                with torch.no_grad():
                    loss = sum(F.cross_entropy(_hessian_forward(model, xc), yc, reduction="sum")
                               for xc, yc in self._chunks()) / self.n
                self._check_loss(loss)
        self.loss = loss.item()

    def _param_state(self) -> list[tuple]:
        return [(p.dtype, p.device, p.data_ptr(), p._version) for p in self.params]

    def _check_unchanged(self) -> None:
        if self._param_state() != self._state:
            raise PrunelimitError("the model's weights changed (in place, dtype or device) after this Hessian "
                                  "operator was built; build a new operator for the new weights")

    def _check_loss(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            raise PrunelimitError(f"the training loss at the given weights is {loss.item()} (not finite); "
                                  f"the Hessian is undefined there: check the checkpoint and the data")

    def _chunks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, self.n, self.chunk_size):
            yield self.x[i:i + self.chunk_size], self.y[i:i + self.chunk_size]

    # --- flat vectors <-> per-parameter tensors -------------------------------------------------

    def _as_vector(self, v: torch.Tensor) -> torch.Tensor:
        if not isinstance(v, torch.Tensor) or v.shape != (self.dim,):
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise PrunelimitError(f"Hessian products need a flat vector of shape ({self.dim},), got {shape}")
        return v.to(self.device, self.dtype).contiguous()

    def _split(self, v: torch.Tensor) -> list[torch.Tensor]:
        return [t.view(s) for t, s in zip(v.split(self.sizes), self.shapes)]

    def _flatten(self, parts: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
        """Concatenate one tensor per parameter; ``None`` (no dependence) becomes zeros."""
        return torch.cat([torch.zeros(s, dtype=self.dtype, device=self.device) if t is None else t.reshape(-1)
                          for t, s in zip(parts, self.sizes)])

    def flat_params(self) -> torch.Tensor:
        """The weights the Hessian is taken over, concatenated in module order (a detached copy)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    # --- products --------------------------------------------------------------------------------

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H·v for a flat vector ``v`` of shape (D,); returns (D,) in the parameters' dtype."""
        v = self._as_vector(v)
        self._check_unchanged()
        self.products += 1
        if self.cached:
            if not self._grads:
                return torch.zeros_like(v)
            parts = self._split(v)
            hv = torch.autograd.grad(self._grads, self.params, grad_outputs=[parts[i] for i in self._live],
                                     retain_graph=True, allow_unused=True)
            return self._flatten(hv)
        return self._chunked_matvec(v)

    def _chunked_matvec(self, v: torch.Tensor) -> torch.Tensor:
        parts = self._split(v)
        total = torch.zeros_like(v)
        with _eval_mode(self.model):
            for xc, yc in self._chunks():
                # sum-reduced over the chunk and divided by N: each chunk carries weight n_chunk/N
                loss = F.cross_entropy(_hessian_forward(self.model, xc), yc, reduction="sum") / self.n
                grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
                if not live:
                    continue
                hv = torch.autograd.grad([grads[i] for i in live], self.params,
                                         grad_outputs=[parts[i] for i in live], allow_unused=True)
                total += self._flatten(hv)
        return total

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """H·V for columns ``V`` of shape (D, k); returns (D, k).

        Columns go one by one through :meth:`matvec`: on CPU a vmap-batched backward
        (``is_grads_batched``) measured 1.3–1.4× slower per product on the mini FC5 and FC12
        (benchmarks/hessian.py prints both). ``vmap_matmat=True`` selects the batched form
        (cached graph only), e.g. to try on a GPU.
        """
        if not isinstance(V, torch.Tensor) or V.ndim != 2 or V.shape[0] != self.dim:
            shape = tuple(V.shape) if isinstance(V, torch.Tensor) else type(V).__name__
            raise PrunelimitError(f"Hessian matmat needs columns of shape ({self.dim}, k), got {shape}")
        V = V.to(self.device, self.dtype)
        self._check_unchanged()
        if self.vmap_matmat and self._grads:
            k = V.shape[1]
            self.products += k
            rows = V.t().contiguous()  # (k, D): the batch dimension first
            parts = [t.reshape(k, *s) for t, s in zip(rows.split(self.sizes, dim=1), self.shapes)]
            hv = torch.autograd.grad(self._grads, self.params, grad_outputs=[parts[i] for i in self._live],
                                     retain_graph=True, allow_unused=True, is_grads_batched=True)
            out = torch.zeros(k, self.dim, dtype=self.dtype, device=self.device)
            offset = 0
            for h, size in zip(hv, self.sizes):
                if h is not None:
                    out[:, offset:offset + size] = h.reshape(k, -1)
                offset += size
            return out.t()
        return torch.stack([self.matvec(V[:, j]) for j in range(V.shape[1])], dim=1)


# ---------------------------------------------------------------------------------------------
# Lanczos and stochastic Lanczos quadrature
# ---------------------------------------------------------------------------------------------


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


def lanczos(op: LinearOperator, n_iter: int, v0: torch.Tensor, *, basis: torch.Tensor | None = None,
            on_step: Callable[[], None] | None = None,
            return_basis: bool = False) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """``n_iter`` steps of :class:`Lanczos` from ``v0``: (alphas, betas[, basis rows used])."""
    run = Lanczos(op, v0, n_iter, basis)
    m = run.extend(n_iter, on_step)
    if return_basis:
        return run.alphas, run.betas, run.basis[:m]
    return run.alphas, run.betas


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


def slq(op: LinearOperator, n_runs: int, n_iter: int, seed: int = 0, progress: bool = True,
        basis_device: torch.device | str | None = None, *, max_iter: int | None = None,
        predict: Callable[[Quadrature], float] | None = None, tol: float = 0.005,
        stable_doublings: int = 2) -> SLQResult:
    """Stochastic Lanczos quadrature: ``n_runs`` Lanczos runs from Rademacher vectors.

    Without ``predict`` every run takes ``n_iter`` steps. With it, each run starts at ``n_iter``
    steps and doubles them until ``predict`` (a functional of the run's quadrature rule, e.g. the
    predicted pruning threshold) has changed by less than ``tol`` on each of the last
    ``stable_doublings`` doublings, or ``max_iter`` is reached. One stable doubling can be a
    plateau: on a digits MLP a run gave 0.855 at 128 and 256 steps and 0.846 from 512 on (its exact
    spectrum: 0.844); two caught it. The runs keep their steps the steps already run are kept (:class:`Lanczos`), so the doublings
    cost only their new products. ``settings["convergence"]`` records every step count tried, its
    value, and whether each run converged or stopped at the cap.

    Start vectors come from one CPU generator seeded with ``seed`` (run r uses the r-th draw), so
    results are identical on rerun. The runs go one after another, sharing one basis buffer:
    batching them through :meth:`HessianOperator.matmat` measured slower on CPU (see matmat).
    The buffer (max steps × D floats: 12 GB for ResNet50 at 128 steps) lives on the operator's
    device unless ``basis_device`` puts it elsewhere (e.g. ``"cpu"`` when GPU memory is short).
    """
    from tqdm import tqdm

    cap = int(max_iter) if predict is not None and max_iter is not None else int(n_iter)
    if n_runs < 1 or n_iter < 1 or cap < n_iter:
        raise PrunelimitError(f"SLQ needs n_runs ≥ 1, n_iter ≥ 1 and max_iter ≥ n_iter, got n_runs={n_runs}, "
                              f"n_iter={n_iter}, max_iter={max_iter}")
    if predict is not None and not (tol > 0 and stable_doublings >= 1):
        raise PrunelimitError(f"SLQ convergence needs tol > 0 and stable_doublings ≥ 1, got {tol}, {stable_doublings}")
    dim = op.dim
    k = min(cap, dim)
    dtype = getattr(op, "dtype", torch.float32)
    device = torch.device(basis_device) if basis_device is not None else getattr(op, "device", torch.device("cpu"))
    generator = torch.Generator().manual_seed(int(seed))
    basis = torch.empty(k, dim, dtype=dtype, device=device)
    vals, wts = np.zeros((n_runs, k)), np.zeros((n_runs, k))
    alphas, betas = np.zeros((n_runs, k)), np.zeros((n_runs, max(k - 1, 0)))
    steps = np.zeros(n_runs, np.int64)
    history: list[list[list[float]]] = []
    converged: list[bool] = []
    products_before = getattr(op, "products", 0)
    t0 = time.perf_counter()
    with tqdm(total=n_runs * min(int(n_iter), dim), desc="SLQ", unit="HVP", disable=not progress,
              leave=False) as bar:
        for r in range(n_runs):
            run = Lanczos(op, rademacher(dim, generator, dtype).to(device), k, basis)
            target, tried, done = min(int(n_iter), k), [], predict is None
            while True:
                run.extend(target, on_step=lambda: bar.update(1))
                if predict is not None:
                    tried.append([run.steps, float(predict(run_quadrature(run.alphas, run.betas, dim)))])
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
                "device": str(device)}
    if predict is not None:
        settings["convergence"] = {"tol": float(tol), "stable_doublings": int(stable_doublings),
                                   "start_iter": int(n_iter), "max_iter": int(cap),
                                   "history": history, "converged": converged, "capped": not all(converged)}
    if isinstance(op, HessianOperator):
        settings.update({"params": op.param_set, "chunk_size": op.chunk_size if not op.cached else 0,
                         "n_samples": op.n, "loss": op.loss,
                         "products": op.products - products_before})
    return SLQResult(vals, wts, alphas, betas, dim, settings, steps)


# ---------------------------------------------------------------------------------------------
# Dense Hessian (validation on small models)
# ---------------------------------------------------------------------------------------------


def exact_hessian(op: HessianOperator, max_dim: int = EXACT_MAX_DIM, block: int = 256) -> torch.Tensor:
    """The dense (D, D) Hessian in float64, column blocks of basis vectors through ``op.matmat``.

    Symmetrised as (H + Hᵀ)/2 (the products are symmetric up to rounding).
    """
    dim = op.dim
    if dim > max_dim:
        raise PrunelimitError(f"the exact Hessian of {dim} parameters is too large (limit {max_dim}); use SLQ")
    H = torch.empty(dim, dim, dtype=torch.float64)
    for start in range(0, dim, block):
        stop = min(start + block, dim)
        E = torch.zeros(dim, stop - start, dtype=op.dtype, device=op.device)
        E[torch.arange(start, stop), torch.arange(stop - start)] = 1.0
        H[:, start:stop] = op.matmat(E).to("cpu", torch.float64)
    return (H + H.t()) / 2


def exact_eigenvalues(op: HessianOperator, max_dim: int = EXACT_MAX_DIM) -> np.ndarray:
    """All D eigenvalues of the Hessian, ascending, by a float64 symmetric eigensolver."""
    return torch.linalg.eigvalsh(exact_hessian(op, max_dim)).numpy()


# ---------------------------------------------------------------------------------------------
# Pipeline entry points
# ---------------------------------------------------------------------------------------------


def _operator(model: nn.Module, data, hessian_cfg: dict) -> HessianOperator:
    return HessianOperator(model, data.x_train, data.y_train, params=hessian_cfg.get("params", "prunable"),
                           chunk_size=int(hessian_cfg.get("chunk_size", 0)))


def operator_of_trained(model: nn.Module, data, hessian_cfg: dict) -> HessianOperator:
    """The training-loss Hessian operator of a trained model, as ``hessian_cfg`` (params, chunk_size) asks."""
    return _operator(model, data, hessian_cfg)


def spectrum_of_trained(model: nn.Module, data, hessian_cfg: dict, progress: bool = True,
                        predict: Callable[[Quadrature], float] | None = None,
                        operator: HessianOperator | None = None) -> SLQResult:
    """SLQ spectrum of the training-loss Hessian of a trained ``model`` on ``data.x_train``.

    ``hessian_cfg`` is the config's ``hessian:`` section (keys used: params, n_runs, n_iter,
    max_iter, tol, seed, chunk_size; the others are ignored). With ``predict``, the step count
    grows from n_iter until ``predict`` is stable to ``tol`` or max_iter is reached (:func:`slq`).
    ``operator`` reuses an operator already built on the same model and data.
    """
    missing = {"n_runs", "n_iter"} - set(hessian_cfg)
    if missing:
        raise PrunelimitError(f"hessian config lacks {sorted(missing)}")
    op = operator if operator is not None else _operator(model, data, hessian_cfg)
    n_iter = int(hessian_cfg["n_iter"])
    return slq(op, int(hessian_cfg["n_runs"]), n_iter, seed=int(hessian_cfg.get("seed", 0)), progress=progress,
               max_iter=int(hessian_cfg.get("max_iter", n_iter)), predict=predict,
               tol=float(hessian_cfg.get("tol", 0.005)), stable_doublings=int(hessian_cfg.get("stable_doublings", 2)))


def exact_spectrum_of_trained(model: nn.Module, data, hessian_cfg: dict) -> tuple[np.ndarray, dict]:
    """All eigenvalues of the same Hessian as :func:`spectrum_of_trained` (small models only)."""
    op = _operator(model, data, hessian_cfg)
    t0 = time.perf_counter()
    eigenvalues = exact_eigenvalues(op)
    settings = {"params": op.param_set, "dim": op.dim, "n_samples": op.n, "loss": op.loss,
                "dtype": str(op.dtype).removeprefix("torch."), "elapsed_s": time.perf_counter() - t0}
    return eigenvalues, settings
