"""Pipeline-level resume: a training job killed mid-way is rerun by Snakemake's retry and resumes.

This is what happens on a cluster when a job is preempted or killed and the rule is retried:
Snakemake deletes the failed job's declared outputs, but the per-epoch resume checkpoint
(``{RESULTS}/train/{task}/{variant}.resume.pt``, a param, not an output) stays, so the retry
continues from the last finished epoch and ends with the same weights as an uninterrupted run.
(The library-level resume test is in tests/test_train.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import psutil
import pytest
import torch

from pipeline_utils import ROOT, SNAKEMAKE

EPOCHS = 6


def _config(make_config, path):
    # two identical recipes: fc5_a is killed and resumed, fc5_b runs uninterrupted as the reference
    recipe = {"model": "fc5", "dataset": "digits", "l1": 5.0e-5,
              "train": {"epochs": EPOCHS, "batch_size": 8, "lr": 0.01, "seed": 3}}
    return make_config(path, preset="resume", device="cpu", variants=["l1"],
                       tasks={"fc5_a": recipe, "fc5_b": recipe})


class CheckpointWatcher(threading.Thread):
    """Records the epoch of every new version of a resume checkpoint (atomic renames: new inode)."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.stop, self.writes = path, threading.Event(), []  # (time, epoch)

    def run(self):
        seen = None
        while not self.stop.is_set():
            try:
                st = os.stat(self.path)
                key = (st.st_ino, st.st_mtime_ns)
                if key != seen:
                    epoch = torch.load(self.path, map_location="cpu", weights_only=False)["epoch"]
                    self.writes.append((time.monotonic(), epoch))
                    seen = key
            except (FileNotFoundError, EOFError, RuntimeError):
                pass  # not there yet, or replaced/removed while reading
            time.sleep(0.02)


def _train_scripts(proc: subprocess.Popen) -> list[psutil.Process]:
    """The running train-rule scripts under our snakemake process (Snakemake names them *.train.py)."""
    found = []
    for child in psutil.Process(proc.pid).children(recursive=True):
        try:
            if any(arg.endswith("train.py") for arg in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.mark.slow
def test_killed_training_job_is_retried_and_resumes_to_the_same_weights(tmp_path, small_config):
    config = _config(small_config, tmp_path / "resume.yaml")
    work = tmp_path / "work"
    results = work / "results" / "resume"
    resume_file = results / "train" / "fc5_a" / "l1.resume.pt"
    targets = [f"results/resume/train/{t}/l1/model.pt" for t in ("fc5_a", "fc5_b")]
    # --cores 1: one training job at a time, so the one running when fc5_a's checkpoint appears is fc5_a's
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile", str(config),
           "--cores", "1", "--retries", "1", *targets]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    watcher = CheckpointWatcher(resume_file)
    watcher.start()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    killed_epoch = None
    try:
        deadline = time.monotonic() + 300
        while not watcher.writes and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if not watcher.writes:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"fc5_a never wrote its resume checkpoint (snakemake exit {proc.returncode}):\n{err[-4000:]}")
        scripts = _train_scripts(proc)
        assert len(scripts) == 1, f"expected one running train script, found {[p.cmdline() for p in scripts]}"
        scripts[0].send_signal(signal.SIGKILL)  # as a preempted / killed cluster job
        kill_time = time.monotonic()
        scripts[0].wait(timeout=30)
        killed_epoch = watcher.writes[-1][1]
        assert 1 <= killed_epoch < EPOCHS
        out, err = proc.communicate(timeout=600)
    finally:
        watcher.stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.perf_counter() - start
    print(f"\nkill at epoch {killed_epoch}; run with one retry: {elapsed:.0f} s")
    assert proc.returncode == 0, err[-5000:]
    assert "Error in rule train" in err and "task=fc5_a" in err  # the kill was seen as a failure ...
    assert "Trying to restart job" in err  # ... and retried
    # the retry continued after the killed epoch instead of starting again at epoch 1
    after = [epoch for t, epoch in watcher.writes if t > kill_time]
    assert after and min(after) == killed_epoch + 1, (killed_epoch, watcher.writes)
    assert not resume_file.exists()  # removed once training completed

    a = torch.load(results / "train/fc5_a/l1/model.pt", map_location="cpu", weights_only=True)
    b = torch.load(results / "train/fc5_b/l1/model.pt", map_location="cpu", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ma = json.loads((results / "train/fc5_a/l1/metrics.json").read_text())
    mb = json.loads((results / "train/fc5_b/l1/metrics.json").read_text())
    # the diagnostics too: the data-gradient masks and the per-epoch history are in the resume file
    for key in ("test_acc", "test_loss", "train_loss", "loss_std", "steps", "epochs_run", "never_updated_share",
                "never_updated_kept_share", "small_weight_share_drift_last_tenth", "history"):
        assert ma[key] == mb[key], key
    assert ma["epochs_run"] == EPOCHS
