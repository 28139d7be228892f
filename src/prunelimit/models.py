"""The torch modules of the model registry, built from the one description per architecture.

:mod:`prunelimit.architectures` writes every architecture out as a tree of layers, without torch;
:func:`build_model` turns that tree into modules, one torch module per node kind, named as the tree
names them (so the state-dict keys, the parameter order and the initialisation order follow the
tree). Every model takes ``in_shape = (C, H, W)`` (1-D signals arrive as ``(1, 1, L)``) and
``num_classes``.

The prunable parameters (conv and linear weights; never biases or BatchNorm) are defined once,
in :func:`prunable_parameters`, and every later stage (L1 penalty, Hessian, pruning, baselines)
goes through it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import architectures as arch
from .architectures import ARCHITECTURES, InShape
from .errors import PrunelimitError
from .seeds import derived_seed

# ---------------------------------------------------------------------------------------------
# One torch module per node kind of prunelimit.architectures
# ---------------------------------------------------------------------------------------------


class PoolIfLarger(nn.Module):
    """Max-pool (k, s) unless the map is already smaller than the kernel (small inputs)."""

    def __init__(self, kernel_size: int = 2, stride: int = 2):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] < self.kernel_size or x.shape[-2] < self.kernel_size:
            return x
        return F.max_pool2d(x, self.kernel_size, self.stride)


class Resize(nn.Module):
    """Bilinear resize to size × size unless the input already has it (AlexNet's upsampling)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return x


class Residual(nn.Module):
    """ReLU(body(x) + shortcut(x)): the body's layers are this module's children, beside ``shortcut``."""

    def __init__(self, body: list[tuple[str, nn.Module]], shortcut: nn.Module):
        super().__init__()
        for name, module in body:
            self.add_module(name, module)
        self.body_names = [name for name, _ in body]
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for name in self.body_names:
            out = getattr(self, name)(out)
        return F.relu(out + self.shortcut(x))


def to_module(node: arch.Node) -> nn.Module:
    """The torch module of one node of an architecture's description (containers recursively)."""
    if isinstance(node, arch.Linear):
        return nn.Linear(node.in_features, node.out_features, bias=node.bias)
    if isinstance(node, arch.Conv):
        return nn.Conv2d(node.in_channels, node.out_channels, node.kernel, node.stride, node.padding, bias=node.bias)
    if isinstance(node, arch.BatchNorm):
        return nn.BatchNorm2d(node.channels)
    if isinstance(node, arch.ReLU):
        return nn.ReLU()
    if isinstance(node, arch.MaxPool):
        return PoolIfLarger(node.kernel, node.stride) if node.only_if_larger else nn.MaxPool2d(node.kernel, node.stride)
    if isinstance(node, arch.AdaptiveAvgPool):
        return nn.AdaptiveAvgPool2d(node.size)
    if isinstance(node, arch.Flatten):
        return nn.Flatten()
    if isinstance(node, arch.Resize):
        return Resize(node.size)
    if isinstance(node, arch.Sequential):
        model = nn.Sequential()
        for name, child in node.children:
            model.add_module(name, to_module(child))
        return model
    if isinstance(node, arch.Residual):
        shortcut = nn.Identity() if node.shortcut is None else to_module(node.shortcut)
        return Residual([(name, to_module(child)) for name, child in node.body], shortcut)
    raise TypeError(f"no torch module for architecture node {node!r}")  # a new node kind needs one here


def mlp_linears(model: nn.Module) -> list[nn.Linear] | None:
    """The linear layers of a plain MLP (Flatten, then Linear-ReLU blocks and a Linear: fc5, fc12, mlp,
    mlpnet), in order; None for any other model."""
    children = list(model.children()) if isinstance(model, nn.Sequential) else []
    if len(children) != 2 or not isinstance(children[0], nn.Flatten) or not isinstance(children[1], nn.Sequential):
        return None
    layers = list(children[1])
    kinds_ok = all(isinstance(m, nn.Linear if i % 2 == 0 else nn.ReLU) for i, m in enumerate(layers))
    return [m for m in layers if isinstance(m, nn.Linear)] if kinds_ok and len(layers) % 2 == 1 else None


# ---------------------------------------------------------------------------------------------
# Registry, initialisation, prunable parameters
# ---------------------------------------------------------------------------------------------

def init_weights(model: nn.Module) -> None:
    """Kaiming-normal (fan_in, ReLU gain) weights, zero biases, BN at (1, 0) (official code)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", nonlinearity="leaky_relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _producer_relu_pairs(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every conv/linear layer whose output goes straight into a ReLU.

    Only Sequential neighbours count: a layer followed by BatchNorm never has a dead unit in
    training, since batch statistics centre every channel."""
    pairs = []
    for prefix, module in model.named_modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (name, layer), (_, after) in zip(children[:-1], children[1:]):
                if isinstance(layer, (nn.Linear, nn.Conv2d)) and isinstance(after, nn.ReLU):
                    pairs.append((f"{prefix}.{name}" if prefix else name, layer))
    return pairs


@torch.no_grad()
def _silent_units(model: nn.Module, layers: list[nn.Module], x: torch.Tensor, batch: int) -> list[torch.Tensor]:
    """For each of ``layers``, which output units (channels) have a pre-activation ≤ 0 on every
    sample and position of ``x``: one pass of the model over ``x`` serves them all."""
    active = [0] * len(layers)

    def recorder(i):
        def record(_module, _inputs, out):
            per_unit = out.flatten(2).amax(-1) if out.dim() > 2 else out
            active[i] = active[i] + (per_unit > 0).sum(0)
        return record

    handles = [layer.register_forward_hook(recorder(i)) for i, layer in enumerate(layers)]
    try:
        for start in range(0, len(x), batch):
            model(x[start:start + batch])
    finally:
        for handle in handles:
            handle.remove()
    return [count == 0 for count in active]


@torch.no_grad()
def revive_dead_units(model: nn.Module, x: torch.Tensor, seed: int, max_draws: int = 100,
                      batch: int = 512) -> int:
    """Re-draw the initial weights of every ReLU unit that is dead on all of ``x``; return the
    number of rows drawn again (0 when no unit was dead).

    A unit whose pre-activation is ≤ 0 on every training sample never passes a gradient: its
    incoming and outgoing weights keep their initial values for the whole run (with zero biases
    and Kaiming-normal weights, as the official code initialises, 1-2% of a quarter-width FC5's
    weights on digits). Such weights are shaped by neither the data nor the loss, so the theory's
    premise (a model trained to equilibrium) does not hold for them. Layer by layer, in forward
    order, each dead unit's weight row is drawn again from the same Kaiming-normal law until the
    unit fires on some sample [ours; documented in docs/method.md]. The draws come from their own
    stream, ``seeds.derived_seed(seed, "revive_dead_units")``, derived from ``seed`` and that purpose
    tag: deterministic given ``seed``, yet never the stream ``build_model(seed=seed)`` initialised
    the weights from (a generator seeded with ``seed`` itself replays it: a revived row would repeat
    the first initial weights, rescaled, instead of being a fresh draw).
    A draw changes only the layers after it, so each pass of the model checks every layer and the
    first one with dead units is drawn again: one pass when none is dead.
    """
    pairs = _producer_relu_pairs(model)
    layers = [layer for _, layer in pairs]
    generator = torch.Generator().manual_seed(derived_seed(seed, "revive_dead_units"))
    draws = [0] * len(layers)
    was_training = model.training
    model.eval()
    revived = 0
    try:
        while True:
            silent = _silent_units(model, layers, x, batch)
            first = next((i for i, dead in enumerate(silent) if dead.any()), None)
            if first is None:
                return revived
            name, layer, dead = *pairs[first], silent[first]
            if draws[first] == max_draws:
                raise RuntimeError(f"{name}: {int(dead.sum())} unit(s) still dead on every sample after "
                                   f"{max_draws} draws")
            draws[first] += 1
            std = math.sqrt(2.0 / (layer.weight[0].numel()))  # Kaiming normal, fan_in, gain √2
            rows = dead.nonzero().flatten()
            fresh = torch.randn((len(rows), *layer.weight.shape[1:]), generator=generator) * std
            layer.weight[rows] = fresh.to(layer.weight.device, layer.weight.dtype)
            revived += len(rows)
    finally:
        model.train(was_training)


def build_model(name: str, in_shape: InShape, num_classes: int, seed: int | None = None, **kwargs) -> nn.Module:
    """Build registry model ``name``; with ``seed``, the initialisation is reproducible.

    The model carries its recipe as ``build_spec`` (name, arguments, input shape, classes): what a
    resume checkpoint is keyed on.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(ARCHITECTURES))}")
    description = arch.describe(name, tuple(in_shape), num_classes, **kwargs)  # checks model_args' names and types
    if seed is not None:
        torch.manual_seed(seed)
    model = to_module(description)
    if seed is not None:
        torch.manual_seed(seed)
    init_weights(model)
    model.build_spec = {"model": name, "model_args": dict(kwargs), "in_shape": list(in_shape),
                        "num_classes": int(num_classes)}
    return model


def prunable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weights pruning acts on: every conv and linear weight, first and last layer included.

    Biases and BatchNorm parameters are never pruned (official code). The order is the module
    order, fixed, so flat vectors over these parameters are comparable across stages.
    """
    return [
        (f"{name}.weight" if name else "weight", m.weight)
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]


def prunable_vector(model: nn.Module) -> torch.Tensor:
    """The prunable weights as one flat detached vector (a copy), in :func:`prunable_parameters` order."""
    params = prunable_parameters(model)
    if not params:
        raise PrunelimitError(f"model {type(model).__name__} has no prunable (conv or linear) weights")
    return torch.cat([p.detach().reshape(-1) for _, p in params])


def count_prunable(model: nn.Module) -> int:
    return sum(p.numel() for _, p in prunable_parameters(model))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
