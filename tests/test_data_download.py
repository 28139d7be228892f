"""Dataset download and parsing end to end, against small archives in the real formats.

The tests build a cifar-10-python.tar.gz, a cifar-100-python.tar.gz, a tiny-imagenet-200.zip and
MNIST's four gzip'd IDX files with a few images each (same member names, pickle layout, annotation
files and IDX headers as the official files) and serve them over HTTP on 127.0.0.1 from a threaded
server that supports Range requests and can be told to cut a response short.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import pickle
import re
import socket
import struct
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline_utils import load_config, snakemake
from prunelimit.archives import download
from prunelimit.config import validate_config
from prunelimit.data import load_tensors, prepare_dataset
from prunelimit.datasets import OFFICIAL_SOURCES, dataset_shape
from prunelimit.io import PrunelimitError

# ---------------------------------------------------------------------------------------------
# A local HTTP server for archives
# ---------------------------------------------------------------------------------------------


@dataclass
class ArchiveServer:
    """Files served at ``/<name>``; what was asked is logged; responses can be cut or chunked."""

    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before closing (once)
    chunked: set[str] = field(default_factory=set)  # paths sent chunked, without Content-Length
    honour_range: bool = True

    def add(self, name: str, body: bytes) -> tuple[str, str]:
        """Serve ``body`` as ``name``; return its URL and md5."""
        self.files[f"/{name}"] = body
        return self.url(name), hashlib.md5(body).hexdigest()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def cut_next(self, name: str, after: int) -> None:
        """The next response for ``name`` announces its full length but closes after ``after`` bytes."""
        self.cut[f"/{name}"] = after


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        state = self.server.state
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        body = state.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", range_header or "")
        if match and state.honour_range:
            start = int(match[1])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        cut = state.cut.pop(self.path, None)
        if self.path in state.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = payload if cut is None else payload[:cut]
            self.wfile.write(f"{len(sent):x}\r\n".encode() + sent + b"\r\n")
            if cut is None:
                self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload if cut is None else payload[:cut])
        self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ArchiveServer


@contextlib.contextmanager
def archive_server():
    """An HTTP server on 127.0.0.1 serving the archives its state is given (shared with test_security)."""
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.state = ArchiveServer(port=httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server():
    with archive_server() as state:
        yield state


# ---------------------------------------------------------------------------------------------
# Archives in the official formats
# ---------------------------------------------------------------------------------------------


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _batch(rng: np.random.Generator, n: int, classes: int, label_key: bytes,
           name: str) -> tuple[dict, np.ndarray, list]:
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # row: 1024 red, 1024 green, 1024 blue
    labels = [int(v) for v in rng.integers(0, classes, n)]  # the official files hold a list
    batch = {b"batch_label": name.encode(), label_key: labels, b"data": data,
             b"filenames": [f"img_{name}_{i}.png".encode() for i in range(n)]}
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [v % 20 for v in labels]
    return batch, data, labels


def make_cifar10(seed: int = 0) -> tuple[bytes, dict]:
    """cifar-10-python.tar.gz: cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    members, xs, ys = {}, [], []
    for i, n in enumerate([3, 2, 2, 2, 3], start=1):  # uneven sizes: concatenation order matters
        batch, data, labels = _batch(rng, n, 10, b"labels", f"training batch {i} of 5")
        members[f"cifar-10-batches-py/data_batch_{i}"] = pickle.dumps(batch, protocol=2)
        xs.append(data)
        ys += labels
    test, test_data, test_labels = _batch(rng, 4, 10, b"labels", "testing batch 1 of 1")
    members["cifar-10-batches-py/test_batch"] = pickle.dumps(test, protocol=2)
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2)
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    return _tar_gz(members), {"train": (np.concatenate(xs), ys), "test": (test_data, test_labels), "classes": 10}


def make_cifar100(seed: int = 1) -> tuple[bytes, dict]:
    """cifar-100-python.tar.gz: cifar-100-python/train, test (fine and coarse labels), meta."""
    rng = np.random.default_rng(seed)
    train, train_data, train_labels = _batch(rng, 6, 100, b"fine_labels", "training batch 1 of 1")
    test, test_data, test_labels = _batch(rng, 3, 100, b"fine_labels", "testing batch 1 of 1")
    members = {"cifar-100-python/train": pickle.dumps(train, protocol=2),
               "cifar-100-python/test": pickle.dumps(test, protocol=2),
               "cifar-100-python/meta": pickle.dumps({b"fine_label_names": [b"x"] * 100}, protocol=2)}
    return _tar_gz(members), {"train": (train_data, train_labels), "test": (test_data, test_labels), "classes": 100}


def _jpeg(color: tuple[int, int, int], gray: bool = False) -> bytes:
    img = Image.new("RGB", (64, 64), color)
    if gray:
        img = img.convert("L")  # the official train set holds some greyscale JPEGs
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _decode(raw: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)


def make_tinyimagenet() -> tuple[bytes, dict]:
    """tiny-imagenet-200.zip: wnids.txt (unsorted), train/<wnid>/images/*.JPEG with boxes files,
    val/images + val/val_annotations.txt, and an unlabelled test/ split that must be ignored."""
    root = "tiny-imagenet-200"
    wnids = ["n02124075", "n01443537", "n04067472"]  # label = position in wnids.txt, not sorted order
    entries: dict[str, bytes | None] = {f"{root}/": None, f"{root}/train/": None, f"{root}/val/": None,
                                        f"{root}/val/images/": None, f"{root}/test/images/": None}
    entries[f"{root}/wnids.txt"] = ("\n".join(wnids) + "\n").encode()
    entries[f"{root}/words.txt"] = "".join(f"{w}\tthing {w}\n" for w in wnids).encode()
    train = []  # (member name, raw bytes, label)
    color = 10
    for label, wnid in enumerate(wnids):
        entries[f"{root}/train/{wnid}/"] = None
        entries[f"{root}/train/{wnid}/images/"] = None
        boxes = []
        for i in range(2):
            name = f"{root}/train/{wnid}/images/{wnid}_{i}.JPEG"
            raw = _jpeg((color, 255 - color, (7 * color) % 256), gray=(label == 2 and i == 1))
            color += 37
            entries[name] = raw
            train.append((name, raw, label))
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t63\t63")
        entries[f"{root}/train/{wnid}/{wnid}_boxes.txt"] = ("\n".join(boxes) + "\n").encode()
    val = []
    annotations = []
    for i, label in enumerate([1, 0, 2, 1]):
        raw = _jpeg((200 - 30 * i, 20 * i, 90))
        entries[f"{root}/val/images/val_{i}.JPEG"] = raw
        annotations.append(f"val_{i}.JPEG\t{wnids[label]}\t1\t2\t60\t61")
        val.append((raw, label))
    entries[f"{root}/val/val_annotations.txt"] = ("\n".join(annotations) + "\n").encode()
    entries[f"{root}/test/images/test_0.JPEG"] = _jpeg((1, 2, 3))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            if data is None:
                zf.writestr(zipfile.ZipInfo(name), b"")  # directory entry, as in the official zip
            else:
                zf.writestr(name, data)
    train.sort(key=lambda t: t[0])
    return buf.getvalue(), {"train": train, "test": val, "classes": len(wnids)}


ARCHIVES = {"cifar10": ("cifar-10-python.tar.gz", make_cifar10),
            "cifar100": ("cifar-100-python.tar.gz", make_cifar100),
            "tinyimagenet": ("tiny-imagenet-200.zip", make_tinyimagenet)}


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
# Library level: prepare_dataset
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_archive_gives_the_right_arrays(server, tmp_path, name):
    filename, make = ARCHIVES[name]
    body, expected = make()
    url, md5 = server.add(filename, body)
    out = prepare_dataset(name, tmp_path / f"{name}.npz", {"url": url, "md5": md5}, progress=False)
    with np.load(out) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for split in ("train", "test"):
        rows, labels = expected[split]
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        assert x.dtype == np.uint8 and x.shape == (len(rows), 3, 32, 32)
        assert y.dtype == np.int64 and y.tolist() == labels
        # the official layout: each row is the red, then green, then blue 32x32 plane
        for c in range(3):
            np.testing.assert_array_equal(x[:, c], rows[:, c * 1024:(c + 1) * 1024].reshape(-1, 32, 32))
    assert int(arrays["num_classes"]) == expected["classes"]
    channels = expected["train"][0].reshape(-1, 3, 1024).transpose(1, 0, 2).reshape(3, -1) / 255.0
    np.testing.assert_allclose(arrays["mean"], channels.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(arrays["std"], channels.std(axis=1), rtol=1e-5)
    assert server.requests == [(f"/{filename}", None)]
    assert _files(tmp_path) == [f"{name}.npz", f"downloads/{filename}"]  # archive cached, nothing else
    tensors = load_tensors(out)
    assert tensors.in_shape == (3, 32, 32) and tensors.num_classes == expected["classes"]


def test_tinyimagenet_archive_gives_the_right_arrays(server, tmp_path):
    body, expected = make_tinyimagenet()
    url, md5 = server.add("tiny-imagenet-200.zip", body)
    out = prepare_dataset("tinyimagenet", tmp_path / "ti.npz", {"url": url, "md5": md5}, progress=False)
    with np.load(out) as npz:
        arrays = {k: npz[k] for k in npz.files}
    assert arrays["x_train"].dtype == np.uint8 and arrays["x_train"].shape == (6, 3, 64, 64)
    assert arrays["x_test"].dtype == np.uint8 and arrays["x_test"].shape == (4, 3, 64, 64)
    for i, (_, raw, label) in enumerate(expected["train"]):
        np.testing.assert_array_equal(arrays["x_train"][i], _decode(raw))
        assert arrays["y_train"][i] == label
    for i, (raw, label) in enumerate(expected["test"]):  # the labelled val split is the test set
        np.testing.assert_array_equal(arrays["x_test"][i], _decode(raw))
        assert arrays["y_test"][i] == label
    # each flat colour survives JPEG closely, so a swapped image would show
    first = arrays["x_test"][0].reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(first, [200, 0, 90], atol=3)
    grey = arrays["x_train"][5]  # label 2, image 1 was saved greyscale: three equal channels
    assert arrays["y_train"][5] == 2 and (grey[0] == grey[1]).all() and (grey[1] == grey[2]).all()
    assert arrays["y_train"].dtype == np.int64 and int(arrays["num_classes"]) == 3


def test_wrong_md5_names_md5_and_leaves_nothing(server, tmp_path):
    body, _ = make_cifar10()
    url, md5 = server.add("cifar-10-python.tar.gz", body)
    wrong = "0" * 32
    with pytest.raises(PrunelimitError, match=f"md5 mismatch for {re.escape(url)}: expected {wrong}, got {md5}"):
        prepare_dataset("cifar10", tmp_path / "cifar10.npz", {"url": url, "md5": wrong}, progress=False)
    assert _files(tmp_path) == []


def test_truncated_transfer_fails_clearly_then_resumes_with_range(server, tmp_path):
    body, expected = make_cifar10()
    url, md5 = server.add("cifar-10-python.tar.gz", body)
    half = len(body) // 2
    server.cut_next("cifar-10-python.tar.gz", half)
    out = tmp_path / "cifar10.npz"
    with pytest.raises(PrunelimitError, match=rf"truncated: {half} of {len(body)} bytes; rerun to resume"):
        prepare_dataset("cifar10", out, {"url": url, "md5": md5}, progress=False)
    assert _files(tmp_path) == ["downloads/cifar-10-python.tar.gz.part"]  # kept for resuming, no .npz
    prepare_dataset("cifar10", out, {"url": url, "md5": md5}, progress=False)
    assert server.requests == [("/cifar-10-python.tar.gz", None), ("/cifar-10-python.tar.gz", f"bytes={half}-")]
    with np.load(out) as npz:
        np.testing.assert_array_equal(npz["y_train"], expected["train"][1])
    assert _files(tmp_path) == ["cifar10.npz", "downloads/cifar-10-python.tar.gz"]


def test_truncated_chunked_transfer_fails_clearly_then_recovers(server, tmp_path):
    """A server without Content-Length (chunked) that drops the connection mid-way."""
    body, _ = make_cifar100()
    url, md5 = server.add("cifar-100-python.tar.gz", body)
    server.chunked.add("/cifar-100-python.tar.gz")
    server.cut_next("cifar-100-python.tar.gz", 100)
    out = tmp_path / "cifar100.npz"
    with pytest.raises(PrunelimitError, match=f"download of {re.escape(url)} was interrupted"):
        prepare_dataset("cifar100", out, {"url": url, "md5": md5}, progress=False)
    assert not out.exists()
    prepare_dataset("cifar100", out, {"url": url, "md5": md5}, progress=False)
    assert out.exists()


def test_server_ignoring_range_restarts_the_file(server, tmp_path):
    body, _ = make_cifar100()
    url, md5 = server.add("cifar-100-python.tar.gz", body)
    server.honour_range = False
    server.cut_next("cifar-100-python.tar.gz", 1000)
    dest = tmp_path / "c.tar.gz"
    with pytest.raises(PrunelimitError, match="truncated"):
        download(url, dest, md5, progress=False)
    assert download(url, dest, md5, progress=False) == dest
    assert server.requests[1] == ("/cifar-100-python.tar.gz", "bytes=1000-")  # asked, got a 200
    assert dest.read_bytes() == body


def test_complete_part_file_is_finished_after_416(server, tmp_path):
    """A .part that already holds the whole file (killed between the last byte and the rename)."""
    body, _ = make_cifar100()
    url, md5 = server.add("cifar-100-python.tar.gz", body)
    dest = tmp_path / "c.tar.gz"
    (tmp_path / "c.tar.gz.part").write_bytes(body)
    assert download(url, dest, md5, progress=False) == dest
    assert dest.read_bytes() == body and not (tmp_path / "c.tar.gz.part").exists()


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "tinyimagenet"])
def test_corrupt_archive_with_matching_md5_is_reported_as_corrupt(server, tmp_path, name):
    filename, _ = ARCHIVES[name]
    garbage = np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    url, md5 = server.add(filename, garbage)
    out = tmp_path / f"{name}.npz"
    with pytest.raises(PrunelimitError, match=r"corrupt or incomplete archive .*" + re.escape(filename)):
        prepare_dataset(name, out, {"url": url, "md5": md5}, progress=False)
    assert not out.exists()
    assert [p for p in _files(tmp_path) if not p.startswith("downloads/")] == []


@pytest.mark.parametrize("data, labels", [(np.zeros((2, 100), np.uint8), [0, 1]),  # rows are not 3x32x32
                                          (np.zeros((2, 3072), np.uint8), [0, 1, 2])])  # labels do not match
def test_cifar_batch_of_the_wrong_shape_is_reported_as_corrupt(server, tmp_path, data, labels):
    """A well-formed tar.gz whose batches do not hold N 3x32x32 images and N labels."""
    batch = {b"data": data, b"labels": labels}
    members = {f"cifar-10-batches-py/data_batch_{i}": pickle.dumps(batch, protocol=2) for i in range(1, 6)}
    members["cifar-10-batches-py/test_batch"] = pickle.dumps(batch, protocol=2)
    url, md5 = server.add("cifar-10-python.tar.gz", _tar_gz(members))
    with pytest.raises(PrunelimitError, match="corrupt or incomplete archive .*data_batch_1"):
        prepare_dataset("cifar10", tmp_path / "c.npz", {"url": url, "md5": md5}, progress=False)
    assert not (tmp_path / "c.npz").exists()


def test_tinyimagenet_image_of_the_wrong_size_is_named(server, tmp_path):
    body, _ = make_tinyimagenet()
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        entries = {info.filename: zf.read(info) for info in zf.infolist()}
    small = io.BytesIO()
    Image.new("RGB", (32, 32), (5, 5, 5)).save(small, format="JPEG")
    entries["tiny-imagenet-200/val/images/val_2.JPEG"] = small.getvalue()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    url, md5 = server.add("tiny-imagenet-200.zip", buf.getvalue())
    with pytest.raises(PrunelimitError, match=r"corrupt .*val/images/val_2.JPEG is 32x32, not 64x64"):
        prepare_dataset("tinyimagenet", tmp_path / "t.npz", {"url": url, "md5": md5}, progress=False)
    assert not (tmp_path / "t.npz").exists()


def test_cifar_archive_missing_a_batch_names_it(server, tmp_path):
    body, _ = make_cifar10()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if not m.name.endswith("data_batch_4")}
    url, md5 = server.add("cifar-10-python.tar.gz", _tar_gz(members))
    with pytest.raises(PrunelimitError, match="data_batch_4"):
        prepare_dataset("cifar10", tmp_path / "c.npz", {"url": url, "md5": md5}, progress=False)
    assert not (tmp_path / "c.npz").exists()


# ---------------------------------------------------------------------------------------------
# MNIST: four gzip'd IDX files under one base URL, each with its own md5
# ---------------------------------------------------------------------------------------------

MNIST_NAMES = {"x_train": "train-images-idx3-ubyte.gz", "y_train": "train-labels-idx1-ubyte.gz",
               "x_test": "t10k-images-idx3-ubyte.gz", "y_test": "t10k-labels-idx1-ubyte.gz"}


def _idx(array: np.ndarray) -> bytes:
    """IDX bytes of a uint8 array: magic 0x0000 08 <ndim>, big-endian uint32 dims, the values."""
    return struct.pack(f">I{array.ndim}I", 0x0800 + array.ndim, *array.shape) + array.astype(np.uint8).tobytes()


def make_mnist(n_train: int = 12, n_test: int = 5, seed: int = 4) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """The four .gz files (by official name) and the arrays they hold."""
    rng = np.random.default_rng(seed)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}
    return {MNIST_NAMES[k]: gzip.compress(_idx(v), mtime=0) for k, v in arrays.items()}, arrays


def _serve_mnist(server, files: dict[str, bytes]) -> dict:
    """Serve the files under /mnist/; the options a config's datasets.mnist plus per-file md5s give."""
    md5s = {name: server.add(f"mnist/{name}", body)[1] for name, body in files.items()}
    return {"url": server.url("mnist/"), "files": md5s}


def test_mnist_files_give_the_right_arrays(server, tmp_path):
    files, expected = make_mnist()
    options = _serve_mnist(server, files)
    out = prepare_dataset("mnist", tmp_path / "mnist.npz", options, progress=False)
    with np.load(out) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        assert x.dtype == np.uint8 and x.shape == (len(expected[f"x_{split}"]), 1, 28, 28)
        np.testing.assert_array_equal(x[:, 0], expected[f"x_{split}"])
        assert y.dtype == np.int64 and y.tolist() == expected[f"y_{split}"].tolist()
    assert int(arrays["num_classes"]) == 10
    assert (arrays["x_train"].shape[1:], 10) == dataset_shape("mnist")
    np.testing.assert_allclose(arrays["mean"], [expected["x_train"].mean() / 255], rtol=1e-5)
    np.testing.assert_allclose(arrays["std"], [(expected["x_train"] / 255).std()], rtol=1e-5)
    assert [r[0] for r in server.requests] == [f"/mnist/{name}" for name in MNIST_NAMES.values()]
    assert _files(tmp_path) == sorted(["mnist.npz", *(f"downloads/{name}" for name in MNIST_NAMES.values())])
    tensors = load_tensors(out)
    assert tensors.in_shape == (1, 28, 28) and tensors.num_classes == 10


def test_mnist_official_source_is_four_files_with_torchvisions_md5s():
    source = OFFICIAL_SOURCES["mnist"]
    assert source["url"] == "http://yann.lecun.com/exdb/mnist/"
    assert list(source["files"]) == list(MNIST_NAMES.values())
    assert all(re.fullmatch("[0-9a-f]{32}", md5) for md5 in source["files"].values())


def test_config_overrides_the_mnist_base_url(server, tmp_path):
    """datasets.mnist: {url: ...} passes the schema and is the options the dataset rule passes on."""
    files, expected = make_mnist(n_train=3, n_test=2)
    served = _serve_mnist(server, files)
    config = load_config()
    config["datasets"]["mnist"] = {"url": served["url"].rstrip("/")}  # a base URL without its slash works too
    validate_config(config)
    options = config["datasets"]["mnist"]
    assert options == {"url": served["url"].rstrip("/")}
    # the official md5s do not match the tiny files: the first one is refused, named by its URL
    first = MNIST_NAMES["x_train"]
    with pytest.raises(PrunelimitError, match=f"md5 mismatch for {re.escape(served['url'] + first)}: "
                                              f"expected {OFFICIAL_SOURCES['mnist']['files'][first]}"):
        prepare_dataset("mnist", tmp_path / "m.npz", options, progress=False)
    assert _files(tmp_path) == []
    out = prepare_dataset("mnist", tmp_path / "m.npz", {**options, "files": served["files"]}, progress=False)
    with np.load(out) as npz:
        np.testing.assert_array_equal(npz["y_test"], expected["y_test"])


def test_mnist_single_md5_is_refused(tmp_path):
    with pytest.raises(PrunelimitError, match="datasets.mnist.md5: mnist is 4 files, each checked against its own"):
        prepare_dataset("mnist", tmp_path / "m.npz", {"url": "http://127.0.0.1:1/", "md5": "0" * 32}, progress=False)
    assert _files(tmp_path) == []


def test_mnist_wrong_md5_names_the_file_and_leaves_no_dataset(server, tmp_path):
    files, _ = make_mnist()
    options = _serve_mnist(server, files)
    culprit = MNIST_NAMES["y_test"]
    wrong = {**options, "files": {**options["files"], culprit: "0" * 32}}
    out = tmp_path / "mnist.npz"
    with pytest.raises(PrunelimitError, match=rf"md5 mismatch for {re.escape(options['url'] + culprit)}: "
                                              rf"expected {'0' * 32}, got {options['files'][culprit]}"):
        prepare_dataset("mnist", out, wrong, progress=False)
    # the three verified files stay cached; the bad one and any .part are gone; no dataset file
    assert _files(tmp_path) == sorted(f"downloads/{n}" for n in MNIST_NAMES.values() if n != culprit)
    prepare_dataset("mnist", out, options, progress=False)
    assert [r[0] for r in server.requests[4:]] == [f"/mnist/{culprit}"]  # only the refused file again
    assert out.exists()


def _truncated(body: bytes) -> bytes:
    """The same IDX header with the last 100 bytes of the values cut off, gzip'd again."""
    return gzip.compress(gzip.decompress(body)[:-100], mtime=0)


@pytest.mark.parametrize(("key", "damage", "message"), [
    ("x_train", _truncated, r"truncated, its header announces 12x28x28 = 9408 bytes of images, the file holds 9308"),
    ("y_test", lambda body: body[: len(body) // 2], r"Compressed file ended"),  # a cut gzip stream
    ("x_test", lambda body: b"not gzip at all", r"[Nn]ot a gzipped file"),
    ("y_train", lambda body: gzip.compress(_idx(np.zeros((2, 28, 28), np.uint8))), r"magic number 2051, expected 2049"),
    ("y_test", lambda body: gzip.compress(_idx(np.zeros(4, np.uint8))), r"4 labels for the 5 images of .*t10k-images"),
    ("x_test", lambda body: gzip.compress(_idx(np.zeros((5, 8, 8), np.uint8))), r"images are 8x8, not 28x28"),
    ("y_train", lambda body: gzip.compress(_idx(np.full(12, 10, np.uint8))), r"label 10 is outside \[0, 10\)"),
    ("x_train", lambda body: gzip.compress(gzip.decompress(body) + b"\0"), r"bytes follow the 9408"),
], ids=["truncated-idx", "cut-gzip", "not-gzip", "wrong-magic", "label-count", "image-size", "label-range",
        "trailing-bytes"])
def test_damaged_mnist_file_is_one_error_naming_it(server, tmp_path, key, damage, message):
    files, _ = make_mnist()
    files[MNIST_NAMES[key]] = damage(files[MNIST_NAMES[key]])
    options = _serve_mnist(server, files)  # md5s of the damaged files: the download succeeds
    out = tmp_path / "mnist.npz"
    with pytest.raises(PrunelimitError, match=rf"MNIST file .*{re.escape(MNIST_NAMES[key])}.*{message}") as info:
        prepare_dataset("mnist", out, options, progress=False)
    assert "\n" not in str(info.value)
    assert not out.exists()
    assert [p for p in _files(tmp_path) if not p.startswith("downloads/")] == []
    assert not list(tmp_path.rglob("*.part"))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the with-block ends


def test_unreachable_url_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/cifar-10-python.tar.gz"
    with pytest.raises(PrunelimitError, match=rf"download of {re.escape(url)} failed: .*[Cc]onnection refused"):
        prepare_dataset("cifar10", tmp_path / "c.npz", {"url": url, "md5": "0" * 32}, progress=False)
    assert _files(tmp_path) == []


def test_missing_file_on_server_is_a_clear_error(server, tmp_path):
    url = server.url("nothing-here.tar.gz")
    with pytest.raises(PrunelimitError, match=rf"download of {re.escape(url)} failed: HTTP 404"):
        prepare_dataset("cifar10", tmp_path / "c.npz", {"url": url, "md5": "0" * 32}, progress=False)
    assert _files(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Pipeline level: the dataset rule through Snakemake, in a scratch --directory
# ---------------------------------------------------------------------------------------------


def _cifar_config(make_config, path: Path, url: str, md5: str) -> Path:
    return make_config(
        path, preset="dl", device="cpu", datasets={"cifar10": {"url": url, "md5": md5}}, variants=["dense"],
        train_defaults={**load_config()["train_defaults"], "epochs": 1, "batch_size": 4, "max_steps": 1},
        tasks={"fc5_cifar10": {"model": "fc5", "dataset": "cifar10", "l1": 5.0e-5}})


def test_pipeline_downloads_parses_and_trains_on_cifar10(server, tmp_path, small_config):
    """One snakemake call: a dropped first transfer is resumed by the rule's retry, then fc5 trains."""
    body, expected = make_cifar10()
    url, md5 = server.add("cifar-10-python.tar.gz", body)
    server.cut_next("cifar-10-python.tar.gz", len(body) // 3)
    config = _cifar_config(small_config, tmp_path / "dl.yaml", url, md5)
    work = tmp_path / "work"
    snakemake(work, "--cores", "1", "results/dl/train/fc5_cifar10/dense/metrics.json", configfile=config, timeout=600)
    with np.load(work / "results/dl/data/cifar10.npz") as npz:
        assert npz["x_train"].shape == (12, 3, 32, 32) and npz["x_train"].dtype == np.uint8
        np.testing.assert_array_equal(npz["y_test"], expected["test"][1])
    assert [r[1] for r in server.requests] == [None, f"bytes={len(body) // 3}-"]  # resumed, not restarted
    metrics = json.loads((work / "results/dl/train/fc5_cifar10/dense/metrics.json").read_text())
    assert metrics["dataset"] == "cifar10" and metrics["in_shape"] == [3, 32, 32] and metrics["steps"] == 1
    assert not list((work / "results").rglob("*.part"))


def test_pipeline_wrong_md5_stops_with_one_clear_message(server, tmp_path, small_config):
    body, _ = make_cifar10()
    url, md5 = server.add("cifar-10-python.tar.gz", body)
    config = _cifar_config(small_config, tmp_path / "dl.yaml", url, "f" * 32)
    work = tmp_path / "work"
    proc = snakemake(work, "--cores", "1", "results/dl/data/cifar10.npz", configfile=config, timeout=300, check=False)
    assert proc.returncode != 0
    assert f"error: md5 mismatch for {url}: expected {'f' * 32}, got {md5}" in proc.stderr
    log = (work / "results/dl/logs/data/cifar10.log").read_text()
    assert "md5 mismatch" in log and "Traceback" not in log
    assert not (work / "results/dl/data/cifar10.npz").exists()
    assert not list((work / "results/dl/data").rglob("*.tar.gz*"))
