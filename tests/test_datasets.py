"""The dataset registry (prunelimit.datasets) against what derives from it: the schema's ``dataset_name`` enum
and ``datasets`` blocks, the torch-free shapes the workflow reads, the builders, and the arrays prepared."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from prunelimit import architectures, datasets
from prunelimit.data import prepare_dataset
from prunelimit.io import PrunelimitError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
BLOCKS = SCHEMA["properties"]["datasets"]["properties"]
# options of the cheap datasets: small, and off the defaults where that changes the shape
CHEAP = {"digits": {}, "mnist1d": {"n_train": 20, "n_test": 10, "length": 33},
         **{name: {"n_train": 4, "n_test": 2} for name in datasets.SYNTHETIC}}


def test_schema_dataset_enum_is_the_registry():
    from prunelimit.config import load_schema

    assert "enum" not in SCHEMA["$defs"]["dataset_name"]  # the file lists no names: one place for them
    assert load_schema()["$defs"]["dataset_name"]["enum"] == list(datasets.NAMES)


def test_schema_has_a_block_for_each_dataset():
    assert sorted(BLOCKS) == sorted(datasets.NAMES)


@pytest.mark.parametrize("name", datasets.NAMES)
def test_each_entry_is_consistent_and_its_block_names_its_builders_options(name):
    entry = datasets.dataset(name)
    assert entry.name == name and entry.classes >= 2
    shape = entry.in_shape()
    assert len(shape) == 3 and all(isinstance(n, int) and n >= 1 for n in shape)
    build = entry.build()
    assert callable(build)
    block = BLOCKS[name]
    assert block["default"] == {}
    if entry.downloaded:
        assert block["$ref"] == "#/$defs/download"
        assert isinstance(entry.source["url"], str) and ("md5" in entry.source) != ("files" in entry.source)
        assert entry.samples is not None and entry.archive_bytes is not None
        assert name in datasets.DOWNLOADED and datasets.OFFICIAL_SOURCES[name] is entry.source
        return
    assert entry.source in datasets.SOURCES and name not in datasets.DOWNLOADED
    if "$ref" in block:
        block = SCHEMA["$defs"][block["$ref"].rsplit("/", 1)[1]]
    options = set(block["properties"])
    # every option of the block is an argument of the generator, with the schema's default as its own
    parameters = inspect.signature(build).parameters
    assert options <= set(parameters), options - set(parameters)
    for option in options:
        assert block["properties"][option]["default"] == parameters[option].default, option


@pytest.mark.parametrize("name", datasets.NAMES)
def test_the_workflows_shapes_are_the_registrys(name):
    options = CHEAP.get(name, {})
    assert architectures.dataset_shape(name) == datasets.dataset_shape(name)
    assert architectures.dataset_shape(name, options) == datasets.dataset_shape(name, options)
    assert datasets.dataset_shape(name, options) == (datasets.dataset(name).in_shape(options),
                                                     datasets.dataset(name).classes)


@pytest.mark.parametrize("name", list(CHEAP))
def test_shapes_are_those_of_the_prepared_data(name, tmp_path):
    """The downloaded ones: tests/test_data_download.py, against small archives."""
    options = CHEAP[name]
    with np.load(prepare_dataset(name, tmp_path / f"{name}.npz", options, progress=False)) as arrays:
        shape, classes = datasets.dataset_shape(name, options)
        assert int(arrays["num_classes"]) == classes
        assert arrays["x_train"].shape[1:] == arrays["x_test"].shape[1:] == shape
        assert arrays["mean"].shape == arrays["std"].shape == (shape[0],)


def test_mnist1d_length_defaults_to_the_packages():
    assert datasets.dataset_shape("mnist1d") == ((1, 1, datasets.MNIST1D_DEFAULT_LENGTH), 10)
    assert datasets.dataset_shape("mnist1d", {"length": 17}) == ((1, 1, 17), 10)


def test_the_paper_scale_numbers():
    assert {n: datasets.dataset(n).samples for n in datasets.DOWNLOADED} == {
        "mnist": (60_000, 10_000), "cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000),
        "tinyimagenet": (100_000, 10_000)}
    assert {n: datasets.dataset(n).archive_bytes for n in datasets.DOWNLOADED} == {
        "mnist": 11_594_722, "cifar10": 170_498_071, "cifar100": 169_001_437, "tinyimagenet": 248_100_043}


def test_unknown_names_are_clear_errors(tmp_path):
    with pytest.raises(PrunelimitError, match="unknown dataset 'svhn'; known datasets: digits, mnist1d, mnist"):
        datasets.dataset_shape("svhn")
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        architectures.dataset_shape("svhn")
    with pytest.raises(PrunelimitError, match="unknown dataset 'svhn'"):
        prepare_dataset("svhn", tmp_path / "svhn.npz")
    assert not (tmp_path / "svhn.npz").exists()


def test_the_registry_imports_without_numpy_or_torch():
    # the workflow's parse imports it (through prunelimit.architectures)
    code = ("import sys; import prunelimit.datasets, prunelimit.architectures; "
            "print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.stdout.strip() == "[]"
