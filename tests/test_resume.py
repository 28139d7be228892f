"""Resume keys: a killed run continues only under the same model, data and config; otherwise it
starts afresh (with a log line saying why) and ends exactly where a fresh run ends.

(Resuming an unchanged run to identical weights: tests/test_train.py; through Snakemake's retry:
tests/test_resume_pipeline.py.)
"""

import contextlib
import logging

import pytest
import torch

from prunelimit.data import TensorData, load_tensors, prepare_dataset
from prunelimit.models import build_model
from prunelimit.train import TrainConfig, train

CFG = TrainConfig(epochs=3, lr=0.05, seed=2)


class Killed(Exception):
    pass


def _kill_after(epochs):
    def on_epoch(epoch, record):
        if epoch == epochs:
            raise Killed
    return on_epoch


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _mlp():
    return build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[32, 16])


@pytest.fixture(scope="module")
def digits_files(tmp_path_factory):
    """The digits data under two splits (test_fraction 0.2 and 0.3)."""
    folder = tmp_path_factory.mktemp("data")
    return {f: prepare_dataset("digits", folder / f"digits_{f}.npz", {"test_fraction": f}, progress=False)
            for f in (0.2, 0.3)}


def _interrupted(model, data, cfg, ckpt):
    """Train until killed in the 2nd epoch: the resume file holds 1 epoch."""
    with pytest.raises(Killed):
        train(model, data, cfg, checkpoint=ckpt, progress=False, on_epoch=_kill_after(1))
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1  # a real resume file loads weights-only


def _rerun(model, data, cfg, ckpt):
    """Train with ``ckpt``; return the 0-based epochs that actually ran."""
    ran = []
    train(model, data, cfg, checkpoint=ckpt, progress=False, on_epoch=lambda e, r: ran.append(e))
    return ran


def _assert_trains_afresh(make_model, data, cfg, ckpt, caplog):
    """A rerun with ``ckpt`` runs every epoch and ends on the weights of a run that never had one."""
    fresh = make_model()
    train(fresh, data, cfg, progress=False)
    with caplog.at_level(logging.WARNING, logger="prunelimit"):
        rerun = make_model()
        assert _rerun(rerun, data, cfg, ckpt) == list(range(cfg.epochs))
    assert torch.equal(_weights(rerun), _weights(fresh))


def test_changed_split_under_a_half_trained_model_trains_afresh(digits_files, tmp_path, caplog):
    """Kill, change datasets.digits.test_fraction, rerun: the old weights must not continue."""
    ckpt = tmp_path / "l1.resume.pt"
    _interrupted(_mlp(), load_tensors(digits_files[0.2]), CFG, ckpt)

    _assert_trains_afresh(_mlp, load_tensors(digits_files[0.3]), CFG, ckpt, caplog)
    assert "not resuming" in caplog.text and "the data changed" in caplog.text
    assert not ckpt.exists()


def test_same_data_rewritten_still_resumes(digits_files, tmp_path, caplog):
    """The data key is the arrays' content: re-preparing the same split (new file, same arrays) resumes."""
    ckpt = tmp_path / "resume.pt"
    _interrupted(_mlp(), load_tensors(digits_files[0.2]), CFG, ckpt)
    again = prepare_dataset("digits", tmp_path / "again.npz", {"test_fraction": 0.2}, progress=False)
    with caplog.at_level(logging.WARNING, logger="prunelimit"):
        assert _rerun(_mlp(), load_tensors(again), CFG, ckpt) == [1, 2]  # continued after epoch 1
    assert "not resuming" not in caplog.text


def test_changed_model_args_with_the_same_shapes_trains_afresh(digits_files, tmp_path, caplog):
    """AlexNet's resize changes the model but no parameter shape: only the model spec tells them apart."""
    full = load_tensors(digits_files[0.2])
    data = TensorData(full.x_train[:128], full.y_train[:128], full.x_test, full.y_test, 10)  # 2 batches/epoch
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.01, seed=1)

    def alexnet(resize):
        return build_model("alexnet", (1, 8, 8), 10, seed=0, width=0.0625, resize=resize)

    ckpt = tmp_path / "resume.pt"
    _interrupted(alexnet(32), data, cfg, ckpt)
    _assert_trains_afresh(lambda: alexnet(40), data, cfg, ckpt, caplog)
    assert "the model changed (model_args" in caplog.text and '"resize": 32' in caplog.text


def test_changed_training_config_trains_afresh_instead_of_failing(digits_files, tmp_path, caplog):
    data = load_tensors(digits_files[0.2])
    ckpt = tmp_path / "resume.pt"
    _interrupted(_mlp(), data, CFG, ckpt)
    _assert_trains_afresh(_mlp, data, TrainConfig(epochs=3, lr=0.1, seed=2), ckpt, caplog)
    assert "the training config changed (lr 0.05 -> 0.1)" in caplog.text


# torch's thread count for both processes of a cross-process comparison: a reduction splits by
# thread count, so do the bits of the weights, and tests/conftest.py runs the test process on one
# thread only while a background pipeline is alive (machine-dependent). Pinned on both sides instead.
THREADS = 1


@contextlib.contextmanager
def torch_threads(k: int):
    """Run the body with torch on ``k`` threads, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(k)
    try:
        yield
    finally:
        torch.set_num_threads(before)


CHILD = """
import os, signal, sys
import torch
from prunelimit.data import load_tensors
from prunelimit.models import build_model
from prunelimit.train import TrainConfig, train

def die(epoch, record):
    if epoch == 2:  # SIGKILL: no exception handler, no cleanup runs
        os.kill(os.getpid(), signal.SIGKILL)

torch.set_num_threads(int(sys.argv[3]))  # the test process trains under the same count
model = build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[32, 16])
train(model, load_tensors(sys.argv[1]), TrainConfig(epochs=3, lr=0.05, seed=2), checkpoint=sys.argv[2],
      progress=False, on_epoch=die)
"""


def test_sigkilled_process_resumes_in_another_process_to_identical_weights(digits_files, tmp_path, caplog):
    """The key must be the same in a new process (content hash, model spec, config), or nothing ever resumes."""
    import os
    import signal
    import subprocess
    import sys

    ckpt = tmp_path / "l1.resume.pt"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(digits_files[0.2]), str(ckpt), str(THREADS)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    data = load_tensors(digits_files[0.2])
    with torch_threads(THREADS):  # as the child: the weights must not depend on this process's count
        reference = _mlp()
        train(reference, data, CFG, progress=False)
        with caplog.at_level(logging.WARNING, logger="prunelimit"):
            resumed = _mlp()
            assert _rerun(resumed, data, CFG, ckpt) == [2]
    assert "not resuming" not in caplog.text
    assert torch.equal(_weights(resumed), _weights(reference))
