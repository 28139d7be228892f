"""Model registry: the paper's architectures, sized for any input shape the datasets give.

Every model takes ``in_shape = (C, H, W)`` (1-D signals arrive as ``(1, 1, L)``) and
``num_classes``. Architectures follow the official code (QiaozheZhang/Global-One-shot-Pruning,
``model.py``); CNNs adapt to small inputs: VGG skips a pooling that would leave its convolutions on a 1×1
map, AlexNet resizes its input (the paper upsamples CIFAR to 224).

The prunable parameters (conv and linear weights; never biases or BatchNorm) are defined once,
in :func:`prunable_parameters`, and every later stage (L1 penalty, Hessian, pruning, baselines)
goes through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .architectures import (
    ALEXNET_CONV_CHANNELS,
    ALEXNET_HIDDEN,
    FC5_HIDDEN,
    FC12_HIDDEN,
    MLPNET_HIDDEN,
    RESNET18_BLOCKS,
    RESNET20_BLOCKS,
    RESNET20_PLANES,
    RESNET50_BLOCKS,
    RESNET_PLANES,
    VGG16_CFG,
    InShape,
    check_model_args,
)
from .architectures import scaled_channels as _scaled
from .errors import PrunelimitError
from .seeds import derived_seed

# ---------------------------------------------------------------------------------------------
# Building blocks
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


# ---------------------------------------------------------------------------------------------
# Fully connected nets (official code: FC = "FC5", FC12)
# ---------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """Flatten, then Linear-ReLU blocks, then a linear classifier (with biases unless ``bias=False``)."""

    def __init__(self, in_shape: InShape, num_classes: int, hidden: tuple[int, ...], bias: bool = True):
        super().__init__()
        sizes = [math.prod(in_shape), *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out, bias=bias), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes, bias=bias))
        self.linear = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def fc5(in_shape: InShape, num_classes: int, width: float = 1.0) -> nn.Module:
    """FC5: in→1000→600→300→100→out (official ``FC``); ``width`` scales the hidden sizes."""
    return MLP(in_shape, num_classes, tuple(_scaled(h, width) for h in FC5_HIDDEN))


def fc12(in_shape: InShape, num_classes: int, width: float = 1.0) -> nn.Module:
    """FC12: in→1000→900→…→100→out (official ``FC12``)."""
    return MLP(in_shape, num_classes, tuple(_scaled(h, width) for h in FC12_HIDDEN))


def mlp(in_shape: InShape, num_classes: int, hidden: list[int] | tuple[int, ...] = (32, 16)) -> nn.Module:
    """A small MLP whose exact Hessian is computable (validation tasks)."""
    return MLP(in_shape, num_classes, tuple(hidden))


def mlpnet(in_shape: InShape, num_classes: int, hidden: list[int] | tuple[int, ...] = MLPNET_HIDDEN) -> nn.Module:
    """MLPNet of the CHITA / WoodFisher / CBS benchmark: MNIST 784-40-20-10, ReLU, no biases at all."""
    return MLP(in_shape, num_classes, tuple(hidden), bias=False)


# ---------------------------------------------------------------------------------------------
# AlexNet (official code, no BN; CIFAR upsampled to 224 → 256×5×5 features)
# ---------------------------------------------------------------------------------------------


class AlexNet(nn.Module):
    def __init__(self, in_shape: InShape, num_classes: int, width: float = 1.0, resize: int = 224):
        super().__init__()
        c = [_scaled(n, width) for n in ALEXNET_CONV_CHANNELS]
        self.resize = resize
        self.conv = nn.Sequential(
            nn.Conv2d(in_shape[0], c[0], kernel_size=11, stride=4, padding=1),
            nn.ReLU(),
            PoolIfLarger(3, 2),
            nn.Conv2d(c[0], c[1], 5, padding=2),
            nn.ReLU(),
            PoolIfLarger(3, 2),
            nn.Conv2d(c[1], c[2], 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c[2], c[3], 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c[3], c[4], 3, padding=1),
            nn.ReLU(),
            PoolIfLarger(3, 2),
            nn.AdaptiveAvgPool2d((5, 5)),  # identity at the paper's 224 input
        )
        hidden = _scaled(ALEXNET_HIDDEN, width)
        self.linear = nn.Sequential(
            nn.Linear(c[4] * 25, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        return self.linear(self.conv(x).flatten(1))


def alexnet(in_shape: InShape, num_classes: int, width: float = 1.0, resize: int = 224) -> nn.Module:
    return AlexNet(in_shape, num_classes, width, resize)


# ---------------------------------------------------------------------------------------------
# VGG16 (conv-BN-ReLU, one linear classifier, as in the official code)
# ---------------------------------------------------------------------------------------------

class VGG(nn.Module):
    """VGG16 sized for its input: a max-pool that would leave convolutions to run on a 1×1 map is
    skipped. On a 1×1 map eight of a 3×3 kernel's nine taps only ever see zero padding, so they
    never get a gradient and keep their initial values (on 8×8 digits that was 80% of the
    weights). At 32×32 (CIFAR) every pool is kept: the paper's network is unchanged."""

    def __init__(self, in_shape: InShape, num_classes: int, width: float = 1.0, batch_norm: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_shape[0]
        size = min(in_shape[1], in_shape[2])
        for i, item in enumerate(VGG16_CFG):
            if item == "M":
                convs_follow = any(c != "M" for c in VGG16_CFG[i + 1:])
                if size >= 2 and not (convs_follow and size // 2 < 2):
                    layers.append(nn.MaxPool2d(2, 2))
                    size //= 2
            else:
                out = _scaled(int(item), width)
                norm = [nn.BatchNorm2d(out)] if batch_norm else []
                layers += [nn.Conv2d(channels, out, 3, padding=1), *norm, nn.ReLU()]
                channels = out
        layers.append(nn.AdaptiveAvgPool2d(1))  # 1×1 already at 32×32; pools larger inputs
        self.conv = nn.Sequential(*layers)
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.conv(x).flatten(1))


def vgg16(in_shape: InShape, num_classes: int, width: float = 1.0, batch_norm: bool = True) -> nn.Module:
    """VGG16; ``batch_norm=False`` drops BatchNorm (conv-ReLU, as AlexNet in the paper), which keeps
    the conv weights' scale meaningful under L1 (see config.yaml's vgg_digits)."""
    return VGG(in_shape, num_classes, width, batch_norm)


# ---------------------------------------------------------------------------------------------
# ResNet18 / ResNet50, CIFAR style (3×3 stem, no max-pool; kuangliu/pytorch-cifar layout), and
# ResNet20 (He et al. 2016's CIFAR net, 16/32/64 planes; 1×1 conv + BN shortcuts, option B)
# ---------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = _shortcut(in_planes, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride, bias=False), nn.BatchNorm2d(out_planes))


class ResNet(nn.Module):
    def __init__(self, block: type, num_blocks: tuple[int, ...], in_shape: InShape, num_classes: int, width: float,
                 stage_planes: tuple[int, ...] = RESNET_PLANES):
        super().__init__()
        planes = [_scaled(p, width) for p in stage_planes]
        self.in_planes = planes[0]
        self.conv1 = nn.Conv2d(in_shape[0], planes[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        stages = []
        for i, (p, n) in enumerate(zip(planes, num_blocks)):
            stride = 1 if i == 0 else 2
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(block(self.in_planes, p, s))
                self.in_planes = p * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.linear = nn.Linear(self.in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet18(in_shape: InShape, num_classes: int, width: float = 1.0) -> nn.Module:
    return ResNet(BasicBlock, RESNET18_BLOCKS, in_shape, num_classes, width)


def resnet50(in_shape: InShape, num_classes: int, width: float = 1.0) -> nn.Module:
    return ResNet(Bottleneck, RESNET50_BLOCKS, in_shape, num_classes, width)


def resnet20(in_shape: InShape, num_classes: int, width: float = 1.0) -> nn.Module:
    """ResNet20 of the CHITA / WoodFisher benchmark: three stages of three BasicBlocks (16, 32, 64 planes)."""
    return ResNet(BasicBlock, RESNET20_BLOCKS, in_shape, num_classes, width, RESNET20_PLANES)


# ---------------------------------------------------------------------------------------------
# Registry, initialisation, prunable parameters
# ---------------------------------------------------------------------------------------------

MODELS: dict[str, Callable[..., nn.Module]] = {
    "fc5": fc5,
    "fc12": fc12,
    "mlp": mlp,
    "mlpnet": mlpnet,
    "alexnet": alexnet,
    "vgg16": vgg16,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "resnet20": resnet20,
}


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
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    check_model_args(name, kwargs)
    if seed is not None:
        torch.manual_seed(seed)
    model = MODELS[name](tuple(in_shape), num_classes, **kwargs)
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
