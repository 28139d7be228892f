"""The dataset registry: every dataset the pipeline can prepare, one entry each.

An entry gives the dataset's name (its config, wildcard and ``--data`` name), its input shape (C, H, W) and
class count, its source and its builder: the generator of a local dataset, or the parser of the files of a
downloaded one. The paper-scale plan (benchmarks/paper_scale.py) reads the official data's sample counts and
download bytes from here. prunelimit.data prepares a dataset through its entry, prunelimit.architectures reads
its shape (the workflow's parse), and tests/test_datasets.py checks the schema's ``dataset_name`` enum and
``datasets`` blocks against the registry and each shape against the arrays built. Adding a dataset is an entry
here, its builder or parser (prunelimit.data, prunelimit.archives) and its schema block and enum value.

Torch-free and numpy-free (the workflow's parse imports it): builders are "module:function" strings, imported
when used.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from .entries import resolve
from .errors import PrunelimitError

InShape = tuple[int, int, int]

SOURCES = ("bundled", "generated", "synthetic")  # besides a download (a dict: the official URL and md5s)
MNIST1D_DEFAULT_LENGTH = 40  # the mnist1d package's final_seq_length (make_mnist1d's default and the schema's)


def _mnist1d_shape(options: dict) -> InShape:
    return 1, 1, int(options.get("length", MNIST1D_DEFAULT_LENGTH))  # 1-D signals are (1, 1, L)


@dataclass(frozen=True)
class Dataset:
    name: str
    shape: InShape | Callable[[dict], InShape]  # (C, H, W), or a function of the dataset's options
    classes: int
    # one of SOURCES, or the official download (the same constants torchvision uses): one archive
    # {"url", "md5"}, or several files under one base URL {"url": base URL, "files": {file name: md5}}
    source: str | dict
    # "module:function" giving the arrays: a local dataset's generator, called with the dataset's options;
    # a downloaded one's parser, called with the archive's path (or {file name: path}). One that takes
    # ``name`` (it serves several datasets) is given the entry's.
    builder: str
    samples: tuple[int, int] | None = None  # (train, test) of the official data; None: the options set them
    archive_bytes: int | None = None  # bytes of the official download (all its files)

    @property
    def downloaded(self) -> bool:
        return isinstance(self.source, dict)

    def in_shape(self, options: dict | None = None) -> InShape:
        """Input shape (C, H, W) under the dataset's ``options`` (its config block)."""
        return self.shape(options or {}) if callable(self.shape) else self.shape

    def build(self) -> Callable:
        """The builder, imported now (it may import numpy, scikit-learn or mnist1d)."""
        fn = resolve(self.builder)
        if "name" in inspect.signature(fn).parameters:
            return functools.partial(fn, name=self.name)
        return fn


_SYNTHETIC = "prunelimit.data:make_synthetic"
# registry order is the schema's enum order
REGISTRY: dict[str, Dataset] = {d.name: d for d in (
    Dataset("digits", (1, 8, 8), 10, "bundled", "prunelimit.data:make_digits"),  # scikit-learn's 8x8 digits
    # MNIST-1D (Greydanus 2020, arXiv 2011.14439), generated offline by the mnist1d package
    Dataset("mnist1d", _mnist1d_shape, 10, "generated", "prunelimit.data:make_mnist1d"),
    # yann.lecun.com often refuses downloads; torchvision's mirror serves the same files (same md5s):
    # datasets.mnist.url: https://ossci-datasets.s3.amazonaws.com/mnist/
    # Normalisation needs no special case: the per-channel mean/std of the training images that
    # prunelimit.data stores are the benchmark's (0.1307, 0.3081).
    Dataset("mnist", (1, 28, 28), 10,
            {"url": "http://yann.lecun.com/exdb/mnist/",
             "files": {"train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                       "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
                       "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
                       "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}},
            "prunelimit.archives:parse_mnist",
            (60_000, 10_000), 9_912_422 + 28_881 + 1_648_877 + 4_542),  # four .gz files, together 11 MiB
    # the files torchvision's CIFAR10/100 download: 163 and 161 MiB, 50,000 / 10,000 images
    Dataset("cifar10", (3, 32, 32), 10,
            {"url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
             "md5": "c58f30108f718f92721af3b95e74349a"},
            "prunelimit.archives:parse_cifar", (50_000, 10_000), 170_498_071),
    Dataset("cifar100", (3, 32, 32), 100,
            {"url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
             "md5": "eb9058c3a382ffc7106e4002c42a8d85"},
            "prunelimit.archives:parse_cifar", (50_000, 10_000), 169_001_437),
    # cs231n's tiny-imagenet-200.zip (237 MiB): 500 training images per class x 200 classes, and its 10,000
    # labelled validation images as the test set
    Dataset("tinyimagenet", (3, 64, 64), 200,
            {"url": "http://cs231n.stanford.edu/tiny-imagenet-200.zip", "md5": "90528d7ca1a48142e341f4ef8d21d0de"},
            "prunelimit.archives:parse_tinyimagenet", (100_000, 10_000), 248_100_043),
    # random images and labels of the paper datasets' shapes (smoke runs of the paper architectures)
    Dataset("synth_cifar10", (3, 32, 32), 10, "synthetic", _SYNTHETIC),
    Dataset("synth_cifar100", (3, 32, 32), 100, "synthetic", _SYNTHETIC),
    Dataset("synth_tinyimagenet", (3, 64, 64), 200, "synthetic", _SYNTHETIC),
)}
NAMES = tuple(REGISTRY)
DOWNLOADED = tuple(d.name for d in REGISTRY.values() if d.downloaded)
SYNTHETIC = tuple(d.name for d in REGISTRY.values() if d.source == "synthetic")
OFFICIAL_SOURCES = {d.name: d.source for d in REGISTRY.values() if d.downloaded}


def dataset(name: str) -> Dataset:
    """The registry entry ``name``; an unknown name is one error listing the known ones."""
    if name not in REGISTRY:
        raise PrunelimitError(f"unknown dataset {name!r}; known datasets: {', '.join(NAMES)}")
    return REGISTRY[name]


def dataset_shape(name: str, options: dict | None = None) -> tuple[InShape, int]:
    """Input shape (C, H, W) and class count of dataset ``name`` under ``options``, without building it."""
    entry = dataset(name)
    return entry.in_shape(options), entry.classes
