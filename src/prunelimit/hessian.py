"""The training-loss Hessian as a linear operator, and its dense form.

- :class:`HessianOperator`: products H·v of the Hessian of the full-training-set loss (mean
  cross-entropy, model in eval mode) with respect to the prunable weights (default) or all
  parameters. When the data fit, the gradient graph is built once and every product is one
  backward pass through it; otherwise the data are chunked. Eval-mode BatchNorm is folded into
  the layer before it; an MLP's products leave out the units that are zero on every sample, whose
  Hessian rows are exactly zero (both in :mod:`prunelimit.hessian_graph`). Measured on CPU
  (benchmarks/hessian.py, 1 thread, all parameters, the mini preset's L1 models): 1.5 gradients a
  product on the mini FC5 and FC12 (1.8 and 2.0 keeping every unit, against matmul-FLOP bounds of
  1.83 and 1.96), 1.3 on the mini VGG16 (1.8 before the folding).
- :class:`SupportOperator`: the operator on its support alone, for Lanczos.
- :func:`exact_hessian`, :func:`exact_eigenvalues`: the dense Hessian of small models (validation).
- :func:`spectrum_dimension`, :func:`operator_positions`: the operator's dimension D and where the
  prunable weights sit in its flat vector.

The spectrum by stochastic Lanczos quadrature is :mod:`prunelimit.lanczos`; the Hessian rows at the
threshold weights, whose share of zero rows is the theory's f₀, are :mod:`prunelimit.hessian_rows`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .hessian_graph import LiveUnitGraph, eval_mode, hessian_forward
from .io import PrunelimitError
from .models import mlp_linears, prunable_parameters

PARAM_SETS = ("prunable", "all")
EXACT_MAX_DIM = 20_000  # dense Hessians beyond this are refused (20k² float64 = 3.2 GB)


# ---------------------------------------------------------------------------------------------
# The Hessian operator, and the operator on its support alone
# ---------------------------------------------------------------------------------------------


class SupportOperator:
    """A Hessian operator on its support S only: x_S ↦ H_SS·x_S, in |S| coordinates.

    H is zero outside S (:class:`~prunelimit.hessian_graph.LiveUnitGraph`): H = H_SS ⊕ 0. For a start
    vector v = (v_S, v_rest) the spectral measure Σ_i (uᵢᵀv)² δ(λ − λᵢ)/‖v‖² splits exactly into the
    measure of (H_SS, v_S), weighted ‖v_S‖²/‖v‖², and mass ‖v_rest‖²/‖v‖² at λ = 0. For a Rademacher v
    (every entry ±1) the latter is exactly ``null_mass`` = (D − |S|)/D, whatever the draw. So Lanczos
    runs on H_SS from v_S alone (:meth:`compress`), and the null part enters the quadrature as that
    exact mass at exactly 0 (:func:`prunelimit.spectrum.with_exact_null_mass`), never through a Ritz
    node: a Lanczos run on the whole space puts it on a Ritz node that, for an indefinite H (0 inside
    the spectrum), can sit at 1e-6 to 1e-4·λmax for 80–200 steps, float64 or float32, above the null
    threshold, where the zero-mass top-up would count it a second time (tests/test_null_mass.py). The
    basis is |S| long, so the reorthogonalisation (half of an SLQ run's time on the mini FC12) reads
    that much less, and no product gathers or scatters.
    Built by :meth:`HessianOperator.on_support`.
    """

    def __init__(self, operator: HessianOperator):
        self.operator = operator
        self._kept = operator._live_units
        self.dim = len(self._kept.gather)
        self.null_mass = (operator.dim - self.dim) / operator.dim  # the Rademacher start's share off S
        self.dtype, self.device = operator.dtype, operator.device

    def compress(self, v: torch.Tensor) -> torch.Tensor:
        """v_S: the support's entries of a flat vector ``v`` of the operator's dimension D."""
        return self.operator._as_vector(v)[self._kept.gather]

    def matvec(self, x: torch.Tensor) -> torch.Tensor:
        self.operator._check_unchanged()
        self.operator.products += 1
        # the Lanczos basis (and so x) may live in host memory while the graph is on the GPU (slq's basis_device)
        return self._kept.matvec_kept(x.to(self.device, self.dtype))


class HessianOperator:
    """Hessian-vector products of the mean cross-entropy over ``(x, y)`` at the model's weights.

    ``params``: ``"prunable"`` (conv and linear weights, :func:`prunelimit.models.prunable_parameters`;
    D is their count) or ``"all"`` (every parameter that requires grad). BatchNorm uses its running
    statistics (eval mode), so the loss is a fixed function of the weights, summed over samples; it is
    computed as an affine map folded into the layer before it
    (:class:`~prunelimit.hessian_graph.FoldEvalBatchNorm`).
    The L1 term λ·Σ|w| of LOMP training is omitted: it is piecewise linear, so its Hessian is zero
    wherever it exists and it adds exactly zero to every product.

    ``chunk_size = 0`` (or ≥ N): one forward and one ``create_graph`` backward at construction; each
    product is then a single backward through that cached graph. Otherwise every product re-runs
    forward and double backward over chunks of ``chunk_size`` samples, each weighted by
    n_chunk/N, and sums them (for data whose graph does not fit in memory).

    For a plain MLP (:func:`~prunelimit.models.mlp_linears`) the cached graph leaves out the units that are zero on
    every sample (``skip_dead_units``, :class:`~prunelimit.hessian_graph.LiveUnitGraph`): their rows and
    columns of the Hessian are exactly zero, and the products are cheaper by the share of the matrices they drop.

    The operator holds the weights as they are at construction; changing them afterwards (in place,
    or their dtype or device) makes every later product raise :class:`PrunelimitError`.
    """

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: str = "prunable",
                 chunk_size: int = 0, vmap_matmat: bool = False, skip_dead_units: bool = True):
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
        self._live_units = None
        with eval_mode(model):
            if self.cached and skip_dead_units and not self.vmap_matmat and mlp_linears(model) is not None:
                self._live_units = LiveUnitGraph(model, self.x, self.y, self.params)
                loss = self._live_units.loss
                self._check_loss(loss)
            elif self.cached:
                loss = F.cross_entropy(hessian_forward(model, self.x), self.y)
                self._check_loss(loss)
                grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                # a weight the loss does not depend on (unused module) has a zero row and column
                self._live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
                self._grads = [grads[i] for i in self._live]
            else:
                with torch.no_grad():
                    loss = sum(F.cross_entropy(hessian_forward(model, xc), yc, reduction="sum")
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

    @property
    def support(self) -> torch.Tensor:
        """Positions whose Hessian rows (and columns) may be nonzero, ascending: all D but the weights
        of units zero on every sample (:class:`~prunelimit.hessian_graph.LiveUnitGraph`), whose rows are
        exactly zero."""
        if self._live_units is None:
            return torch.arange(self.dim, device=self.device)
        return torch.sort(self._live_units.gather).values

    def on_support(self) -> SupportOperator | None:
        """This operator on its support alone (:class:`SupportOperator`, the rest an exact null mass),
        for Lanczos; None when every row may be nonzero (or none: then Lanczos runs on the zero operator)."""
        kept = self._live_units
        return SupportOperator(self) if kept is not None and 0 < len(kept.gather) < self.dim else None

    def describe(self) -> dict:
        """What an SLQ run records of this operator (:func:`prunelimit.lanczos.slq`'s settings): the
        parameter set, the chunk size (0: one cached graph), the sample count and the loss."""
        return {"params": self.param_set, "chunk_size": self.chunk_size if not self.cached else 0,
                "n_samples": self.n, "loss": self.loss}

    def flat_params(self) -> torch.Tensor:
        """The weights the Hessian is taken over, concatenated in module order (a detached copy)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    # --- products --------------------------------------------------------------------------------

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H·v for a flat vector ``v`` of shape (D,); returns (D,) in the parameters' dtype."""
        v = self._as_vector(v)
        self._check_unchanged()
        self.products += 1
        if self._live_units is not None:
            return self._live_units.matvec(v)
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
        with eval_mode(self.model):
            for xc, yc in self._chunks():
                # sum-reduced over the chunk and divided by N: each chunk carries weight n_chunk/N
                loss = F.cross_entropy(hessian_forward(self.model, xc), yc, reduction="sum") / self.n
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
# Dense Hessian (validation on small models)
# ---------------------------------------------------------------------------------------------


def exact_hessian(op: HessianOperator, max_dim: int = EXACT_MAX_DIM, block: int = 256) -> torch.Tensor:
    """The dense (D, D) Hessian in float64, column blocks of basis vectors through ``op.matmat``.

    Only the columns of ``op.support`` are computed; the others are zero. Symmetrised as
    (H + Hᵀ)/2 (the products are symmetric up to rounding).
    """
    dim = op.dim
    if dim > max_dim:
        raise PrunelimitError(f"the exact Hessian of {dim} parameters is too large (limit {max_dim}); use SLQ")
    H = torch.zeros(dim, dim, dtype=torch.float64)
    support = op.support
    for start in range(0, len(support), block):
        columns = support[start:start + block]
        E = torch.zeros(dim, len(columns), dtype=op.dtype, device=op.device)
        E[columns, torch.arange(len(columns))] = 1.0
        H[:, columns] = op.matmat(E).to("cpu", torch.float64)
    return (H + H.t()) / 2


def exact_eigenvalues(op: HessianOperator, max_dim: int = EXACT_MAX_DIM) -> np.ndarray:
    """All D eigenvalues of the Hessian, ascending, by a float64 symmetric eigensolver.

    Rows and columns outside ``op.support`` are zero, so the spectrum is the eigenvalues of the
    block on the support and one exact 0 for each other row.
    """
    support = op.support
    block = exact_hessian(op, max_dim)[support][:, support]
    zeros = torch.zeros(op.dim - len(support), dtype=torch.float64)
    return torch.sort(torch.cat([torch.linalg.eigvalsh(block), zeros])).values.numpy()



# ---------------------------------------------------------------------------------------------
# The operator's flat vector: its dimension, and where the prunable weights sit in it
# ---------------------------------------------------------------------------------------------


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

