"""Every file a user or a server can hand to prunelimit, with a hostile payload in it.

The payload is a pickled object whose unpickling creates a marker file (``exec`` of one
``open(...)`` call): each test asserts that the read is refused in one line and that the marker
does not exist. ``test_the_payload_runs_under_plain_pickle`` shows the payload is live, so a
loader that unpickles it would fail these tests.

Places covered: model checkpoints (checkpoint.load_state_dict, ``prunelimit predict --checkpoint``),
training resume files, the CIFAR-10 / CIFAR-100 / TinyImageNet archives (served on 127.0.0.1
through the real download code), dataset .npz files (allow_pickle off), ``--data`` .npz and .pt
files, and config YAML. The last test reads the source for any loader outside this list.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from prunelimit import archives, cli
from prunelimit.checkpoint import load_state_dict
from prunelimit.data import TensorData, load_tensors, prepare_dataset
from prunelimit.io import PrunelimitError, load_npz
from prunelimit.models import build_model
from prunelimit.train import TrainConfig, train
from test_data_download import ARCHIVES, _tar_gz, archive_server, make_tinyimagenet

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server():
    with archive_server() as state:
        yield state


class Payload:
    """Unpickling this runs code: it creates the file ``path``."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').close()",)


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "PAYLOAD_RAN"


def test_the_payload_runs_under_plain_pickle(marker):
    pickle.loads(pickle.dumps({"w": Payload(marker)}, protocol=2))
    assert marker.exists()


def _one_line(message: str) -> None:
    assert "\n" not in message.strip(), message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def _mlp():
    return build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[8])


def _hostile_checkpoint(path: Path, marker: Path) -> Path:
    state = dict(_mlp().state_dict())
    state["linear.0.weight"] = Payload(marker)
    torch.save(state, path)
    return path


def test_checkpoint_with_a_payload_is_refused(tmp_path, marker):
    ckpt = _hostile_checkpoint(tmp_path / "model.pt", marker)
    with pytest.raises(PrunelimitError, match=r"cannot read checkpoint .*model\.pt: it holds a pickled call to "
                                              r"exec, which weights-only loading refuses") as err:
        load_state_dict(_mlp(), ckpt)
    _one_line(str(err.value))
    assert not marker.exists()


def test_predict_refuses_a_checkpoint_with_a_payload(tmp_path, marker, capsys):
    ckpt = _hostile_checkpoint(tmp_path / "model.pt", marker)
    np.savez(tmp_path / "d.npz", x_train=np.zeros((8, 1, 8, 8), np.float32), y_train=np.arange(8) % 2)
    code = cli.main(["predict", "--model", "mlp", "--model-args", '{"hidden": [8]}', "--checkpoint", str(ckpt),
                     "--data", str(tmp_path / "d.npz"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "weights-only loading refuses" in err
    _one_line(err)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# Resume files
# ---------------------------------------------------------------------------------------------


def test_planted_resume_file_does_not_run_and_training_starts_afresh(tmp_path, marker, caplog):
    rng = np.random.default_rng(0)
    data = TensorData(torch.from_numpy(rng.normal(size=(64, 1, 8, 8)).astype(np.float32)),
                      torch.from_numpy(rng.integers(0, 10, 64)), torch.zeros(4, 1, 8, 8),
                      torch.zeros(4, dtype=torch.long), 10)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05)
    resume = tmp_path / "l1.resume.pt"
    torch.save({"model": _mlp().state_dict(), "epoch": 1, "key": Payload(marker)}, resume)
    fresh, planted = _mlp(), _mlp()
    train(fresh, data, cfg, progress=False)
    with caplog.at_level(logging.WARNING, logger="prunelimit"):
        train(planted, data, cfg, checkpoint=resume, progress=False)
    assert not marker.exists()
    assert "not resuming" in caplog.text and "weights-only loading refuses" in caplog.text
    for a, b in zip(fresh.parameters(), planted.parameters()):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# Downloaded archives, through the real download code on 127.0.0.1
# ---------------------------------------------------------------------------------------------


def _members(body: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.mark.parametrize(("name", "member", "where"), [
    ("cifar10", "cifar-10-batches-py/data_batch_1", "value"),  # a batch with one poisoned entry
    ("cifar10", "cifar-10-batches-py/test_batch", "whole"),  # the whole member is the payload
    ("cifar100", "cifar-100-python/train", "value"),
])
def test_cifar_archive_with_a_pickle_payload_is_refused(server, tmp_path, marker, name, member, where):  # noqa: F811
    filename, make = ARCHIVES[name]
    members = _members(make()[0])
    if where == "value":
        batch = pickle.loads(members[member])  # our own benign batch
        batch[b"batch_label"] = Payload(marker)
        members[member] = pickle.dumps(batch, protocol=2)
    else:
        members[member] = pickle.dumps(Payload(marker), protocol=2)
    url, md5 = server.add(filename, _tar_gz(members))
    out = tmp_path / f"{name}.npz"
    with pytest.raises(PrunelimitError, match=rf"refusing CIFAR batch .*{re.escape(member.split('/')[1])}: "
                                              r"its pickle calls (__builtin__|builtins)\.exec") as err:
        prepare_dataset(name, out, {"url": url, "md5": md5}, progress=False)
    _one_line(str(err.value))
    assert not marker.exists()
    assert not out.exists()


def test_allowlist_reads_the_official_python2_pickle_names(server, tmp_path):
    """The official files were written by Python 2's numpy: they name numpy.core.multiarray."""
    filename, make = ARCHIVES["cifar10"]
    body, expected = make()
    members = _members(body)
    renamed = 0
    for name, raw in members.items():
        if b"cnumpy._core.multiarray\n" in raw:  # protocol 2 names its globals in text lines
            members[name] = raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            renamed += 1
    assert renamed == 6  # five training batches and the test batch
    url, md5 = server.add(filename, _tar_gz(members))
    out = prepare_dataset("cifar10", tmp_path / "c.npz", {"url": url, "md5": md5}, progress=False)
    with np.load(out) as npz:
        assert npz["y_test"].tolist() == expected["test"][1]


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, raw in entries.items():
            zf.writestr(name, raw)
    return buf.getvalue()


def _tinyimagenet_entries() -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(make_tinyimagenet()[0])) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


def _png_header(width: int, height: int) -> bytes:
    """A PNG that announces ``width``×``height`` pixels in a few bytes (a decompression bomb's header)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_tinyimagenet_image_announcing_gigapixels_is_refused_before_decoding(server, tmp_path):
    entries = _tinyimagenet_entries()
    entries["tiny-imagenet-200/val/images/val_0.JPEG"] = _png_header(9000, 9000)  # 243 MB once decoded
    url, md5 = server.add("tiny-imagenet-200.zip", _zip(entries))
    with pytest.raises(PrunelimitError, match=r"val_0\.JPEG is 9000x9000, not 64x64"):
        prepare_dataset("tinyimagenet", tmp_path / "t.npz", {"url": url, "md5": md5}, progress=False)
    assert not (tmp_path / "t.npz").exists()


def test_tinyimagenet_member_bigger_than_any_dataset_file_is_refused(server, tmp_path, monkeypatch):
    """A zip bomb: refused by its declared size, before inflating (the cap lowered to keep the test small)."""
    monkeypatch.setattr(archives, "MAX_MEMBER_BYTES", 50_000)
    entries = _tinyimagenet_entries()
    entries["tiny-imagenet-200/words.txt"] = b"\x00" * 200_000
    url, md5 = server.add("tiny-imagenet-200.zip", _zip(entries))
    with pytest.raises(PrunelimitError, match=r"words\.txt unpacks to 200000 bytes, more than any dataset file"):
        prepare_dataset("tinyimagenet", tmp_path / "t.npz", {"url": url, "md5": md5}, progress=False)


def test_tinyimagenet_member_names_cannot_write_outside(server, tmp_path):
    """Members are read in memory, never extracted: a ../ name writes nothing anywhere."""
    entries = _tinyimagenet_entries()
    entries["tiny-imagenet-200/../../escaped.txt"] = b"x"
    entries["/tmp/absolute-escape.txt"] = b"x"
    url, md5 = server.add("tiny-imagenet-200.zip", _zip(entries))
    work = tmp_path / "a" / "b"
    prepare_dataset("tinyimagenet", work / "t.npz", {"url": url, "md5": md5}, progress=False)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["a/b/downloads/tiny-imagenet-200.zip", "a/b/t.npz"]
    assert not Path("/tmp/absolute-escape.txt").exists()


# ---------------------------------------------------------------------------------------------
# Array files: dataset .npz (pipeline), --data .npz and .pt (predict)
# ---------------------------------------------------------------------------------------------


def _object_npz(path: Path, marker: Path) -> Path:
    """A dataset .npz whose labels are an object array: numpy stores it as a pickle."""
    with open(path, "wb") as fh:
        np.savez(fh, x_train=np.zeros((4, 1, 8, 8), np.uint8), y_train=np.array([Payload(marker)] * 4, dtype=object),
                 x_test=np.zeros((2, 1, 8, 8), np.uint8), y_test=np.zeros(2, np.int64), mean=np.zeros(1, np.float32),
                 std=np.ones(1, np.float32), num_classes=np.int64(10))
    return path


def test_dataset_npz_holding_a_pickle_is_refused(tmp_path, marker):
    path = _object_npz(tmp_path / "digits.npz", marker)
    with pytest.raises(PrunelimitError, match=r"cannot read dataset file .*digits\.npz: Object arrays cannot be loaded "
                                              r"when allow_pickle=False"):
        load_tensors(path)
    with pytest.raises(PrunelimitError, match="allow_pickle=False"):
        load_npz(path)
    assert not marker.exists()


def test_allow_pickle_is_off_even_for_a_harmless_object_array(tmp_path):
    with open(tmp_path / "a.npz", "wb") as fh:
        np.savez(fh, a=np.array([1, "two"], dtype=object))
    with pytest.raises(PrunelimitError, match="allow_pickle=False"):
        load_npz(tmp_path / "a.npz")


@pytest.mark.parametrize("suffix", [".npz", ".pt"])
def test_predict_data_file_with_a_payload_is_refused(tmp_path, marker, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".npz":
        _object_npz(path, marker)
    else:
        torch.save({"x_train": torch.zeros(4, 1, 8, 8), "y_train": Payload(marker)}, path)
    with pytest.raises(PrunelimitError, match=rf"--data: cannot read .*data\{suffix}") as err:
        cli.load_data(str(path), str(tmp_path), torch.device("cpu"))
    _one_line(str(err.value))
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# Config YAML
# ---------------------------------------------------------------------------------------------


def test_config_yaml_with_python_tags_does_not_run(tmp_path, marker):
    """Snakemake's own config loader (what --configfile uses) and ours (validate_config's schema)."""
    from snakemake.common.configfile import load_configfile
    from snakemake.exceptions import WorkflowError

    evil = tmp_path / "evil.yaml"
    evil.write_text(f"preset: !!python/object/apply:builtins.exec [\"open({str(marker)!r}, 'w').close()\"]\n")
    with pytest.raises(WorkflowError):
        load_configfile(str(evil))
    import yaml

    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(evil.read_text())
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# No other loader: the source itself
# ---------------------------------------------------------------------------------------------


def _sources():
    for folder in ("src", "scripts", "workflow"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix in (".py", ".smk") or path.name == "Snakefile":
                yield path, path.read_text()
    yield ROOT / "Snakefile", (ROOT / "Snakefile").read_text()


def test_every_loader_in_the_source_is_a_safe_one():
    """torch.load only with weights_only=True, no pickle.load(s), no yaml.load, no allow_pickle=True, no eval."""
    offences = []
    for path, text in _sources():
        rel = path.relative_to(ROOT)
        for call in re.finditer(r"torch\.load\(([^()]|\([^()]*\))*\)", text):
            if "weights_only=True" not in call[0]:
                offences.append(f"{rel}: {call[0]}")
        for pattern in (r"pickle\.loads?\(", r"yaml\.(load|unsafe_load|full_load)\(", r"allow_pickle\s*=\s*True",
                        r"(?<![\w.])eval\(", r"(?<![\w.])exec\(", r"Unpickler\.find_class"):
            offences += [f"{rel}: {m[0]}" for m in re.finditer(pattern, text)]
    assert offences == []
    # the unpicklers there are, each with an allowlist: CIFAR's, and the torch-free state_dict reader's
    # (tests/test_no_torch.py feeds it a hostile file)
    unpicklers = [p.relative_to(ROOT) for p, t in _sources() if "pickle.Unpickler" in t]
    assert unpicklers == [Path("src/prunelimit/archives.py"), Path("src/prunelimit/statedict.py")]
