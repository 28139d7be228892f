"""Resume keys: a killed run continues only under the same model, data and config; otherwise it
starts afresh (with a log line saying why) and ends exactly where a fresh run ends.

A resumed task run ends with everything an uninterrupted one has: weights, and every diagnostic
of its metrics.json, the data-gradient tracker's never-updated shares and the per-epoch history
included (the last tests here). (Resuming an unchanged run to identical weights:
tests/test_train.py; through Snakemake's retry: tests/test_resume_pipeline.py.)
"""

import contextlib
import json
import logging

import pytest
import torch

from prunelimit.data import TensorData, load_tensors, prepare_dataset
from prunelimit.models import build_model
from prunelimit.train import TrainConfig, train, train_and_save

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


# ---------------------------------------------------------------------------------------------
# train_and_save: the diagnostics survive a kill too
# ---------------------------------------------------------------------------------------------

TASK_EPOCHS, TASK_BATCH, TASK_SEED, TASK_N = 4, 32, 3, 120
TASK_SPEC = {"task": "t", "variant": "l1", "model": "mlp", "dataset": "digits", "model_args": {"hidden": [8]},
             "train": {"epochs": TASK_EPOCHS, "batch_size": TASK_BATCH, "lr": 0.05, "l1": 1e-3, "seed": TASK_SEED,
                       "schedule": "cosine", "warmup_epochs": 1}}
BLANK_ROW_WEIGHTS = 8 * 8  # pixel row 0 (8 pixels) × 8 hidden units


def _tracker_data(full: TensorData) -> TensorData:
    """120 training digits whose top pixel row is blank, so its 64 first-layer weights never get a
    data gradient, except pixel (0, 0) of one sample that an epoch before the last trains on but
    the last one drops (its partial batch): that pixel's weights get data gradients only before a
    kill after epoch 3, and only a tracker restored from the resume file remembers them."""
    x = full.x_train[:TASK_N].clone()
    x[:, :, 0, :] = 0.0
    used = TASK_N // TASK_BATCH * TASK_BATCH
    generator = torch.Generator().manual_seed(TASK_SEED)  # train()'s batch order: one randperm an epoch
    orders = [set(torch.randperm(TASK_N, generator=generator)[:used].tolist()) for _ in range(TASK_EPOCHS)]
    marked = next(i for i in range(TASK_N) if i not in orders[-1] and any(i in o for o in orders[:-1]))
    x[marked, 0, 0, 0] = 3.0
    return TensorData(x, full.y_train[:TASK_N], full.x_test, full.y_test, full.num_classes)


@contextlib.contextmanager
def _task_training(monkeypatch, ran: list, kill_at: int | None = None):
    """train_and_save with its training loop recording the 0-based epochs it runs in ``ran`` and, with
    ``kill_at``, killed in that epoch (after the epochs before it were checkpointed)."""
    import prunelimit.train as training

    real = training.train

    def train_then_kill(*args, on_epoch, **kwargs):
        def watched(epoch, record):
            on_epoch(epoch, record)
            if epoch == kill_at:
                raise Killed
            ran.append(epoch)
        return real(*args, on_epoch=watched, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(training, "train", train_then_kill)
        yield


def _run_task(monkeypatch, data, out, checkpoint=None, kill_at=None) -> tuple[dict | None, list]:
    ran = []
    with _task_training(monkeypatch, ran, kill_at):
        if kill_at is not None:
            with pytest.raises(Killed):
                train_and_save(TASK_SPEC, data, out / "model.pt", out / "metrics.json", checkpoint, progress=False)
            return None, ran
        train_and_save(TASK_SPEC, data, out / "model.pt", out / "metrics.json", checkpoint, progress=False)
    return json.loads((out / "metrics.json").read_text()), ran


def _without_wall_times(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "time" not in k}


@pytest.fixture(scope="module")
def task_reference(digits_files, tmp_path_factory):
    """The tracker data and an uninterrupted train_and_save run on it (its metrics and weights)."""
    data = _tracker_data(load_tensors(digits_files[0.2]))
    out = tmp_path_factory.mktemp("reference")
    train_and_save(TASK_SPEC, data, out / "model.pt", out / "metrics.json", progress=False)
    return data, json.loads((out / "metrics.json").read_text()), torch.load(out / "model.pt", weights_only=True)


def _killed_after_three_epochs(monkeypatch, data, tmp_path):
    ckpt = tmp_path / "l1.resume.pt"
    _, ran = _run_task(monkeypatch, data, tmp_path / "killed", ckpt, kill_at=TASK_EPOCHS - 1)
    assert ran == [0, 1, 2] and torch.load(ckpt, weights_only=True)["epoch"] == TASK_EPOCHS - 1
    return ckpt


def test_killed_task_resumes_to_identical_weights_and_diagnostics(task_reference, tmp_path, monkeypatch, caplog):
    """Kill train_and_save after epoch 3 of 4, rerun it: metrics.json (all but wall times) and weights are
    the uninterrupted run's, the never-updated shares and the regime drift over the restored history
    included."""
    data, reference, reference_weights = task_reference
    n_prunable = reference["n_prunable"]
    # the marked pixel's weights got data gradients (before the last epoch), the rest of the row never did
    assert 0 < reference["never_updated_share"] * n_prunable < BLANK_ROW_WEIGHTS
    ckpt = _killed_after_three_epochs(monkeypatch, data, tmp_path)
    saved = torch.load(ckpt, weights_only=True)
    assert set(saved["extra"]) == {"data_gradients"} and len(saved["history"]) == TASK_EPOCHS - 1
    assert all("small_weight_share" in h for h in saved["history"])

    with caplog.at_level(logging.WARNING, logger="prunelimit"):
        resumed, ran = _run_task(monkeypatch, data, tmp_path / "resumed", ckpt)
    assert "not resuming" not in caplog.text and ran == [TASK_EPOCHS - 1]  # only the last epoch ran again
    assert not ckpt.exists()
    assert _without_wall_times(resumed) == _without_wall_times(reference)
    weights = torch.load(tmp_path / "resumed" / "model.pt", weights_only=True)
    assert weights.keys() == reference_weights.keys()
    assert all(torch.equal(weights[k], reference_weights[k]) for k in weights)


def test_resume_without_the_trackers_masks_would_report_a_wrong_never_updated_share(task_reference, tmp_path,
                                                                                      monkeypatch):
    """The test above can tell: from the same resume file with the tracker's masks cleared (a tracker
    that only saw the epochs after the resume, as before the masks were saved) the weights are the same
    but more weights count as never updated, the marked pixel's among them."""
    data, reference, _ = task_reference
    ckpt = _killed_after_three_epochs(monkeypatch, data, tmp_path)
    state = torch.load(ckpt, weights_only=True)
    state["extra"]["data_gradients"] = {k: torch.zeros_like(m) for k, m in state["extra"]["data_gradients"].items()}
    torch.save(state, ckpt)
    cleared, ran = _run_task(monkeypatch, data, tmp_path / "cleared", ckpt)
    assert ran == [TASK_EPOCHS - 1]
    assert cleared["never_updated_share"] * cleared["n_prunable"] >= BLANK_ROW_WEIGHTS
    assert cleared["never_updated_share"] > reference["never_updated_share"]
    assert cleared["test_loss"] == reference["test_loss"]


@pytest.mark.parametrize("damage, reason", [
    (lambda state: state.pop("extra"), "not a resume checkpoint of this version (no valid extra)"),
    (lambda state: state["extra"].clear(), "it holds no state for data_gradients"),
])
def test_resume_file_without_the_trackers_masks_trains_afresh(task_reference, tmp_path, monkeypatch, caplog, damage,
                                                              reason):
    """A resume file that lacks the masks (an older version's, or one written by a run without a tracker)
    is not continued: the task trains afresh and still ends with the uninterrupted run's metrics."""
    data, reference, _ = task_reference
    ckpt = _killed_after_three_epochs(monkeypatch, data, tmp_path)
    state = torch.load(ckpt, weights_only=True)
    damage(state)
    torch.save(state, ckpt)
    with caplog.at_level(logging.WARNING, logger="prunelimit"):
        afresh, ran = _run_task(monkeypatch, data, tmp_path / "afresh", ckpt)
    assert "not resuming" in caplog.text and reason in caplog.text
    assert ran == list(range(TASK_EPOCHS))
    assert _without_wall_times(afresh) == _without_wall_times(reference)
