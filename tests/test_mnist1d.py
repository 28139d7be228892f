"""The mnist1d dataset is MNIST-1D (Greydanus 2020) as the mnist1d package generates it, offline.

Compared with the package's own make_dataset(get_dataset_args()), through prepare_dataset and
load_tensors as the pipeline uses them; with every network path of the process made to fail.
"""

import random
import socket
import urllib.request

import mnist1d.data
import numpy as np
import pytest
import requests
import yaml
from mnist1d.data import get_dataset_args, make_dataset
from sklearn.linear_model import LogisticRegression

from pipeline_utils import ROOT
from prunelimit.data import content_hash, load_tensors, make_mnist1d, prepare_dataset
from prunelimit.io import PrunelimitError, load_npz

KEYS = ("x_train", "y_train", "x_test", "y_test", "mean", "std", "num_classes")


@pytest.fixture(scope="module")
def package_default():
    return make_dataset(get_dataset_args())


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The dataset file the pipeline's dataset rule writes with the mini preset's options."""
    options = yaml.safe_load((ROOT / "config.yaml").read_text())["datasets"]["mnist1d"]
    return prepare_dataset("mnist1d", tmp_path_factory.mktemp("data") / "mnist1d.npz", options, progress=False)


def test_the_configured_options_are_the_packages_standard_arguments():
    options = yaml.safe_load((ROOT / "config.yaml").read_text())["datasets"]["mnist1d"]
    standard = get_dataset_args(as_dict=True)
    total = options["n_train"] + options["n_test"]
    assert total == standard["num_samples"]
    assert options["n_train"] == int(total * standard["train_split"])
    assert options["length"] == standard["final_seq_length"]
    assert options["seed"] == standard["seed"]


def test_prepared_file_holds_the_packages_dataset(prepared, package_default):
    arrays = load_npz(prepared, "dataset", KEYS)
    assert arrays["x_train"].shape == (4000, 1, 1, 40) and arrays["x_test"].shape == (1000, 1, 1, 40)
    assert arrays["x_train"].dtype == np.float32 and int(arrays["num_classes"]) == 10
    np.testing.assert_array_equal(arrays["x_train"][:, 0, 0], package_default["x"].astype(np.float32))
    np.testing.assert_array_equal(arrays["x_test"][:, 0, 0], package_default["x_test"].astype(np.float32))
    np.testing.assert_array_equal(arrays["y_train"], package_default["y"])
    np.testing.assert_array_equal(arrays["y_test"], package_default["y_test"])


def test_loaded_tensors_are_the_packages_signals_standardised_by_training_statistics(prepared, package_default):
    # our convention for every dataset: mean and std over the training set, applied to both splits
    train32 = package_default["x"].astype(np.float32)
    mean = np.float32(train32.astype(np.float64).mean())
    std = np.float32(train32.astype(np.float64).std())
    data = load_tensors(prepared)
    np.testing.assert_array_equal(data.x_train.numpy()[:, 0, 0], (train32 - mean) / std)
    np.testing.assert_array_equal(data.x_test.numpy()[:, 0, 0],
                                  (package_default["x_test"].astype(np.float32) - mean) / std)
    assert data.in_shape == (1, 1, 40) and data.num_classes == 10


def test_classes_are_balanced_over_the_whole_set_and_present_in_both_splits(package_default):
    labels = np.concatenate([package_default["y"], package_default["y_test"]])
    assert np.bincount(labels).tolist() == [500] * 10  # the package draws num_samples / 10 per class
    assert np.bincount(package_default["y_test"], minlength=10).min() > 50  # shuffled before the split


def test_generation_is_deterministic_and_the_seed_matters(prepared, tmp_path):
    again = prepare_dataset("mnist1d", tmp_path / "again.npz", progress=False)  # the defaults: the same data
    first, second = load_npz(prepared, "dataset", KEYS), load_npz(again, "dataset", KEYS)
    assert content_hash(first) == content_hash(second)
    for key in KEYS:
        assert first[key].tobytes() == second[key].tobytes(), key
    other = make_mnist1d(4000, 1000, seed=0)
    assert not np.array_equal(other["x_train"], first["x_train"])


def test_generation_needs_no_network_and_leaves_the_global_generators_alone(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d generation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(requests.Session, "request", no_network)
    monkeypatch.setattr(mnist1d.data, "get_dataset", no_network)  # the package's download-or-load path
    np.random.seed(7)
    random.seed(7)
    numpy_before, python_before = np.random.random(), random.random()
    np.random.seed(7)
    random.seed(7)
    arrays = make_mnist1d(100, 50, length=33)
    assert arrays["x_train"].shape == (100, 1, 1, 33) and arrays["x_test"].shape == (50, 1, 1, 33)
    assert (np.random.random(), random.random()) == (numpy_before, python_before)


def test_any_split_is_exact_and_an_unbalanced_total_is_refused():
    # 29 of 50: the package's int(50 * (29 / 50)) would give 28
    arrays = make_mnist1d(29, 21)
    assert len(arrays["x_train"]) == 29 and len(arrays["x_test"]) == 21
    with pytest.raises(PrunelimitError, match="n_train \\+ n_test = 45 must be a multiple of 10"):
        make_mnist1d(30, 15)


def test_a_linear_classifier_reaches_what_the_paper_reports(prepared):
    # Greydanus 2020, table 1: logistic regression 32% test accuracy (an MLP 68%, a CNN 94%)
    arrays = load_npz(prepared, "dataset", KEYS)
    classifier = LogisticRegression(max_iter=2000).fit(arrays["x_train"].reshape(4000, -1), arrays["y_train"])
    assert 0.27 < classifier.score(arrays["x_test"].reshape(1000, -1), arrays["y_test"]) < 0.38
