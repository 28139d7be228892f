"""The training-loss Hessian as a linear operator, its dense form, and its rows at the threshold weights.

- :class:`HessianOperator`: products H·v of the Hessian of the full-training-set loss (mean
  cross-entropy, model in eval mode) with respect to the prunable weights (default) or all
  parameters. When the data fit, the gradient graph is built once and every product is one
  backward pass through it; otherwise the data are chunked. Eval-mode BatchNorm is folded into
  the layer before it; an MLP's products leave out the units that are zero on every sample, whose
  Hessian rows are exactly zero. Measured on CPU (benchmarks/hessian.py, 1 thread, all parameters,
  the mini preset's L1 models): 1.5 gradients a product on the mini FC5 and FC12 (1.8 and 2.0
  keeping every unit, against matmul-FLOP bounds of 1.83 and 1.96), 1.3 on the mini VGG16 (1.8
  before the folding).
- :func:`exact_hessian`, :func:`exact_eigenvalues`: the dense Hessian of small models (validation).
- :func:`hessian_rows`: L1 norms of the Hessian rows at the magnitude-threshold weights, whose
  share of zero rows is the theory's zero-eigenvalue mass f₀ (:mod:`prunelimit.gaussian_width`).

The spectrum by stochastic Lanczos quadrature is :mod:`prunelimit.lanczos`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .io import PrunelimitError, load_npz, save_npz
from .models import MLP, prunable_parameters
from .prune import magnitude_ranking
from .settings import HessianSettings, TheorySettings
from .sparsity import MagnitudeRanking

PARAM_SETS = ("prunable", "all")
EXACT_MAX_DIM = 20_000  # dense Hessians beyond this are refused (20k² float64 = 3.2 GB)


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
# An MLP restricted to the units that are active on some sample
# ---------------------------------------------------------------------------------------------


class _LiveUnitGraph:
    """The gradient graph of an :class:`~prunelimit.models.MLP` without the units that are zero on every sample.

    A hidden unit whose ReLU output is 0 on every sample has pre-activation ≤ 0 everywhere, where
    the ReLU's derivative is 0 (torch's convention at 0 too): the loss's first and second
    derivatives with respect to its incoming weights and bias, and to its outgoing weights (whose
    input is 0), are all exactly zero. The same holds for the outgoing weights of an input feature
    that is 0 on every sample. So the Hessian is zero on those rows and columns, and on the rest
    it is the Hessian of the smaller net without those units: every product is computed there, on
    matrices shrunk in both dimensions, and scattered back. Equal to the full product up to the
    order of floating-point sums (tests/test_hessian.py).

    ``gather``: positions, in the operator's flat vector, of the entries the smaller net keeps;
    ``params``: its weights (copies) in the same order; ``grads``: their gradient, with graph;
    ``loss``: the whole net's loss, from the same pass that finds the units.
    """

    def __init__(self, model: MLP, x: torch.Tensor, y: torch.Tensor, operator_params: list[nn.Parameter]):
        layers = [m for m in model.linear if isinstance(m, nn.Linear)]
        h = x.flatten(1)
        live = [(h != 0).any(0).nonzero().squeeze(1)]  # per layer input: the units kept
        with torch.no_grad():
            for layer in layers[:-1]:
                h = F.relu(layer(h))
                live.append((h > 0).any(0).nonzero().squeeze(1))
            # the whole net's loss, for the operator's check: a NaN weight makes its unit look inactive
            self.loss = F.cross_entropy(layers[-1](h), y)
        live.append(torch.arange(layers[-1].out_features, device=x.device))  # every logit
        in_operator = {id(p): i for i, p in enumerate(operator_params)}
        offsets = np.cumsum([0] + [p.numel() for p in operator_params])
        self.kept_units = [len(u) for u in live[1:-1]]
        self.dead_units = sum(m.out_features for m in layers[:-1]) - sum(self.kept_units)
        self.params, gather, compact = [], [], []  # compact: per layer (weight, bias) of the smaller net
        for layer, rows, cols in zip(layers, live[1:], live[:-1]):
            pieces = []
            for tensor, index in ((layer.weight, rows[:, None] * layer.in_features + cols[None, :]),
                                  (layer.bias, rows)):
                piece = tensor.detach()[rows][:, cols] if tensor.ndim == 2 else tensor.detach()[rows]
                if id(tensor) in in_operator:  # a parameter the Hessian is taken over
                    piece = piece.clone().requires_grad_(True)
                    self.params.append(piece)
                    gather.append(index.reshape(-1) + int(offsets[in_operator[id(tensor)]]))
                pieces.append(piece)
            compact.append(pieces)
        self.gather = torch.cat(gather)
        h = x.flatten(1)[:, live[0]]
        for i, (weight, bias) in enumerate(compact):
            h = F.linear(h, weight, bias)
            if i < len(compact) - 1:
                h = F.relu(h)
        self.grads = torch.autograd.grad(F.cross_entropy(h, y), self.params, create_graph=True)

    def matvec_kept(self, x: torch.Tensor) -> torch.Tensor:
        """The product on the kept entries only: ``x`` and the result in ``gather`` order."""
        parts = x.split([p.numel() for p in self.params])
        hv = torch.autograd.grad(self.grads, self.params, retain_graph=True,
                                 grad_outputs=[t.view_as(p) for t, p in zip(parts, self.params)])
        return torch.cat([t.reshape(-1) for t in hv])

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(v).index_copy_(0, self.gather, self.matvec_kept(v[self.gather]))


class SupportOperator:
    """A Hessian operator on its support S only: x_S ↦ H_SS·x_S, in |S| coordinates.

    H is zero outside S (:class:`_LiveUnitGraph`): H = H_SS ⊕ 0. For a start vector v = (v_S, v_rest)
    the spectral measure Σ_i (uᵢᵀv)² δ(λ − λᵢ)/‖v‖² splits exactly into the measure of (H_SS, v_S),
    weighted ‖v_S‖²/‖v‖², and mass ‖v_rest‖²/‖v‖² at λ = 0. For a Rademacher v (every entry ±1) the
    latter is exactly ``null_mass`` = (D − |S|)/D, whatever the draw. So Lanczos runs on H_SS from v_S
    alone (:meth:`compress`), and the null part enters the quadrature as that exact mass at exactly 0
    (:func:`prunelimit.spectrum.with_exact_null_mass`), never through a Ritz node: a Lanczos run on
    the whole space puts it on a Ritz node that, for an indefinite H (0 inside the spectrum), can
    sit at 1e-6 to 1e-4·λmax for 80–200 steps, float64 or float32, above the null threshold, where
    the zero-mass top-up would count it a second time (tests/test_null_mass.py). The basis is |S|
    long, so the reorthogonalisation (half of an SLQ run's time on the mini FC12) reads that much
    less, and no product gathers or scatters.
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

    For an :class:`~prunelimit.models.MLP` the cached graph leaves out the units that are zero on
    every sample (``skip_dead_units``, :class:`_LiveUnitGraph`): their rows and columns of the
    Hessian are exactly zero, and the products are cheaper by the share of the matrices they drop.

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
        with _eval_mode(model):
            if self.cached and skip_dead_units and not self.vmap_matmat and isinstance(model, MLP):
                self._live_units = _LiveUnitGraph(model, self.x, self.y, self.params)
                loss = self._live_units.loss
                self._check_loss(loss)
            elif self.cached:
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

    @property
    def support(self) -> torch.Tensor:
        """Positions whose Hessian rows (and columns) may be nonzero, ascending: all D but the weights
        of units zero on every sample (:class:`_LiveUnitGraph`), whose rows are exactly zero."""
        if self._live_units is None:
            return torch.arange(self.dim, device=self.device)
        return torch.sort(self._live_units.gather).values

    def on_support(self) -> SupportOperator | None:
        """This operator on its support alone (:class:`SupportOperator`, the rest an exact null mass),
        for Lanczos; None when every row may be nonzero (or none: then Lanczos runs on the zero operator)."""
        kept = self._live_units
        return SupportOperator(self) if kept is not None and 0 < len(kept.gather) < self.dim else None

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
# Hessian rows: the zero-eigenvalue fraction f₀ of the theory
# ---------------------------------------------------------------------------------------------

ROW_BATCH = 16  # basis vectors per batched HVP (HessianOperator.matmat) of the Hessian-row experiment


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
    positions = np.asarray(positions, np.int64)
    dim = int(operator.dim)
    if positions.size and (positions.min() < 0 or positions.max() >= dim):
        raise PrunelimitError(f"Hessian row index out of range [0, {dim})")
    ref = operator.flat_params()
    norms = np.zeros(positions.size)
    support = getattr(operator, "support", None)  # outside it, rows are exactly zero: no product needed
    computed = (np.arange(positions.size) if support is None
                else np.flatnonzero(np.isin(positions, support.cpu().numpy())))
    for start in tqdm(range(0, computed.size, batch), desc="hessian rows", disable=not progress, leave=False):
        entries = computed[start:start + batch]
        block = positions[entries]
        basis = torch.zeros(dim, block.size, dtype=ref.dtype, device=ref.device)
        basis[torch.as_tensor(block, device=ref.device), torch.arange(block.size, device=ref.device)] = 1.0
        columns = operator.matmat(basis)  # (D, k)
        norms[entries] = columns.abs().sum(dim=0).double().cpu().numpy()
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
    def load(cls, path: str | os.PathLike, dim: int | None = None) -> HessianRows:
        arrays = load_npz(path, "Hessian-rows", ("sparsities", "weight_indices", "weight_values", "l1_norms",
                                                 "zero_threshold", "dim"))
        rows = cls(arrays["sparsities"], arrays["weight_indices"], arrays["weight_values"], arrays["l1_norms"],
                   float(arrays["zero_threshold"]), int(arrays["dim"]))
        if dim is not None and rows.dim != dim:
            raise PrunelimitError(f"Hessian-rows file {path} is for {rows.dim} weights, the model has {dim}")
        return rows


def hessian_rows(model: nn.Module, data, *, hessian_settings: HessianSettings, theory_settings: TheorySettings,
                 ranking: MagnitudeRanking | None = None, progress: bool = False,
                 operator=None) -> HessianRows:
    """Row L1 norms of the Hessian at the threshold weights of ``theory.row_levels`` sparsities.

    At each level j/levels take the weight at the magnitude threshold (the largest one removed),
    compute its full-training-set Hessian row H e_i (batched HVPs with basis vectors) and its L1
    norm [code ``gradient.py``]; f₀ = fraction of rows below ``theory.zero_row_threshold``.
    """
    ranking = ranking or magnitude_ranking(model)
    levels = row_sparsities(int(theory_settings.row_levels))
    indices = np.array([ranking.threshold_index(s) for s in levels], np.int64)
    params = hessian_settings.params
    positions = operator_positions(model, params)[indices]
    op = operator if operator is not None else HessianOperator(model, data.x_train, data.y_train, params=params,
                                                                chunk_size=int(hessian_settings.chunk_size))
    norms = hessian_row_norms(op, positions, progress=progress)
    return HessianRows(levels, indices, ranking.weights[indices], norms,
                       float(theory_settings.zero_row_threshold), ranking.dim)
