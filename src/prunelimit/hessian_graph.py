"""The graphs the Hessian operator differentiates: the eval-mode forward and an MLP without its dead units.

- :func:`eval_mode`: the model in eval mode for the duration (BatchNorm on its running statistics).
- :class:`FoldEvalBatchNorm`, :func:`hessian_forward`: the forward with eval-mode BatchNorm computed
  as the affine map it is, folded into the convolution or linear layer before it.
- :class:`LiveUnitGraph`: the gradient graph of an MLP without the units that are zero on every
  sample, whose Hessian rows are exactly zero.

Used by :class:`prunelimit.hessian.HessianOperator`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .models import mlp_linears


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode while the block runs; its training flag restored afterwards."""
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


class FoldEvalBatchNorm(torch.overrides.TorchFunctionMode):
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


def hessian_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output in eval mode with BatchNorm folded (:class:`FoldEvalBatchNorm`)."""
    with FoldEvalBatchNorm():
        return model(x)


# ---------------------------------------------------------------------------------------------
# An MLP restricted to the units that are active on some sample
# ---------------------------------------------------------------------------------------------


class LiveUnitGraph:
    """The gradient graph of a plain MLP (:func:`~prunelimit.models.mlp_linears`) without the units that are
    zero on every sample.

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

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, operator_params: list[nn.Parameter]):
        layers = mlp_linears(model)
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
                if tensor is None:  # a layer without bias (mlpnet)
                    pieces.append(None)
                    continue
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
