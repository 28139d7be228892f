"""Datasets: preparation to one array file each, and loading as device tensors.

Prepared files (``results/<preset>/data/<dataset>.npz``) hold ``x_train, y_train, x_test,
y_test`` with images as ``(N, C, H, W)`` uint8 (1-D signals as float32 ``(N, 1, 1, L)``),
plus ``mean``/``std`` per channel and ``num_classes``.

Sources:
- ``digits``: scikit-learn's bundled 8×8 digits, seeded stratified split (no network).
- ``mnist1d``: an MNIST-1D-style generator of our own (after Greydanus 2020, "Scaling down deep
  learning"), seeded: 10 template signals, randomly padded, scaled, sheared, translated, with
  correlated and white noise, resampled to 40 points.
- ``cifar10``, ``cifar100``, ``tinyimagenet``: downloaded from the configured URL (streamed,
  resumable, md5-verified, renamed into place when complete) and parsed from their archives
  (prunelimit.archives).
- ``synth_cifar10``, ``synth_cifar100``, ``synth_tinyimagenet``: tiny random data of the paper
  datasets' shapes, for smoke runs of the paper architectures.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import architectures
from .architectures import SYNTHETIC_SHAPES
from .archives import checked_labels, download, parse_cifar, parse_tinyimagenet
from .io import PrunelimitError, load_npz, save_npz

# Official archives and checksums (the same constants torchvision uses).
OFFICIAL_SOURCES = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
    },
    "tinyimagenet": {
        "url": "http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        "md5": "90528d7ca1a48142e341f4ef8d21d0de",
    },
}
DOWNLOADED = tuple(OFFICIAL_SOURCES)
DATASETS = ("digits", "mnist1d", *DOWNLOADED, *SYNTHETIC_SHAPES)


def dataset_shape(name: str, options: dict | None = None) -> tuple[tuple[int, int, int], int]:
    """Input shape (C, H, W) and class count of dataset ``name`` without building it.

    The table is in prunelimit.architectures, which the workflow reads without importing torch.
    """
    if name not in DATASETS:
        raise PrunelimitError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return architectures.dataset_shape(name, options)


# ---------------------------------------------------------------------------------------------
# Local datasets
# ---------------------------------------------------------------------------------------------


def make_digits(seed: int = 0, test_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """scikit-learn's 8×8 digits (values 0–16) as uint8 0–255, stratified seeded split."""
    # imported here: scikit-learn takes about a second to import, and only this dataset needs it
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "num_classes": np.int64(10)}


# Ten hand-made 12-point templates, one per class (our own shapes, in the spirit of MNIST-1D).
_MNIST1D_TEMPLATES = np.array([
    [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
    [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
    [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
    [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
    [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
    [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
    [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
    [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
    [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
]) - 5.0


def make_mnist1d(n_train: int = 4000, n_test: int = 1000, length: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Generate MNIST-1D-style signals (float32 ``(N, 1, 1, length)``), balanced classes, seeded."""
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    grid = np.linspace(-1, 1, length)
    signals = np.empty((n, length), np.float32)
    for i, label in enumerate(labels):
        template = _MNIST1D_TEMPLATES[label]
        pad = rng.integers(18, 30)  # total zero padding: the digit covers a random share of the window
        left = rng.integers(0, pad + 1)
        x = np.concatenate([np.zeros(left), template, np.zeros(pad - left)])
        t = np.linspace(-1, 1, len(x))
        scale = rng.uniform(0.8, 1.2)
        shear = rng.uniform(-0.6, 0.6)
        shift = rng.uniform(-0.15, 0.15)
        y = scale * np.interp(grid, t + shift, x) + shear * grid
        corr = np.convolve(rng.normal(size=length + 8), np.ones(9) / 9, mode="valid")  # correlated noise
        signals[i] = (y + 0.25 * corr + 0.05 * rng.normal(size=length)).astype(np.float32)
    x_all = signals[:, None, None, :]
    return {"x_train": x_all[:n_train], "y_train": labels[:n_train].astype(np.int64),
            "x_test": x_all[n_train:], "y_test": labels[n_train:].astype(np.int64), "num_classes": np.int64(10)}


def make_synthetic(name: str, n_train: int = 64, n_test: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """Random uint8 images with the shape and class count of a paper dataset (smoke runs only)."""
    shape, classes = SYNTHETIC_SHAPES[name]
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
            "y_train": rng.integers(0, classes, n_train).astype(np.int64),
            "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
            "y_test": rng.integers(0, classes, n_test).astype(np.int64), "num_classes": np.int64(classes)}


# ---------------------------------------------------------------------------------------------
# Preparation entry point and loading
# ---------------------------------------------------------------------------------------------


def _nonfinite(x: np.ndarray) -> str:
    """'' when every value is finite, else e.g. '3 NaN, 1 inf values' (the kind matters to the reader)."""
    if not np.issubdtype(x.dtype, np.floating):
        return ""
    nan, inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
    return ", ".join(f"{n} {kind}" for n, kind in ((nan, "NaN"), (inf, "inf")) if n) + (" values" if nan or inf else "")


def check_arrays(arrays: dict[str, np.ndarray], where: str) -> None:
    """Refuse, in one line naming the array, a dataset training would choke on or silently misread.

    Images ``(N, C, H, W)`` as uint8 or finite floats, train and test alike in shape; labels 1-D
    integers, one per sample, in ``[0, num_classes)``; ``mean``/``std`` (when present) finite, one per channel.
    """
    classes = np.asarray(arrays["num_classes"])
    if classes.shape != () or not np.issubdtype(classes.dtype, np.integer) or int(classes) < 1:
        raise PrunelimitError(f"{where}: num_classes must be a positive integer, got {classes.tolist()!r}")
    for split in ("train", "test"):
        x, y = np.asarray(arrays[f"x_{split}"]), np.asarray(arrays[f"y_{split}"])
        if x.ndim != 4 or not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
            raise PrunelimitError(f"{where}: x_{split} must be (N, C, H, W) uint8 or float, got {x.dtype} {x.shape}")
        if len(x) == 0:
            raise PrunelimitError(f"{where}: x_{split} holds no samples")
        if x.shape[1:] != np.asarray(arrays["x_train"]).shape[1:]:
            raise PrunelimitError(f"{where}: x_{split} samples are {x.shape[1:]}, "
                                  f"x_train's {arrays['x_train'].shape[1:]}")
        if bad := _nonfinite(x):
            raise PrunelimitError(f"{where}: x_{split} holds {bad}")
        if y.shape != (len(x),):
            raise PrunelimitError(f"{where}: y_{split} has shape {y.shape}, need one label per sample ({len(x)},)")
        checked_labels(y, f"{where}: y_{split}", int(classes))
    for name in ("mean", "std"):
        if name in arrays:
            v = np.asarray(arrays[name])
            if v.shape != (arrays["x_train"].shape[1],) or _nonfinite(v):
                raise PrunelimitError(f"{where}: {name} must be one finite value per channel, got {v.tolist()}")


def content_hash(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes.

    Not the file's bytes: the zip inside an .npz stamps its write time, and re-preparing the same
    data must not count as a change of data.
    """
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()


def _with_stats(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    x = arrays["x_train"].astype(np.float64)
    if arrays["x_train"].dtype == np.uint8:
        x = x / 255.0
    arrays["mean"] = x.mean(axis=(0, 2, 3)).astype(np.float32)
    arrays["std"] = x.std(axis=(0, 2, 3)).astype(np.float32)
    return arrays


def prepare_dataset(name: str, out: str | os.PathLike, options: dict | None = None,
                    cache_dir: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Build ``out`` (.npz) for dataset ``name`` from its source; the file appears only when whole."""
    options = dict(options or {})
    if name == "digits":
        arrays = make_digits(seed=options.get("seed", 0), test_fraction=options.get("test_fraction", 0.2))
    elif name == "mnist1d":
        arrays = make_mnist1d(options.get("n_train", 4000), options.get("n_test", 1000),
                              options.get("length", 40), options.get("seed", 0))
    elif name in SYNTHETIC_SHAPES:
        arrays = make_synthetic(name, options.get("n_train", 64), options.get("n_test", 32), options.get("seed", 0))
    elif name in DOWNLOADED:
        source = {**OFFICIAL_SOURCES[name], **{k: v for k, v in options.items() if k in ("url", "md5")}}
        cache = Path(cache_dir or Path(out).parent / "downloads")
        archive = download(source["url"], cache / Path(source["url"]).name, source["md5"], progress=progress)
        arrays = parse_tinyimagenet(archive) if name == "tinyimagenet" else parse_cifar(archive, name)
    else:
        raise PrunelimitError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    check_arrays(arrays, f"dataset {name}")  # before writing: a bad archive never becomes a dataset file
    save_npz(out, **_with_stats(arrays))
    return Path(out)


@dataclass
class TensorData:
    """A dataset resident on one device: normalised float inputs and int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    content_hash: str | None = None  # of the arrays it was loaded from (keys training resumes)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> "TensorData":
        return TensorData(self.x_train.to(device), self.y_train.to(device), self.x_test.to(device),
                          self.y_test.to(device), self.num_classes, self.content_hash)


def load_tensors(path: str | os.PathLike, device: torch.device | str = "cpu") -> TensorData:
    """Load a prepared .npz as normalised float32 tensors on ``device``."""
    arrays = load_npz(path, "dataset", ("x_train", "y_train", "x_test", "y_test", "mean", "std", "num_classes"))
    check_arrays(arrays, f"dataset file {path}")
    mean = torch.from_numpy(arrays["mean"]).view(1, -1, 1, 1)
    std = torch.from_numpy(arrays["std"]).clamp_min(1e-8).view(1, -1, 1, 1)

    def norm(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x).float()
        if x.dtype == np.uint8:
            t = t / 255.0
        return ((t - mean) / std).contiguous()

    return TensorData(norm(arrays["x_train"]), torch.from_numpy(arrays["y_train"]).long(),
                      norm(arrays["x_test"]), torch.from_numpy(arrays["y_test"]).long(),
                      int(arrays["num_classes"]), content_hash(arrays)).to(device)


def augment_batch(x: torch.Tensor, padding: int, generator: torch.Generator, flip: bool = True) -> torch.Tensor:
    """Random crop (zero padding ``padding``) and horizontal flip of a whole batch, on its device.

    Crops are shifted views of one padded batch gathered with per-sample offsets; flips select by a
    random mask (the cifar10-airbench approach).
    """
    n, _, h, w = x.shape
    if padding > 0:
        padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(x.device)
        rows = (dy[:, None] + torch.arange(h, device=x.device)[None])  # (n, h)
        cols = (dx[:, None] + torch.arange(w, device=x.device)[None])  # (n, w)
        idx_n = torch.arange(n, device=x.device)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(n, 1, 1, 1)
        x = torch.where(mask, x.flip(3), x)
    return x.contiguous()
