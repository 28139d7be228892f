"""The SLURM profile against a real one-node SLURM on this machine (tests/slurm/start_cluster.sh).

The slurm-marked tests need root and apt (or SLURM already installed); `make test-slurm` runs them.
Where the cluster does not come up they skip, saying why in one line; under CI (``CI=true``, as
.ci/run sets it) they fail with that line instead, so a CI run cannot pass without them. The
unmarked tests check the profile, the conda envs, the pre-flight check and that decision without
a cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import pandas as pd
import pytest
import torch
import yaml

from pipeline_utils import ROOT, snakemake, workflow_rules

PROFILE = ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
GPU_RULES = ("train", "train_reseeded", "slq", "exact_spectrum", "hessian_rows", "theory", "magnitude_scaling", "sweep",
             "iterative", "baseline", "baseline_imp", "oneshot")
CPU_RULES = ("dataset",)
# Flags for a cluster without an accounting database (see the slurm profile's comments):
# poll with squeue, and start polling 2 s after submission instead of 40 s.
LOCAL_SLURM_FLAGS = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
                     "--slurm-no-account")
CHECK = [sys.executable, str(ROOT / "scripts" / "check_slurm.py")]
START_CLUSTER = ROOT / "tests" / "slurm" / "start_cluster.sh"
START_TIMEOUT = 600  # seconds: apt-get may wait 2 × 120 s for another install's locks, then install
CANNOT_INSTALL = 3  # start_cluster.sh's exit status where SLURM could not be installed


def _profile() -> dict:
    return yaml.safe_load(PROFILE.read_text())


def _rules_declaring_a_gpu() -> list[str]:
    """Rules with `resources: gpu=1`, and rules derived from them by `use rule`."""
    found = [rule["name"] for rule in workflow_rules() if rule["gpu"] == 1]
    assert "train" in found and "sweep_dense" in found
    return found


# ---------------------------------------------------------------------------------------------
# Without a cluster
# ---------------------------------------------------------------------------------------------


def test_profile_requests_a_gpu_for_gpu_rules_only():
    profile = _profile()
    assert profile["executor"] == "slurm"
    assert profile["default-resources"]["slurm_partition"]  # the one place the partition is set
    assert {"runtime", "mem_mb"} <= set(profile["default-resources"])
    assert "gpu" not in profile["default-resources"]
    rules = profile["set-resources"]
    for rule in GPU_RULES:
        assert rules[rule]["gpu"] == 1, rule
        assert "slurm_partition" not in rules[rule], rule  # no second place for the partition
    for rule in CPU_RULES:
        assert "gpu" not in rules[rule] and "gres" not in rules[rule], rule
    assert profile["retries"] >= 1 and profile["rerun-incomplete"] is True
    # every rule that declares `resources: gpu=1` gets its GPU and runtime on the cluster too
    for rule in _rules_declaring_a_gpu():
        assert rules.get(rule, {}).get("gpu") == 1 and "runtime" in rules[rule], f"profile lacks GPU rule {rule}"
    # flags only right for clusters without accounting stay out of the user profile
    assert "slurm-status-command" not in profile


def test_dry_run_with_the_slurm_profile_shows_gpu_resources(tmp_path, small_config):
    config = small_config(tmp_path / "c.yaml", preset="dry", variants=["dense"],
                          tasks={"fc5_digits": {"model": "fc5", "dataset": "digits", "train": {"epochs": 1}}})
    proc = snakemake(tmp_path / "work", "-n", "--profile", str(PROFILE.parent), "results/dry/tables/training.csv",
                     configfile=config, timeout=300)
    jobs = {}
    for block in re.split(r"\n(?=rule \w+:)", proc.stdout):
        match = re.match(r"rule (\w+):", block)
        if match:
            jobs[match[1]] = block
    assert "gpu=1" in jobs["train"] and "slurm_partition=gpu" in jobs["train"]
    assert "gpu=" not in jobs["dataset"]


def test_preflight_check_says_when_slurm_is_missing(tmp_path):
    bin_dir = tmp_path / "bin"  # a PATH with a shell but no SLURM commands
    bin_dir.mkdir()
    for tool in ("sh", "env"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    proc = subprocess.run(CHECK, capture_output=True, text=True, timeout=60, env={**os.environ, "PATH": str(bin_dir)})
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("check_slurm: error: SLURM not found: sinfo is not on PATH")


# ---------------------------------------------------------------------------------------------
# Bringing the cluster up: skip, or fail under CI
# ---------------------------------------------------------------------------------------------


def under_ci(env: Mapping[str, str]) -> bool:
    return env.get("CI", "").strip().lower() in ("true", "1", "yes")


def cluster_unavailable(reason: str, env: Mapping[str, str] = os.environ, skippable: bool = True) -> NoReturn:
    """End a test whose local cluster did not come up, saying why in one line: a failure under CI
    (``CI=true``: a CI run must not pass without the SLURM tests) or where ``skippable`` is false
    (SLURM is installed but does not start), a skip otherwise."""
    reason = " ".join(reason.split()) or "no reason given"
    if under_ci(env):
        pytest.fail(f"the local SLURM cluster did not come up under CI (CI=true): {reason}", pytrace=False)
    if not skippable:
        pytest.fail(f"the local SLURM cluster did not come up: {reason}", pytrace=False)
    pytest.skip(f"the local SLURM cluster did not come up: {reason}")


def start_failure_reason(stderr: str, returncode: int) -> str:
    """The line of start_cluster.sh's stderr that says why it failed (its last `start_cluster: error:`)."""
    errors = [line for line in stderr.splitlines() if line.startswith("start_cluster: error:")]
    if errors:
        return errors[-1]
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    return f"{START_CLUSTER.name} exited with status {returncode}: {last}"


def start_cluster(env: Mapping[str, str] = os.environ, script: Path = START_CLUSTER) -> None:
    """Run start_cluster.sh under ``env``; if the cluster does not come up, print the script's output
    and end the test with :func:`cluster_unavailable` (a skip only where SLURM could not be installed)."""
    try:
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=START_TIMEOUT,
                              env=dict(env))
    except subprocess.TimeoutExpired:
        cluster_unavailable(f"{script.name} did not finish within {START_TIMEOUT} s", env, skippable=False)
    if proc.returncode != 0:
        print(f"\n--- {script.name} failed (exit status {proc.returncode}):\n{proc.stdout}{proc.stderr}",
              file=sys.stderr)
        cluster_unavailable(start_failure_reason(proc.stderr, proc.returncode), env,
                            skippable=proc.returncode == CANNOT_INSTALL)


def test_cluster_that_does_not_come_up_fails_under_ci_and_skips_elsewhere():
    reason = ("start_cluster: error: apt-get install slurmctld slurmd slurm-client munge failed:\n"
              "  E: Could not get lock")
    one_line = ("start_cluster: error: apt-get install slurmctld slurmd slurm-client munge failed: "
                "E: Could not get lock")
    with pytest.raises(pytest.fail.Exception) as failed:
        cluster_unavailable(reason, {"CI": "true"})
    assert str(failed.value) == f"the local SLURM cluster did not come up under CI (CI=true): {one_line}"
    for env in ({}, {"CI": "false"}, {"CI": ""}):
        with pytest.raises(pytest.skip.Exception) as skipped:
            cluster_unavailable(reason, env)
        assert str(skipped.value) == f"the local SLURM cluster did not come up: {one_line}"
    # SLURM installed but not starting is a failure everywhere, as before
    with pytest.raises(pytest.fail.Exception, match="did not come up: slurmd did not start$"):
        cluster_unavailable("slurmd did not start", {}, skippable=False)


FAKE_APT = """#!{bash}
# apt-get while another install holds the locks: update finds the lists lock held once, install
# finds the dpkg lock held until its DPkg::Lock::Timeout
echo "$*" >>"{log}"
if [[ $1 == update ]]; then
  [[ -e "{log}.updated" ]] && exit 0
  : >"{log}.updated"
  echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
  exit 100
fi
echo "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)" >&2
echo "E: Unable to acquire the dpkg frontend lock (/var/lib/dpkg/lock-frontend), is another process using it?" >&2
exit 100
"""


def test_start_cluster_waits_for_apts_locks_and_says_why_it_could_not_install(tmp_path):
    """start_cluster.sh on a PATH without SLURM, whose apt-get finds another install holding the locks:
    it retries `apt-get update`, lets `apt-get install` wait (DPkg::Lock::Timeout), then ends with one
    error line, which fails the SLURM tests under CI and skips them elsewhere."""
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    for tool in ("bash", "grep", "tail", "sleep"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")  # as root: the script checks before anything else
    (bin_dir / "apt-get").write_text(FAKE_APT.format(bash=shutil.which("bash"), log=log))
    for tool in ("id", "apt-get"):
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": str(bin_dir), "PRUNELIMIT_APT_LOCK_TIMEOUT": "30"}
    why = ("apt-get install slurmctld slurmd slurm-client munge failed: E: Could not get lock "
           "/var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)")
    with pytest.raises(pytest.fail.Exception) as failed:
        start_cluster({**env, "CI": "true"})
    assert str(failed.value) == ("the local SLURM cluster did not come up under CI (CI=true): "
                                 f"start_cluster: error: {why}")
    calls = log.read_text().splitlines()
    assert [c.split()[0] for c in calls] == ["update", "update", "install"]  # the update retried after the lock
    assert all("-o DPkg::Lock::Timeout=30" in c for c in calls)
    log.unlink()
    with pytest.raises(pytest.skip.Exception, match=f"did not come up: start_cluster: error: {re.escape(why)}$"):
        start_cluster(env)


# ---------------------------------------------------------------------------------------------
# A real local cluster
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        cluster_unavailable("it needs root (start_cluster.sh installs packages and starts daemons)")
    if not shutil.which("sinfo") and not shutil.which("apt-get"):
        cluster_unavailable("SLURM is not installed and apt-get is unavailable to install it")
    started = Path("/run/prunelimit-slurm/started")
    was_running = (started.exists() and started.read_text().strip() != "" and shutil.which("sinfo") is not None
                   and subprocess.run(["sinfo"], capture_output=True, timeout=30).returncode == 0)
    t0 = time.perf_counter()
    start_cluster()
    bring_up = time.perf_counter() - t0
    print(f"\nSLURM bring-up: {bring_up:.1f} s ({'already running' if was_running else 'started'})")
    node_memory = int(re.search(r"RealMemory=(\d+)", _run(["scontrol", "show", "node"]))[1])
    yield {"bring_up_s": bring_up, "memory_mb": node_memory}
    if not was_running:
        subprocess.run(["bash", str(ROOT / "tests/slurm/stop_cluster.sh")], capture_output=True, timeout=120)


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout


def _jobs_in(workdir: Path) -> dict[str, dict[str, str]]:
    """The jobs slurmctld knows (finished ones stay MinJobAge = 300 s) that ran in ``workdir``."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, timeout=30).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if fields.get("WorkDir") == str(workdir):
            jobs[fields["JobId"]] = fields
    return jobs


class JobRecorder(threading.Thread):
    """Polls `scontrol show job` during a run, so every job's request is seen whatever its age."""

    def __init__(self, workdir: Path):
        super().__init__(daemon=True)
        self.workdir, self.stop, self.jobs = workdir, threading.Event(), {}

    def run(self):
        while not self.stop.wait(1.0):
            self.jobs.update(_jobs_in(self.workdir))
        self.jobs.update(_jobs_in(self.workdir))


def _test_profile(dest: Path, node_memory_mb: int) -> Path:
    """The user profile, with memory requests capped to fit this machine's node."""
    profile = _profile()
    cap = max(500, node_memory_mb // 4)
    for resources in [profile["default-resources"], *profile["set-resources"].values()]:
        if "mem_mb" in resources:
            resources["mem_mb"] = min(resources["mem_mb"], cap)
        if "cpus_per_task" in resources:  # the paper plan's 4-8 CPUs a GPU job: one here, as the jobs' one thread
            resources["cpus_per_task"] = 1
    profile.pop("set-threads", None)
    profile["slurm-keep-successful-logs"] = True  # the logs are inspected below
    dest.mkdir(parents=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


EPOCHS = 4


def _config(make_config, path: Path) -> Path:
    # batch 16: ~90 steps (~0.4 s) an epoch, long enough to requeue a job between two epochs
    return make_config(path, preset="slurm", device="cpu", variants=["dense", "l1"],
                       tasks={"fc5_digits": {"model": "fc5", "dataset": "digits", "l1": 5.0e-5,
                                             "train": {"epochs": EPOCHS, "batch_size": 16, "seed": 1}}})


TARGET = "results/slurm/tables/training.csv"


class Requeuer(threading.Thread):
    """Requeues the SLURM job training ``task``/``variant`` once its first resume checkpoint
    appears (what SLURM does to a preempted job with --requeue), lets it start again at once
    (a requeued job otherwise waits ~2 min for its BeginTime), and records the epoch of every
    checkpoint written afterwards."""

    def __init__(self, workdir: Path, task: str, variant: str):
        super().__init__(daemon=True)
        self.workdir, self.comment = workdir, f"rule_train_wildcards_{task}_{variant}"
        self.path = workdir / "results/slurm/train" / task / f"{variant}.resume.pt"
        self.stop, self.job, self.epoch_at_requeue, self.later_epochs = threading.Event(), None, None, []
        self.error = None

    def _epoch(self, seen):
        st = os.stat(self.path)
        if (st.st_ino, st.st_mtime_ns) == seen:
            return None, seen
        return torch.load(self.path, map_location="cpu", weights_only=False)["epoch"], (st.st_ino, st.st_mtime_ns)

    def run(self):
        seen = None
        while not self.stop.wait(0.05):
            try:
                epoch, seen = self._epoch(seen)
            except (FileNotFoundError, EOFError, RuntimeError):
                continue
            if epoch is None:
                continue
            if self.job is None:
                self._requeue(epoch)
            else:
                self.later_epochs.append(epoch)

    def _requeue(self, epoch):
        queue = subprocess.run(["squeue", "-h", "-o", "%i|%k|%Z"], capture_output=True, text=True, timeout=30).stdout
        ids = [i for i, comment, wd in (line.split("|") for line in queue.splitlines())
               if comment == self.comment and wd == str(self.workdir)]
        if len(ids) != 1:
            self.error = f"expected one running job {self.comment}, squeue says:\n{queue}"
            self.stop.set()
            return
        self.job, self.epoch_at_requeue = ids[0], epoch
        subprocess.run(["scontrol", "requeue", self.job], check=True, timeout=30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["squeue", "-h", "-j", self.job, "-o", "%T"], capture_output=True, text=True,
                                   timeout=30).stdout.strip()
            if state == "PENDING":
                subprocess.run(["scontrol", "update", f"JobId={self.job}", "StartTime=now"], check=True, timeout=30)
                return
            time.sleep(0.2)
        self.error = f"requeued job {self.job} never became PENDING"


@pytest.mark.slow
@pytest.mark.slurm
def test_pipeline_on_slurm_requests_gpus_resumes_after_requeue_and_matches_a_local_run(cluster, tmp_path,
                                                                                      small_config):
    config = _config(small_config, tmp_path / "slurm.yaml")
    profile = _test_profile(tmp_path / "profile", cluster["memory_mb"])
    work = tmp_path / "on_slurm"
    recorder, requeuer = JobRecorder(work), Requeuer(work, "fc5_digits", "l1")
    recorder.start()
    requeuer.start()
    t0 = time.perf_counter()
    try:
        proc = snakemake(work, "--profile", str(profile), *LOCAL_SLURM_FLAGS, "--jobs", "4", TARGET,
                         configfile=config, timeout=600, check=False)
    finally:
        for thread in (recorder, requeuer):
            thread.stop.set()
            thread.join(timeout=30)
    run_s = time.perf_counter() - t0
    print(f"SLURM run (dataset, train x2 with one requeue, table): {run_s:.1f} s; "
          f"bring-up was {cluster['bring_up_s']:.1f} s")
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert requeuer.error is None, requeuer.error

    # every job in the gpu partition; the train jobs asked for one GPU (sbatch --gpus=1), no other did
    jobs = list(recorder.jobs.values())
    by_rule = {}
    for job in jobs:
        by_rule.setdefault(re.match(r"rule_(\w+?)(_wildcards_|$)", job["Comment"])[1], []).append(job)
    assert len(by_rule["train"]) == 2 and len(by_rule["dataset"]) == 1
    for job in jobs:
        assert job["JobState"] == "COMPLETED" and job["Partition"] == "gpu", job
        gpu_request = " ".join(job.get(k, "") for k in ("TresPerJob", "TresPerNode", "TresPerTask"))
        assert ("gpu:1" in gpu_request) == (job in by_rule["train"]), job

    # the requeued job ran twice and continued after the epoch it had reached, not from epoch 1
    restarts = {job["Comment"]: job["Restarts"] for job in by_rule["train"]}
    assert restarts == {"rule_train_wildcards_fc5_digits_l1": "1", "rule_train_wildcards_fc5_digits_dense": "0"}
    assert 1 <= requeuer.epoch_at_requeue < EPOCHS
    assert requeuer.later_epochs and min(requeuer.later_epochs) > requeuer.epoch_at_requeue, (
        requeuer.epoch_at_requeue, requeuer.later_epochs)
    print(f"requeued at epoch {requeuer.epoch_at_requeue}; checkpoints after: {requeuer.later_epochs}")

    # the same numbers as a local run of the same target: every key of metrics.json but the wall time,
    # the diagnostics that the requeued job took from its resume file (the data-gradient masks behind
    # the never-updated shares, the per-epoch history behind the drift) included
    local = tmp_path / "local"
    snakemake(local, "--cores", "2", TARGET, configfile=config, timeout=600)
    for variant in ("dense", "l1"):
        base = Path("results/slurm/train/fc5_digits") / variant
        m_slurm = json.loads((work / base / "metrics.json").read_text())
        m_local = json.loads((local / base / "metrics.json").read_text())
        assert m_slurm.keys() == m_local.keys()
        for key in ("never_updated_share", "never_updated_kept_share", "small_weight_share_drift_last_tenth",
                    "history", "test_acc", "test_loss", "train_acc", "train_loss", "loss_std", "steps", "epochs_run"):
            assert m_slurm[key] == m_local[key], (variant, key, m_slurm[key], m_local[key])
        assert len(m_slurm["history"]) == EPOCHS
        for key in m_local:
            assert "time" in key or m_slurm[key] == m_local[key], (variant, key)
        w_slurm = torch.load(work / base / "model.pt", map_location="cpu", weights_only=True)
        w_local = torch.load(local / base / "model.pt", map_location="cpu", weights_only=True)
        assert w_slurm.keys() == w_local.keys()
        assert all(torch.equal(w_slurm[k], w_local[k]) for k in w_local), variant
    t_slurm, t_local = (pd.read_csv(d / TARGET) for d in (work, local))
    same = [c for c in t_local.columns if "time" not in c]  # the never-updated shares included
    assert {"never_updated_share", "never_updated_kept_share"} <= set(same)
    assert len(t_slurm) == 2 and t_slurm[same].equals(t_local[same])


@pytest.mark.slow
@pytest.mark.slurm
def test_preflight_check_accepts_the_partition_and_names_a_wrong_one(cluster, tmp_path):
    ok = subprocess.run([*CHECK, "--status-command", "squeue"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "partition 'gpu'" in ok.stdout and "gpu" in ok.stdout
    wrong = subprocess.run([*CHECK, "--partition", "nosuch", "--status-command", "squeue"], capture_output=True,
                           text=True, timeout=120)
    assert wrong.returncode == 1
    assert "partition 'nosuch' does not exist; partitions: gpu" in wrong.stderr


@pytest.mark.slow
@pytest.mark.slurm
def test_preflight_check_warns_that_sacct_polling_would_hang_without_accounting(cluster):
    proc = subprocess.run(CHECK, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "no accounting database" in proc.stderr and "slurm-status-command: squeue" in proc.stderr


@pytest.mark.slow
@pytest.mark.slurm
def test_wrong_partition_fails_fast_with_sbatchs_message(cluster, tmp_path, small_config):
    config = _config(small_config, tmp_path / "slurm.yaml")
    t0 = time.perf_counter()
    proc = snakemake(tmp_path / "work", "--profile", str(PROFILE.parent), *LOCAL_SLURM_FLAGS,
                     "--default-resources", "slurm_partition=nosuch", "runtime=5", "mem_mb=500",
                     "--retries", "0", "results/slurm/data/digits.npz", configfile=config, timeout=120, check=False)
    elapsed = time.perf_counter() - t0
    assert proc.returncode != 0
    assert "sbatch: error: invalid partition specified: nosuch" in proc.stdout + proc.stderr
    assert elapsed < 60, elapsed  # no hang
