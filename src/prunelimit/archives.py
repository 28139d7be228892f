"""Official dataset archives: their download and the parsers of their formats.

The download is streamed, resumable, md5-verified and atomic. The parsers read CIFAR-10/100's
python-pickle ``.tar.gz`` (through an allowlisted unpickler: the archive URL is user-configurable),
TinyImageNet's ``.zip`` (in memory, sizes checked before anything is inflated or decoded) and
MNIST's four gzip'd IDX files into the arrays prunelimit.data writes as one dataset file.
"""

from __future__ import annotations

import _codecs
import gzip
import hashlib
import http.client
import io
import math
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .io import PrunelimitError

try:  # numpy >= 2 (1.26 has the alias too)
    from numpy._core import multiarray, numeric
except ImportError:  # pragma: no cover - older numpy
    from numpy.core import multiarray, numeric

# The largest member of an official archive is CIFAR-100's train batch (155 MB); anything far
# larger is a decompression bomb, refused before it is inflated into memory.
MAX_MEMBER_BYTES = 1 << 30


# ---------------------------------------------------------------------------------------------
# Download: streamed, resumable, md5-verified, atomic
# ---------------------------------------------------------------------------------------------


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: str | os.PathLike, md5: str | None, progress: bool = True, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest``.

    Streams into ``dest.part``; an existing ``.part`` is resumed with an HTTP Range request (a
    server that ignores it restarts the file). The file is renamed to ``dest`` only once its
    length matches the announced one and its md5 matches; otherwise the partial file is removed
    (wrong md5) or kept for resuming (truncated transfer) and a clear error is raised.
    """
    dest = Path(dest)
    if dest.exists() and (md5 is None or md5sum(dest) == md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # range not satisfiable: the part file is already whole
            response = None
        else:
            raise PrunelimitError(f"download of {url} failed: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as err:  # HTTPException: bad status line
        raise PrunelimitError(f"download of {url} failed: {getattr(err, 'reason', err)}") from None

    if response is not None:
        with response:
            resumed = response.status == 206
            if not resumed:
                have = 0
            length = response.headers.get("Content-Length")
            expected = have + int(length) if length is not None else None
            with open(part, "ab" if resumed else "wb") as fh, tqdm(
                total=expected, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress
            ) as bar:
                try:
                    while block := response.read(1 << 16):
                        fh.write(block)
                        bar.update(len(block))
                except (OSError, urllib.error.URLError, http.client.HTTPException) as err:  # IncompleteRead (chunked)
                    raise PrunelimitError(
                        f"download of {url} was interrupted ({err}); rerun to resume from {part}"
                    ) from None
        got = part.stat().st_size
        if expected is not None and got < expected:
            raise PrunelimitError(
                f"download of {url} is truncated: {got} of {expected} bytes; rerun to resume from {part}"
            )
    if md5 is not None:
        actual = md5sum(part)
        if actual != md5:
            part.unlink()
            raise PrunelimitError(f"md5 mismatch for {url}: expected {md5}, got {actual}; the partial file was removed")
    os.replace(part, dest)
    return dest


# ---------------------------------------------------------------------------------------------
# Archive parsers (the real formats)
# ---------------------------------------------------------------------------------------------


class RefusedPickle(pickle.UnpicklingError):
    """A pickle asked for something a CIFAR batch never holds (it could run code)."""


def _numpy_reconstructors() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs.encode,  # how Python 3 writes bytes in a protocol-2 pickle
    }
    for core in ("numpy.core", "numpy._core"):  # official files name numpy.core; numpy 2 writes numpy._core
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol-5 arrays
    return allowed


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, numbers, bytes and numpy arrays, and nothing else.

    A plain ``pickle.loads`` calls whatever callable the file names (``os.system`` ...), and the
    archive URL is user-configurable: only the reconstructors CIFAR's own files use are admitted.
    """

    ALLOWED = _numpy_reconstructors()

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise RefusedPickle(f"{module}.{name}") from None


def _unpickle(raw: bytes, what: str) -> dict:
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except RefusedPickle as err:
        raise PrunelimitError(f"refusing CIFAR batch {what}: its pickle calls {err}, which no CIFAR batch needs "
                              "(only numpy arrays, lists, numbers and bytes are allowed)") from None
    except Exception as err:  # noqa: BLE001
        raise PrunelimitError(f"corrupt CIFAR batch {what}: {type(err).__name__}: {err}") from None
    if not isinstance(batch, dict):
        raise PrunelimitError(f"corrupt CIFAR batch {what}: holds a {type(batch).__name__}, not a dict")
    return batch


def checked_labels(values, where: str, num_classes: int) -> np.ndarray:
    """Integer class labels in [0, num_classes), refused by name otherwise (casting would truncate 2.7 to 2)."""
    y = np.asarray(values)
    if y.dtype == object or y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise PrunelimitError(f"{where}: labels must be integers, got {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise PrunelimitError(f"{where}: label {bad} is outside [0, {num_classes})")
    return y.astype(np.int64)


def parse_cifar(archive: str | os.PathLike, name: str) -> dict[str, np.ndarray]:
    """Parse the python-pickle CIFAR-10 / CIFAR-100 ``.tar.gz`` into uint8 (N, 3, 32, 32) arrays."""
    if name == "cifar10":
        folder, train_members, test_members, label_key = (
            "cifar-10-batches-py",
            [f"data_batch_{i}" for i in range(1, 6)],
            ["test_batch"],
            b"labels",
        )
    else:
        folder, train_members, test_members, label_key = ("cifar-100-python", ["train"], ["test"], b"fine_labels")
    classes = 10 if name == "cifar10" else 100
    try:
        with tarfile.open(archive, "r:gz") as tar:
            def read(members: list[str]) -> tuple[np.ndarray, np.ndarray]:
                xs, ys = [], []
                for member in members:
                    info = tar.getmember(f"{folder}/{member}")
                    if info.size > MAX_MEMBER_BYTES:
                        raise PrunelimitError(f"corrupt archive {archive}: {folder}/{member} unpacks to {info.size} "
                                              f"bytes, more than any dataset file ({MAX_MEMBER_BYTES})")
                    fh = tar.extractfile(info)
                    if fh is None:
                        raise PrunelimitError(f"{archive}: {folder}/{member} is not a file")
                    batch = _unpickle(fh.read(), f"{archive}:{member}")
                    x = np.asarray(batch[b"data"])
                    if x.dtype != np.uint8:  # casting would wrap 300 to 44 and truncate floats
                        raise PrunelimitError(f"corrupt archive {archive}: {folder}/{member} holds {x.dtype} "
                                              "images, not uint8")
                    y = checked_labels(batch[label_key], f"corrupt archive {archive}: {folder}/{member}", classes)
                    if x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (len(x),):
                        raise PrunelimitError(
                            f"corrupt or incomplete archive {archive}: {folder}/{member} holds data of shape "
                            f"{x.shape} and {y.size} labels (expected (N, 3072) and N labels)")
                    xs.append(x.reshape(-1, 3, 32, 32))
                    ys.append(y)
                return np.concatenate(xs), np.concatenate(ys)

            x_train, y_train = read(train_members)
            x_test, y_test = read(test_members)
    except (tarfile.TarError, EOFError, OSError, KeyError) as err:
        raise PrunelimitError(f"corrupt or incomplete archive {archive}: {err}") from None
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "num_classes": np.int64(classes)}


def parse_tinyimagenet(archive: str | os.PathLike) -> dict[str, np.ndarray]:
    """Parse ``tiny-imagenet-200.zip``: train/<wnid>/images/*.JPEG and val/ with its annotations.

    The official test split has no labels, so the labelled validation split is the test set.
    """
    from PIL import Image  # here, not at the top: only this parser decodes images

    def decode(raw: bytes, member: str) -> np.ndarray:
        img = Image.open(io.BytesIO(raw))
        if img.size != (64, 64):  # checked before decoding: a forged header cannot make us allocate gigapixels
            raise PrunelimitError(f"corrupt archive {archive}: {member} is {img.size[0]}x{img.size[1]}, not 64x64")
        return np.asarray(img.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)

    root = "tiny-imagenet-200"
    try:
        with zipfile.ZipFile(archive) as zf:
            # members are read into memory, never extracted, so names like ../x cannot write anywhere;
            # sizes are checked so a zip bomb is refused before it is inflated
            big = next((i for i in zf.infolist() if i.file_size > MAX_MEMBER_BYTES), None)
            if big is not None:
                raise PrunelimitError(f"corrupt archive {archive}: {big.filename} unpacks to {big.file_size} bytes, "
                                      f"more than any dataset file ({MAX_MEMBER_BYTES})")
            wnids = zf.read(f"{root}/wnids.txt").decode().split()
            index = {w: i for i, w in enumerate(wnids)}
            x_train, y_train, x_test, y_test = [], [], [], []
            names = sorted(zf.namelist())
            for name in names:
                parts = name.split("/")
                if len(parts) == 5 and parts[1] == "train" and parts[3] == "images" and parts[4].endswith(".JPEG"):
                    x_train.append(decode(zf.read(name), name))
                    y_train.append(index[parts[2]])
            annotations = zf.read(f"{root}/val/val_annotations.txt").decode().splitlines()
            for line in annotations:
                if not line.strip():
                    continue
                fields = line.split("\t")
                member = f"{root}/val/images/{fields[0]}"
                x_test.append(decode(zf.read(member), member))
                y_test.append(index[fields[1]])
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, Image.DecompressionBombError) as err:
        raise PrunelimitError(f"corrupt or incomplete archive {archive}: {err}") from None
    if not x_train or not x_test:
        raise PrunelimitError(f"archive {archive} holds no TinyImageNet images")
    return {"x_train": np.stack(x_train), "y_train": np.asarray(y_train, np.int64),
            "x_test": np.stack(x_test), "y_test": np.asarray(y_test, np.int64),
            "num_classes": np.int64(len(wnids))}


# IDX (LeCun's MNIST format): big-endian magic 0x00000800 + type code (0x08: unsigned bytes) * 256 +
# number of dimensions, one big-endian uint32 per dimension, then the values in row-major order.
IDX_MAGIC = {"images": 2051, "labels": 2049}  # 0x0803: uint8 (N, rows, cols); 0x0801: uint8 (N,)
MNIST_FILES = {"x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
               "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz"}


def read_idx(path: str | os.PathLike, kind: str) -> np.ndarray:
    """The uint8 array of a gzip'd IDX file of ``kind`` "images" or "labels"; any defect names the file."""
    magic = IDX_MAGIC[kind]
    ndim = magic & 0xFF
    where = f"corrupt or incomplete MNIST file {path}"
    try:
        with gzip.open(path, "rb") as fh:
            header = fh.read(4 * (1 + ndim))
            if len(header) < 4 * (1 + ndim):
                raise PrunelimitError(f"{where}: {len(header)} bytes, shorter than an IDX {kind} header")
            found, *dims = struct.unpack(f">{1 + ndim}I", header)
            if found != magic:
                raise PrunelimitError(f"{where}: magic number {found}, expected {magic} (IDX {kind})")
            size = math.prod(dims)
            if size > MAX_MEMBER_BYTES:
                raise PrunelimitError(f"{where}: its header announces {size} bytes, more than any dataset file "
                                      f"({MAX_MEMBER_BYTES})")
            data = fh.read(size)
            if len(data) < size:
                raise PrunelimitError(f"{where}: truncated, its header announces {'x'.join(map(str, dims))} = "
                                      f"{size} bytes of {kind}, the file holds {len(data)}")
            if fh.read(1):
                raise PrunelimitError(f"{where}: bytes follow the {size} its header announces")
    except (OSError, EOFError, zlib.error) as err:  # OSError: gzip.BadGzipFile; EOFError: a cut gzip stream
        raise PrunelimitError(f"{where}: {err}") from None
    return np.frombuffer(data, np.uint8).reshape(dims)


def parse_mnist(paths: Mapping[str, str | os.PathLike]) -> dict[str, np.ndarray]:
    """Parse MNIST's four files (``paths`` keyed by their official names, MNIST_FILES) into uint8
    (N, 1, 28, 28) images and int64 labels: 60,000 training and 10,000 test images in the official set."""
    arrays: dict[str, np.ndarray] = {"num_classes": np.int64(10)}
    for split in ("train", "test"):
        images_path, labels_path = paths[MNIST_FILES[f"x_{split}"]], paths[MNIST_FILES[f"y_{split}"]]
        x, y = read_idx(images_path, "images"), read_idx(labels_path, "labels")
        if x.shape[1:] != (28, 28):
            raise PrunelimitError(f"corrupt MNIST file {images_path}: images are {x.shape[1]}x{x.shape[2]}, not 28x28")
        if len(y) != len(x):
            raise PrunelimitError(f"corrupt MNIST file {labels_path}: {len(y)} labels for the {len(x)} images of "
                                  f"{images_path}")
        arrays[f"x_{split}"] = x[:, None].copy()  # a writable array, not a view of the file's bytes
        arrays[f"y_{split}"] = checked_labels(y, f"corrupt MNIST file {labels_path}", 10)
    return arrays
