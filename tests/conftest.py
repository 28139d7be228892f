"""Shared fixtures."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipeline_utils import load_config, snakemake_command, write_config

MINI_RUN_TIMEOUT = 3600  # seconds; the cold mini DAG took 16-24 min on 2 shared cores (2026-11-26)


@pytest.fixture
def small_config():
    """Write a pipeline config derived from config.yaml: every section kept (rule files may read
    any of them), ``preset``/``tasks``/... replaced by the keyword arguments, and every section's
    ``tasks`` list (iterative, baselines, ...) restricted to tasks that exist."""

    def make(path: Path, **overrides) -> Path:
        config = copy.deepcopy(load_config())
        config.update(copy.deepcopy(overrides))
        for name, section in config.items():  # e.g. iterative.tasks, baselines.tasks
            if name not in overrides and isinstance(section, dict) and isinstance(section.get("tasks"), list):
                section["tasks"] = [t for t in section["tasks"] if t in config["tasks"]]
        return write_config(path, config)

    return make


# ---------------------------------------------------------------------------------------------
# The mini pipeline: one cold run per session, started in the background as the session begins
# ---------------------------------------------------------------------------------------------


def _needs_mini_run(item: pytest.Item) -> bool:
    return "mini_run" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: orders only what will run
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the mini run go last (otherwise in their order): every other test then runs
    while the pipeline builds, using the cores its DAG leaves idle, instead of after it."""
    items.sort(key=_needs_mini_run)


class BackgroundRun:
    """A snakemake process and the thread that waits for it, noting when it ended."""

    def __init__(self, proc: subprocess.Popen, workdir: Path, log: Path, torch_threads: int):
        self.proc, self.workdir, self.log = proc, workdir, log
        self.torch_threads = torch_threads  # the tests' own, restored once the run is over
        self.started, self.finished = time.perf_counter(), None
        self.watcher = threading.Thread(target=self._wait, daemon=True)
        self.watcher.start()

    def _wait(self) -> None:
        self.proc.wait()
        self.finished = time.perf_counter()


@pytest.fixture(scope="session", autouse=True)
def mini_run_in_background(request, tmp_path_factory):
    """Start the whole default (mini) pipeline, cold, in a scratch directory, as soon as the
    session starts, if a selected test needs it (the ``mini_run`` fixture waits for it). Killed,
    with its jobs, if the session ends first."""
    if not any(_needs_mini_run(item) for item in request.session.items):
        yield None
        return
    workdir = tmp_path_factory.mktemp("mini")
    log = tmp_path_factory.mktemp("mini_log") / "snakemake.log"
    cmd, env = snakemake_command(workdir, "--cores", "all")
    with open(log, "w") as out:  # the child holds its own copy of the descriptor
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # its own process group: killed with its jobs
    # The pipeline's two single-threaded jobs hold both cores: a second torch thread in the tests
    # beside it would mostly wait for a core. mini_run gives the threads back when the run is over.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield BackgroundRun(proc, workdir, log, threads)
    torch.set_num_threads(threads)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def mini_run(mini_run_in_background):
    """The finished cold mini run, shared by every module that asks for it. Returns (workdir,
    seconds from its start to its end, while the tests before it ran)."""
    run = mini_run_in_background
    run.watcher.join(timeout=max(1.0, MINI_RUN_TIMEOUT - (time.perf_counter() - run.started)))
    if run.finished is None:
        raise AssertionError(f"the mini pipeline took over {MINI_RUN_TIMEOUT} s:\n{run.log.read_text()[-4000:]}")
    import torch

    torch.set_num_threads(run.torch_threads)  # the cores are the tests' again
    if run.proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({run.proc.returncode}):\n{run.log.read_text()[-8000:]}")
    elapsed = run.finished - run.started
    print(f"\nmini pipeline, cold (beside the tests before it): {elapsed:.0f} s")
    return run.workdir, elapsed
