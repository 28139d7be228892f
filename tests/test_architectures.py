"""The torch-free parameter counts (prunelimit.architectures) against the torch models they describe."""

import pytest
import torch

from prunelimit import architectures
from prunelimit.architectures import parameter_count
from prunelimit.data import DATASETS, make_digits, make_mnist1d, make_synthetic
from prunelimit.datasets import SYNTHETIC as SYNTHETIC_SHAPES
from prunelimit.datasets import dataset_shape
from prunelimit.io import PrunelimitError
from prunelimit.models import MODELS, build_model, count_parameters, count_prunable

# (C, H, W): digits, MNIST-1D, CIFAR, TinyImageNet, and odd ones (2 channels, a non-square map)
SHAPES = [(1, 8, 8), (1, 1, 40), (3, 32, 32), (3, 64, 64), (2, 5, 7)]
# Every constructor argument each model takes, at several values: widths that round up, down and to 1
MODEL_ARGS = {
    "fc5": [{}, {"width": 0.5}, {"width": 0.0037}, {"width": 1.3}],
    "fc12": [{}, {"width": 0.25}, {"width": 0.125}],
    "mlp": [{}, {"hidden": [32, 16]}, {"hidden": [7]}, {"hidden": [5, 4, 3, 2]}],
    "mlpnet": [{}, {"hidden": [40, 20]}, {"hidden": [7]}, {"hidden": [5, 4, 3]}],
    "alexnet": [{}, {"width": 0.125, "resize": 64}, {"width": 0.3, "resize": 100}],
    "vgg16": [{}, {"width": 0.125}, {"width": 0.0625}, {"width": 0.7}],
    "resnet18": [{}, {"width": 0.125}, {"width": 0.3}],
    "resnet50": [{}, {"width": 0.125}, {"width": 0.2}],
    "resnet20": [{}, {"width": 0.5}, {"width": 0.25}, {"width": 0.3}, {"width": 0.01}],
}
BIAS_FREE = {"mlpnet"}  # every parameter is a prunable weight
CASES = [(name, args) for name in sorted(MODEL_ARGS) for args in MODEL_ARGS[name]]


def test_every_registry_model_has_a_layer_list():
    assert set(architectures.LAYERS) == set(MODELS) == set(MODEL_ARGS)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize(("name", "model_args"), CASES, ids=[f"{n}-{a}" for n, a in CASES])
def test_counts_equal_the_torch_models(name, model_args, shape):
    for classes in (10, 3):
        with torch.device("meta"):  # shapes only: full-width ResNet50 costs no memory or init time
            model = build_model(name, shape, classes, **model_args)
        counts = parameter_count(name, shape, classes, **model_args)
        assert counts.prunable == count_prunable(model), classes
        assert counts.all == count_parameters(model), classes
        if name in BIAS_FREE:
            assert counts.prunable == counts.all
        else:
            assert counts.prunable < counts.all  # biases or BatchNorm always add parameters


def test_paper_counts_at_full_width():
    # independent of the torch models: the published CIFAR parameter counts (tests/test_models.py)
    assert parameter_count("fc5", (3, 32, 32), 10).all == 3_885_010
    assert parameter_count("resnet18", (3, 32, 32), 10).all == 11_173_962
    assert parameter_count("resnet50", (3, 32, 32), 10).all == 23_520_842
    assert parameter_count("mlp", (1, 8, 8), 10, hidden=[32, 16]).prunable == 64 * 32 + 32 * 16 + 16 * 10
    # the CHITA / WoodFisher benchmark nets (their counts written out in tests/test_models.py)
    assert parameter_count("mlpnet", (1, 28, 28), 10) == (32_360, 32_360)
    assert parameter_count("mlpnet", (1, 8, 8), 10) == (3_560, 3_560)
    assert parameter_count("resnet20", (3, 32, 32), 10) == (270_896, 272_474)


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        parameter_count("resnet19", (3, 32, 32), 10)
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        architectures.dataset_shape("svhn")
    with pytest.raises(PrunelimitError, match="unknown dataset 'svhn'; known datasets: digits, mnist1d"):
        dataset_shape("svhn")  # prunelimit.data keeps its user-facing error


@pytest.mark.parametrize("name", DATASETS)
def test_every_dataset_has_a_shape(name):
    shape, classes = dataset_shape(name)
    assert len(shape) == 3 and classes >= 10


@pytest.mark.parametrize("name", ["digits", "mnist1d", *SYNTHETIC_SHAPES])
def test_shapes_are_those_of_the_built_data(name):
    """The table against the arrays the dataset rule writes (the downloaded ones: tests/test_data_download.py)."""
    if name == "digits":
        arrays = make_digits()
    elif name == "mnist1d":
        arrays = make_mnist1d(n_train=20, n_test=10, length=33)
    else:
        arrays = make_synthetic(name, n_train=4, n_test=2)
    options = {"length": 33} if name == "mnist1d" else {}
    assert (tuple(arrays["x_train"].shape[1:]), int(arrays["num_classes"])) == dataset_shape(name, options)
