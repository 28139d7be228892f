"""The model registry's one description per architecture, without torch.

Each architecture is a function ``(in_shape, num_classes, **model_args) -> Node`` that writes the
network out as a tree of layers (:class:`Linear`, :class:`Conv`, :class:`BatchNorm`, …) inside
containers (:class:`Sequential`, :class:`Residual`), with the names the torch modules get. Two
things are built from that one tree:

- the torch module, by :func:`prunelimit.models.build_model` (each node kind is one torch module;
  the names become the state-dict keys);
- the parameter counts, here (:func:`parameter_count`), for the workflow's parse: importing torch
  costs seconds on every ``snakemake`` call, and the parse needs D to decide which tasks are small
  enough for the exact Hessian spectrum.

``model_args`` are typed by the architecture's signature (``width: float``, ``hidden: tuple[int,
...]``, …) and :func:`check_model_args` checks a config's values against those types, in one line.

Architectures follow the official code (QiaozheZhang/Global-One-shot-Pruning, ``model.py``); CNNs
adapt to small inputs: VGG skips a pooling that would leave its convolutions on a 1×1 map, AlexNet
resizes its input (the paper upsamples CIFAR to 224). Only the standard library is imported here.
"""

from __future__ import annotations

import inspect
import math
import typing
from dataclasses import dataclass
from typing import NamedTuple

from . import datasets
from .errors import PrunelimitError

InShape = tuple[int, int, int]

FC5_HIDDEN = (1000, 600, 300, 100)
FC12_HIDDEN = (1000, 900, 800, 750, 700, 650, 600, 500, 400, 200, 100)
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
# (channels, kernel, stride, padding) of each convolution
ALEXNET_CONVS = ((96, 11, 4, 1), (256, 5, 1, 2), (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1))
ALEXNET_POOL_AFTER = (True, True, False, False, True)  # a 3×3/2 max-pool after these convolutions
ALEXNET_HIDDEN = 4096
ALEXNET_POOLED = 5  # AdaptiveAvgPool2d((5, 5)): the classifier's input is channels × 25 at any input size
RESNET_PLANES = (64, 128, 256, 512)
RESNET18_BLOCKS = (2, 2, 2, 2)
RESNET50_BLOCKS = (3, 4, 6, 3)
RESNET20_PLANES = (16, 32, 64)  # He et al. 2016's CIFAR ResNet (the CHITA / WoodFisher benchmark)
RESNET20_BLOCKS = (3, 3, 3)
MLPNET_HIDDEN = (40, 20)  # MNIST 784-40-20-10 without biases (CHITA / WoodFisher / CBS benchmark)
BOTTLENECK_EXPANSION = 4


def dataset_shape(name: str, options: dict | None = None) -> tuple[InShape, int]:
    """Input shape (C, H, W) and class count of dataset ``name`` without building it: the registry's
    (prunelimit.datasets), here for the workflow's parse; an unknown name is a ValueError."""
    if name not in datasets.REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(datasets.NAMES)}")
    return datasets.dataset_shape(name, options)


def scaled_channels(channels: int, width: float) -> int:
    """A layer size times the width factor, rounded (Python's round), at least 1."""
    return max(1, int(round(channels * width)))


# ---------------------------------------------------------------------------------------------
# Nodes: layers (conv and linear weights are prunable; biases and BatchNorm are not) and containers
# ---------------------------------------------------------------------------------------------


class ParameterCount(NamedTuple):
    prunable: int  # conv and linear weights (models.count_prunable)
    all: int  # every trainable parameter, biases and BatchNorm included (models.count_parameters)

    def __add__(self, other):  # counts add up through the containers
        return ParameterCount(self.prunable + other.prunable, self.all + other.all)


NO_PARAMETERS = ParameterCount(0, 0)


@dataclass(frozen=True)
class Linear:
    in_features: int
    out_features: int
    bias: bool = True

    def count(self) -> ParameterCount:
        weights = self.in_features * self.out_features
        return ParameterCount(weights, weights + (self.out_features if self.bias else 0))


@dataclass(frozen=True)
class Conv:
    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    bias: bool = True

    def count(self) -> ParameterCount:
        weights = self.in_channels * self.out_channels * self.kernel * self.kernel
        return ParameterCount(weights, weights + (self.out_channels if self.bias else 0))


@dataclass(frozen=True)
class BatchNorm:
    channels: int

    def count(self) -> ParameterCount:
        return ParameterCount(0, 2 * self.channels)  # affine weight and bias; running stats are buffers


class _Parameterless:
    """A layer without parameters (activations, pooling, reshaping)."""

    def count(self) -> ParameterCount:
        return NO_PARAMETERS


@dataclass(frozen=True)
class ReLU(_Parameterless):
    pass


@dataclass(frozen=True)
class MaxPool(_Parameterless):
    kernel: int
    stride: int
    only_if_larger: bool = False  # skipped where the map is already smaller than the kernel (AlexNet)


@dataclass(frozen=True)
class AdaptiveAvgPool(_Parameterless):
    size: int


@dataclass(frozen=True)
class Flatten(_Parameterless):
    pass


@dataclass(frozen=True)
class Resize(_Parameterless):
    size: int  # bilinear to size × size unless the input already has it (AlexNet)


@dataclass(frozen=True)
class Sequential:
    """Named children run in order; the names are the torch module's (its state-dict keys)."""

    children: tuple[tuple[str, Node], ...]

    def count(self) -> ParameterCount:
        return sum((node.count() for _, node in self.children), NO_PARAMETERS)


@dataclass(frozen=True)
class Residual:
    """ReLU(body(x) + shortcut(x)); the body's children sit beside ``shortcut`` (identity when None)."""

    body: tuple[tuple[str, Node], ...]
    shortcut: Node | None

    def count(self) -> ParameterCount:
        total = sum((node.count() for _, node in self.body), NO_PARAMETERS)
        return total + (self.shortcut.count() if self.shortcut is not None else NO_PARAMETERS)


Node = Linear | Conv | BatchNorm | ReLU | MaxPool | AdaptiveAvgPool | Flatten | Resize | Sequential | Residual


def seq(*nodes: Node) -> Sequential:
    """A Sequential whose children are named 0, 1, 2, … (torch's nn.Sequential names)."""
    return Sequential(tuple((str(i), node) for i, node in enumerate(nodes)))


def named(**nodes: Node) -> Sequential:
    return Sequential(tuple(nodes.items()))


# ---------------------------------------------------------------------------------------------
# Architectures
# ---------------------------------------------------------------------------------------------


def _mlp(in_shape: InShape, num_classes: int, hidden: tuple[int, ...], bias: bool = True) -> Sequential:
    """Flatten, then Linear-ReLU blocks, then a linear classifier (official code: FC = "FC5", FC12)."""
    sizes = [math.prod(in_shape), *hidden]
    layers: list[Node] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [Linear(fan_in, fan_out, bias), ReLU()]
    layers.append(Linear(sizes[-1], num_classes, bias))
    return named(flatten=Flatten(), linear=seq(*layers))


def fc5(in_shape: InShape, num_classes: int, width: float = 1.0) -> Node:
    """FC5: in→1000→600→300→100→out (official ``FC``); ``width`` scales the hidden sizes."""
    return _mlp(in_shape, num_classes, tuple(scaled_channels(h, width) for h in FC5_HIDDEN))


def fc12(in_shape: InShape, num_classes: int, width: float = 1.0) -> Node:
    """FC12: in→1000→900→…→100→out (official ``FC12``)."""
    return _mlp(in_shape, num_classes, tuple(scaled_channels(h, width) for h in FC12_HIDDEN))


def mlp(in_shape: InShape, num_classes: int, hidden: tuple[int, ...] = (32, 16)) -> Node:
    """A small MLP whose exact Hessian is computable (validation tasks)."""
    return _mlp(in_shape, num_classes, tuple(hidden))


def mlpnet(in_shape: InShape, num_classes: int, hidden: tuple[int, ...] = MLPNET_HIDDEN) -> Node:
    """MLPNet of the CHITA / WoodFisher / CBS benchmark: MNIST 784-40-20-10, ReLU, no biases at all."""
    return _mlp(in_shape, num_classes, tuple(hidden), bias=False)


def alexnet(in_shape: InShape, num_classes: int, width: float = 1.0, resize: int = 224) -> Node:
    """AlexNet of the official code (no BatchNorm); the input is resized to ``resize`` (CIFAR upsampled
    to 224 gives 256×5×5 features), and an adaptive pool makes the classifier's input size fixed."""
    conv: list[Node] = []
    channels = in_shape[0]
    for (out, kernel, stride, padding), pool in zip(ALEXNET_CONVS, ALEXNET_POOL_AFTER):
        out = scaled_channels(out, width)
        conv += [Conv(channels, out, kernel, stride, padding), ReLU()]
        if pool:
            conv.append(MaxPool(3, 2, only_if_larger=True))
        channels = out
    conv.append(AdaptiveAvgPool(ALEXNET_POOLED))  # identity at the paper's 224 input
    hidden = scaled_channels(ALEXNET_HIDDEN, width)
    classifier = seq(Linear(channels * ALEXNET_POOLED**2, hidden), ReLU(), Linear(hidden, hidden), ReLU(),
                     Linear(hidden, num_classes))
    return named(resize=Resize(resize), conv=seq(*conv), flatten=Flatten(), linear=classifier)


def vgg16(in_shape: InShape, num_classes: int, width: float = 1.0, batch_norm: bool = True) -> Node:
    """VGG16 (conv-BN-ReLU, one linear classifier, as in the official code), sized for its input: a
    max-pool that would leave convolutions to run on a 1×1 map is skipped. On a 1×1 map eight of a
    3×3 kernel's nine taps only ever see zero padding, so they never get a gradient and keep their
    initial values (on 8×8 digits that was 80% of the weights). At 32×32 (CIFAR) every pool is kept:
    the paper's network is unchanged. ``batch_norm=False`` drops BatchNorm (conv-ReLU, as AlexNet in
    the paper), which keeps the conv weights' scale meaningful under L1 (see config.yaml's vgg_digits)."""
    layers: list[Node] = []
    channels = in_shape[0]
    size = min(in_shape[1], in_shape[2])
    for i, item in enumerate(VGG16_CFG):
        if item == "M":
            convs_follow = any(c != "M" for c in VGG16_CFG[i + 1:])
            if size >= 2 and not (convs_follow and size // 2 < 2):
                layers.append(MaxPool(2, 2))
                size //= 2
        else:
            out = scaled_channels(int(item), width)
            norm = [BatchNorm(out)] if batch_norm else []
            layers += [Conv(channels, out, 3, padding=1), *norm, ReLU()]
            channels = out
    layers.append(AdaptiveAvgPool(1))  # 1×1 already at 32×32; pools larger inputs
    return named(conv=seq(*layers), flatten=Flatten(), linear=Linear(channels, num_classes))


def _shortcut(in_planes: int, out_planes: int, stride: int) -> Node | None:
    if stride == 1 and in_planes == out_planes:
        return None  # the identity
    return seq(Conv(in_planes, out_planes, 1, stride, bias=False), BatchNorm(out_planes))


def _basic_block(in_planes: int, planes: int, stride: int) -> Residual:
    return Residual((("conv1", Conv(in_planes, planes, 3, stride, 1, bias=False)), ("bn1", BatchNorm(planes)),
                     ("relu1", ReLU()),
                     ("conv2", Conv(planes, planes, 3, 1, 1, bias=False)), ("bn2", BatchNorm(planes))),
                    _shortcut(in_planes, planes, stride))


def _bottleneck(in_planes: int, planes: int, stride: int) -> Residual:
    out = planes * BOTTLENECK_EXPANSION
    return Residual((("conv1", Conv(in_planes, planes, 1, bias=False)), ("bn1", BatchNorm(planes)), ("relu1", ReLU()),
                     ("conv2", Conv(planes, planes, 3, stride, 1, bias=False)), ("bn2", BatchNorm(planes)),
                     ("relu2", ReLU()),
                     ("conv3", Conv(planes, out, 1, bias=False)), ("bn3", BatchNorm(out))),
                    _shortcut(in_planes, out, stride))


def _resnet(bottleneck: bool, num_blocks: tuple[int, ...], in_shape: InShape, num_classes: int, width: float,
            stage_planes: tuple[int, ...] = RESNET_PLANES) -> Node:
    """CIFAR-style ResNet: 3×3 stem, no max-pool (kuangliu/pytorch-cifar layout); 1×1 conv + BN
    shortcuts where the shape changes (option B)."""
    block, expansion = (_bottleneck, BOTTLENECK_EXPANSION) if bottleneck else (_basic_block, 1)
    planes = [scaled_channels(p, width) for p in stage_planes]
    in_planes = planes[0]
    stages = []
    for stage, (out_planes, blocks) in enumerate(zip(planes, num_blocks)):
        first_stride = 1 if stage == 0 else 2
        stage_blocks = []
        for stride in [first_stride] + [1] * (blocks - 1):
            stage_blocks.append(block(in_planes, out_planes, stride))
            in_planes = out_planes * expansion
        stages.append(seq(*stage_blocks))
    return named(conv1=Conv(in_shape[0], planes[0], 3, 1, 1, bias=False), bn1=BatchNorm(planes[0]), relu=ReLU(),
                 layers=seq(*stages), pool=AdaptiveAvgPool(1), flatten=Flatten(),
                 linear=Linear(in_planes, num_classes))


def resnet18(in_shape: InShape, num_classes: int, width: float = 1.0) -> Node:
    return _resnet(False, RESNET18_BLOCKS, in_shape, num_classes, width)


def resnet50(in_shape: InShape, num_classes: int, width: float = 1.0) -> Node:
    return _resnet(True, RESNET50_BLOCKS, in_shape, num_classes, width)


def resnet20(in_shape: InShape, num_classes: int, width: float = 1.0) -> Node:
    """ResNet20 of the CHITA / WoodFisher benchmark: three stages of three BasicBlocks (16, 32, 64 planes)."""
    return _resnet(False, RESNET20_BLOCKS, in_shape, num_classes, width, RESNET20_PLANES)


# The registry: a task's ``model`` names one of these; its ``model_args`` are the keyword arguments
# after in_shape and num_classes, typed by the annotations.
ARCHITECTURES = {
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


def _architecture(name: str):
    if name not in ARCHITECTURES:
        raise PrunelimitError(f"unknown model {name!r}; known models: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name]


def model_arg_types(name: str) -> dict[str, type]:
    """The keyword arguments (``model_args``) registry model ``name`` takes beyond shape and classes,
    with their types (float, int, bool or tuple[int, ...])."""
    hints = typing.get_type_hints(_architecture(name))
    parameters = inspect.signature(ARCHITECTURES[name]).parameters
    return {p: hints[p] for p in parameters if p not in ("in_shape", "num_classes")}


def _type_problem(value, kind) -> str | None:
    """Why ``value`` is not a valid ``kind`` (positive where a number), or None."""
    if kind is bool:
        return None if isinstance(value, bool) else "true or false"
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) and value > 0 else "a positive integer"
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        return None if ok else "a positive number"
    if typing.get_origin(kind) is tuple:  # tuple[int, ...]: a non-empty list of positive integers
        ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(_type_problem(v, int) is None for v in value)
        return None if ok else "a non-empty list of positive integers"
    raise TypeError(f"model argument type {kind} has no check")  # a new annotation needs one here


def check_model_args(name: str, model_args) -> None:
    """Refuse ``model_args`` that are not ``name``'s own arguments of their declared types, in one line."""
    if not isinstance(model_args, dict):
        raise PrunelimitError(f"model_args of {name} must be an object of keyword arguments, "
                              f"got {type(model_args).__name__}")
    types = model_arg_types(name)
    unknown = sorted(set(model_args) - set(types))
    if unknown:
        raise PrunelimitError(f"model_args {unknown} unknown to model {name}; it takes {list(types)}")
    for key, value in model_args.items():
        problem = _type_problem(value, types[key])
        if problem:
            raise PrunelimitError(f"model_args.{key} of model {name} must be {problem}, got {value!r}")


def describe(name: str, in_shape: InShape, num_classes: int, **model_args) -> Node:
    """The layer tree of registry model ``name`` for this input shape and class count."""
    check_model_args(name, model_args)
    return ARCHITECTURES[name](tuple(in_shape), num_classes, **model_args)


def parameter_count(name: str, in_shape: InShape, num_classes: int, **model_args) -> ParameterCount:
    """Prunable and total parameter counts of registry model ``name``, as models.build_model builds it."""
    return describe(name, in_shape, num_classes, **model_args).count()
