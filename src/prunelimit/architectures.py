"""Layer shapes of the model registry and the datasets' input shapes (prunelimit.datasets), without torch.

The workflow decides at parse time which tasks are small enough for the exact Hessian spectrum
(D ≤ hessian.exact_max_params). Importing torch to build the models costs seconds on every
``snakemake`` call, so D comes from here instead: each registry model is written out as the list
of its parametrised layers, in the same order and with the same sizes as :mod:`prunelimit.models`
builds them (tests/test_architectures.py checks every model against the torch count).

Only the standard library is imported here.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from . import datasets
from .errors import PrunelimitError

InShape = tuple[int, int, int]

# Layer sizes, imported by prunelimit.models too; kernels, biases and block layouts are written
# out in both files (tests/test_architectures.py compares the counts).
FC5_HIDDEN = (1000, 600, 300, 100)
FC12_HIDDEN = (1000, 900, 800, 750, 700, 650, 600, 500, 400, 200, 100)
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
ALEXNET_CONV_CHANNELS = (96, 256, 384, 384, 256)
ALEXNET_CONV_KERNELS = (11, 5, 3, 3, 3)
ALEXNET_HIDDEN = 4096
ALEXNET_POOLED = 5 * 5  # AdaptiveAvgPool2d((5, 5)): the classifier's input is channels × 25 at any input size
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
    """A layer size times the width factor, rounded (Python's round, as the models use), at least 1."""
    return max(1, int(round(channels * width)))


# ---------------------------------------------------------------------------------------------
# Layers with parameters, per architecture (pooling, ReLU and resizing have none)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One parametrised module: conv and linear weights are prunable; biases and BatchNorm are not."""

    kind: str  # "conv", "linear" or "batchnorm"
    weights: int
    biases: int

    @property
    def prunable(self) -> int:
        return self.weights if self.kind in ("conv", "linear") else 0


def conv(in_channels: int, out_channels: int, kernel: int, bias: bool = True) -> Layer:
    return Layer("conv", in_channels * out_channels * kernel * kernel, out_channels if bias else 0)


def linear(in_features: int, out_features: int, bias: bool = True) -> Layer:
    return Layer("linear", in_features * out_features, out_features if bias else 0)


def batchnorm(channels: int) -> Layer:
    return Layer("batchnorm", channels, channels)  # affine weight and bias; running stats are buffers


def mlp_layers(in_shape: InShape, num_classes: int, hidden: tuple[int, ...], bias: bool = True) -> Iterator[Layer]:
    sizes = [math.prod(in_shape), *hidden, num_classes]
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        yield linear(fan_in, fan_out, bias)


def fc5_layers(in_shape: InShape, num_classes: int, width: float = 1.0) -> Iterator[Layer]:
    return mlp_layers(in_shape, num_classes, tuple(scaled_channels(h, width) for h in FC5_HIDDEN))


def fc12_layers(in_shape: InShape, num_classes: int, width: float = 1.0) -> Iterator[Layer]:
    return mlp_layers(in_shape, num_classes, tuple(scaled_channels(h, width) for h in FC12_HIDDEN))


def small_mlp_layers(in_shape: InShape, num_classes: int, hidden=(32, 16)) -> Iterator[Layer]:
    return mlp_layers(in_shape, num_classes, tuple(hidden))


def mlpnet_layers(in_shape: InShape, num_classes: int, hidden=MLPNET_HIDDEN) -> Iterator[Layer]:
    return mlp_layers(in_shape, num_classes, tuple(hidden), bias=False)


def alexnet_layers(in_shape: InShape, num_classes: int, width: float = 1.0, resize: int = 224) -> Iterator[Layer]:
    # resize only sets the spatial size, which the adaptive pooling removes before the classifier
    channels = [in_shape[0], *(scaled_channels(c, width) for c in ALEXNET_CONV_CHANNELS)]
    for c_in, c_out, kernel in zip(channels[:-1], channels[1:], ALEXNET_CONV_KERNELS):
        yield conv(c_in, c_out, kernel)
    hidden = scaled_channels(ALEXNET_HIDDEN, width)
    yield linear(channels[-1] * ALEXNET_POOLED, hidden)
    yield linear(hidden, hidden)
    yield linear(hidden, num_classes)


def vgg16_layers(in_shape: InShape, num_classes: int, width: float = 1.0,
                 batch_norm: bool = True) -> Iterator[Layer]:
    channels = in_shape[0]
    for item in VGG16_CFG:
        if item == "M":
            continue  # PoolIfLarger: no parameters, whatever the map size
        out = scaled_channels(int(item), width)
        yield conv(channels, out, 3)
        if batch_norm:
            yield batchnorm(out)
        channels = out
    yield linear(channels, num_classes)  # after AdaptiveAvgPool2d(1): one value per channel


def _shortcut(in_planes: int, out_planes: int, stride: int) -> Iterator[Layer]:
    if stride != 1 or in_planes != out_planes:  # otherwise the identity
        yield conv(in_planes, out_planes, 1, bias=False)
        yield batchnorm(out_planes)


def _basic_block(in_planes: int, planes: int, stride: int) -> Iterator[Layer]:
    yield conv(in_planes, planes, 3, bias=False)
    yield batchnorm(planes)
    yield conv(planes, planes, 3, bias=False)
    yield batchnorm(planes)
    yield from _shortcut(in_planes, planes, stride)


def _bottleneck(in_planes: int, planes: int, stride: int) -> Iterator[Layer]:
    yield conv(in_planes, planes, 1, bias=False)
    yield batchnorm(planes)
    yield conv(planes, planes, 3, bias=False)
    yield batchnorm(planes)
    yield conv(planes, planes * BOTTLENECK_EXPANSION, 1, bias=False)
    yield batchnorm(planes * BOTTLENECK_EXPANSION)
    yield from _shortcut(in_planes, planes * BOTTLENECK_EXPANSION, stride)


def _resnet_layers(bottleneck: bool, num_blocks: tuple[int, ...], in_shape: InShape, num_classes: int,
                   width: float, stage_planes: tuple[int, ...] = RESNET_PLANES) -> Iterator[Layer]:
    block, expansion = (_bottleneck, BOTTLENECK_EXPANSION) if bottleneck else (_basic_block, 1)
    planes = [scaled_channels(p, width) for p in stage_planes]
    yield conv(in_shape[0], planes[0], 3, bias=False)
    yield batchnorm(planes[0])
    in_planes = planes[0]
    for stage, (out_planes, blocks) in enumerate(zip(planes, num_blocks)):
        first_stride = 1 if stage == 0 else 2
        for stride in [first_stride] + [1] * (blocks - 1):
            yield from block(in_planes, out_planes, stride)
            in_planes = out_planes * expansion
    yield linear(in_planes, num_classes)


def resnet18_layers(in_shape: InShape, num_classes: int, width: float = 1.0) -> Iterator[Layer]:
    return _resnet_layers(False, RESNET18_BLOCKS, in_shape, num_classes, width)


def resnet50_layers(in_shape: InShape, num_classes: int, width: float = 1.0) -> Iterator[Layer]:
    return _resnet_layers(True, RESNET50_BLOCKS, in_shape, num_classes, width)


def resnet20_layers(in_shape: InShape, num_classes: int, width: float = 1.0) -> Iterator[Layer]:
    return _resnet_layers(False, RESNET20_BLOCKS, in_shape, num_classes, width, RESNET20_PLANES)


# The same names and keyword arguments as prunelimit.models.MODELS.
LAYERS = {
    "fc5": fc5_layers,
    "fc12": fc12_layers,
    "mlp": small_mlp_layers,
    "mlpnet": mlpnet_layers,
    "alexnet": alexnet_layers,
    "vgg16": vgg16_layers,
    "resnet18": resnet18_layers,
    "resnet50": resnet50_layers,
    "resnet20": resnet20_layers,
}


def model_arg_names(name: str) -> list[str]:
    """The keyword arguments (``model_args``) registry model ``name`` takes beyond shape and classes;
    each layer list takes the same ones as its torch constructor (tests/test_architectures.py)."""
    if name not in LAYERS:
        raise PrunelimitError(f"unknown model {name!r}; known models: {', '.join(sorted(LAYERS))}")
    return [p for p in inspect.signature(LAYERS[name]).parameters if p not in ("in_shape", "num_classes")]


def check_model_args(name: str, model_args) -> None:
    """Refuse ``model_args`` that are not a mapping of ``name``'s own arguments, naming the culprit."""
    if not isinstance(model_args, dict):
        raise PrunelimitError(f"model_args of {name} must be an object of keyword arguments, "
                              f"got {type(model_args).__name__}")
    known = model_arg_names(name)
    unknown = sorted(set(model_args) - set(known))
    if unknown:
        raise PrunelimitError(f"model_args {unknown} unknown to model {name}; it takes {known}")


class ParameterCount(NamedTuple):
    prunable: int  # conv and linear weights (models.count_prunable)
    all: int  # every trainable parameter, biases and BatchNorm included (models.count_parameters)


def parameter_count(name: str, in_shape: InShape, num_classes: int, **model_args) -> ParameterCount:
    """Prunable and total parameter counts of registry model ``name``, as built by models.build_model."""
    if name not in LAYERS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(LAYERS))}")
    layers = list(LAYERS[name](tuple(in_shape), num_classes, **model_args))
    return ParameterCount(sum(layer.prunable for layer in layers),
                          sum(layer.weights + layer.biases for layer in layers))
