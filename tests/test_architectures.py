"""The torch-free parameter counts (prunelimit.architectures) against the torch models they describe."""

import re

import pytest
import torch

from prunelimit import architectures
from prunelimit.architectures import ARCHITECTURES, parameter_count
from prunelimit.data import DATASETS, make_digits, make_mnist1d, make_synthetic
from prunelimit.datasets import SYNTHETIC as SYNTHETIC_SHAPES
from prunelimit.datasets import dataset_shape
from prunelimit.io import PrunelimitError
from prunelimit.models import build_model, count_parameters, count_prunable

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
    assert set(ARCHITECTURES) == set(MODEL_ARGS)


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
    with pytest.raises(PrunelimitError, match="unknown model 'resnet19'; known models: alexnet, fc12"):
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


def test_model_args_are_typed_by_the_architecture_signature():
    assert architectures.model_arg_types("vgg16") == {"width": float, "batch_norm": bool}
    assert architectures.model_arg_types("alexnet") == {"width": float, "resize": int}
    assert architectures.model_arg_types("mlp") == {"hidden": tuple[int, ...]}
    valid = {bool: True, int: 2, float: 2}
    for name in ARCHITECTURES:  # every annotation has a check (a new type would raise TypeError here)
        for key, kind in architectures.model_arg_types(name).items():
            architectures.check_model_args(name, {key: valid.get(kind, [3])})


@pytest.mark.parametrize(("name", "model_args", "expected"), [
    ("mlp", {"hidden": "abc"}, "model_args.hidden of model mlp must be a non-empty list of positive integers, "
                               "got 'abc'"),
    ("mlp", {"hidden": [32, None]}, "hidden of model mlp must be a non-empty list of positive integers"),
    ("mlp", {"hidden": []}, "non-empty list"),
    ("mlpnet", {"hidden": [4, 0]}, "positive integers"),
    ("fc5", {"width": "wide"}, "model_args.width of model fc5 must be a positive number, got 'wide'"),
    ("fc5", {"width": float("nan")}, "positive number"),
    ("fc5", {"width": -0.5}, "positive number"),
    ("vgg16", {"batch_norm": "yes"}, "model_args.batch_norm of model vgg16 must be true or false"),
    ("alexnet", {"resize": 64.5}, "model_args.resize of model alexnet must be a positive integer"),
    ("alexnet", {"resize": True}, "positive integer"),
])
def test_model_args_of_the_wrong_type_are_refused_naming_the_argument(name, model_args, expected):
    with pytest.raises(PrunelimitError, match=re.escape(expected)):
        architectures.check_model_args(name, model_args)
    with pytest.raises(PrunelimitError, match=re.escape(expected)):
        build_model(name, (1, 8, 8), 10, **model_args)  # the torch build checks the same description


def test_integer_width_is_a_number():
    assert parameter_count("fc5", (1, 8, 8), 10, width=1) == parameter_count("fc5", (1, 8, 8), 10, width=1.0)


def test_state_dict_names_are_the_description_names():
    """The description's names are the checkpoints' keys: renaming a node would orphan every saved model."""
    keys = list(build_model("resnet20", (3, 32, 32), 10, width=0.25).state_dict())
    assert keys[:3] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    assert "layers.1.0.shortcut.0.weight" in keys and "layers.1.0.shortcut.1.running_mean" in keys
    assert "layers.0.0.shortcut.0.weight" not in keys  # same shape: the identity
    assert keys[-2:] == ["linear.weight", "linear.bias"]
    assert list(build_model("mlpnet", (1, 8, 8), 10).state_dict()) == ["linear.0.weight", "linear.2.weight",
                                                                         "linear.4.weight"]
    assert list(build_model("resnet50", (3, 8, 8), 10, width=0.125).state_dict())[5:7] == [
        "bn1.num_batches_tracked", "layers.0.0.conv1.weight"]


def test_vgg_description_skips_the_pools_that_would_leave_a_one_pixel_map():
    def conv_map_sizes(shape):
        """The map size each convolution of the description runs on, and the number of pools."""
        conv = architectures.describe("vgg16", shape, 10, width=0.125).children[0][1]
        size, sizes, pools = shape[1], [], 0
        for _, node in conv.children:
            if isinstance(node, architectures.MaxPool):
                size, pools = size // 2, pools + 1
            elif isinstance(node, architectures.Conv):
                sizes.append(size)
        return sizes, pools
    sizes, pools = conv_map_sizes((3, 32, 32))
    assert pools == 5 and min(sizes) == 2  # the paper's network: every pool kept, the last convs on 2×2
    sizes, pools = conv_map_sizes((1, 8, 8))
    assert len(sizes) == 13 and min(sizes) == 2 and pools == 3  # two pools before the last convs are skipped
