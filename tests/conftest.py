"""Shared fixtures."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from pipeline_utils import load_config, snakemake_command, write_config
from prunelimit.config import validate_config

PIPELINE_RUN_TIMEOUT = 3600  # seconds; the cold default DAG took 12-24 min on 2 shared cores (2026-11-26)


@pytest.fixture
def one_torch_thread():
    """One torch thread for a test of small products: a second thread gains nothing on models of a few
    thousand weights and only waits for a core on a busy two-core machine (4-60x slower measured).
    A test module asks for it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def small_config():
    """Write a pipeline config derived from config.yaml: every section kept (rule files may read
    any of them), ``preset``/``tasks``/... replaced by the keyword arguments, and every section's
    ``tasks`` list (iterative, baselines, ...) and per-task ``overrides`` restricted to tasks that exist."""

    def make(path: Path, **overrides) -> Path:
        config = copy.deepcopy(load_config())
        config.update(copy.deepcopy(overrides))
        for name, section in config.items():  # e.g. iterative.tasks, baselines.tasks, oneshot.overrides
            if name not in overrides and isinstance(section, dict) and isinstance(section.get("tasks"), list):
                section["tasks"] = [t for t in section["tasks"] if t in config["tasks"]]
            if name not in overrides and isinstance(section, dict) and isinstance(section.get("overrides"), dict):
                section["overrides"] = {t: v for t, v in section["overrides"].items() if t in config["tasks"]}
        return write_config(path, config)

    return make


# ---------------------------------------------------------------------------------------------
# Whole-pipeline runs: each one cold, once per session, started in the background as the session
# begins if a selected test asks for it (the tests on it go last, so the others run beside it)
# ---------------------------------------------------------------------------------------------

QUICK_SCALE = Path(__file__).parent / "quick_scale.yaml"


def deep_merge(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in, key by key at every depth (as Snakemake merges configs)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def quick_scale_config() -> dict:
    """config.yaml with tests/quick_scale.yaml merged in: the default DAG, less work per job."""
    config = deep_merge(load_config(), yaml.safe_load(QUICK_SCALE.read_text()))
    validate_config(config)
    return config


# fixture name -> the config its run uses (None: config.yaml itself)
PIPELINE_RUNS = {
    "mini_run": quick_scale_config,  # make test: the default DAG at test scale
    "default_run": None,  # make test-slow: the default preset as `make reproduce` runs it
}


def _runs_needed(item: pytest.Item) -> set[str]:
    return set(PIPELINE_RUNS) & set(getattr(item, "fixturenames", ()))


@pytest.hookimpl(trylast=True)  # after -m/-k deselection: orders only what will run
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on a pipeline run go last (otherwise in their order): every other test then runs
    while the pipeline builds, using the cores its DAG leaves idle, instead of after it."""
    items.sort(key=lambda item: bool(_runs_needed(item)))


class PipelineRun(NamedTuple):
    """A finished cold run: its directory, its seconds from start to end (beside the tests before
    it), the validated config it ran and the config file to run it again with (None: config.yaml)."""

    workdir: Path
    seconds: float
    config: dict
    configfile: Path | None


class BackgroundRun:
    """A snakemake process and the thread that waits for it, noting when it ended."""

    def __init__(self, proc: subprocess.Popen, workdir: Path, log: Path, config: dict, configfile: Path | None):
        self.proc, self.workdir, self.log = proc, workdir, log
        self.config, self.configfile = config, configfile
        self.started, self.finished = time.perf_counter(), None
        self.watcher = threading.Thread(target=self._wait, daemon=True)
        self.watcher.start()

    def _wait(self) -> None:
        self.proc.wait()
        self.finished = time.perf_counter()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def result(self, name: str) -> PipelineRun:
        """Wait for the run to finish."""
        self.watcher.join(timeout=max(1.0, PIPELINE_RUN_TIMEOUT - (time.perf_counter() - self.started)))
        if self.finished is None:
            raise AssertionError(f"{name}: the pipeline took over {PIPELINE_RUN_TIMEOUT} s:\n"
                                 f"{self.log.read_text()[-4000:]}")
        if self.proc.returncode != 0:
            raise AssertionError(f"{name}: snakemake failed ({self.proc.returncode}):\n{self.log.read_text()[-8000:]}")
        elapsed = self.finished - self.started
        print(f"\n{name}: pipeline cold (beside the tests before it): {elapsed:.0f} s")
        return PipelineRun(self.workdir, elapsed, self.config, self.configfile)


@pytest.fixture(scope="session", autouse=True)
def pipeline_runs_in_background(request, tmp_path_factory):
    """Start each pipeline run a selected test needs, cold, in its own scratch directory. Killed,
    with its jobs, if the session ends first."""
    needed = set().union(*(_runs_needed(item) for item in request.session.items))
    runs = {}
    for name in sorted(needed):
        workdir = tmp_path_factory.mktemp(name)
        make_config = PIPELINE_RUNS[name]
        config = make_config() if make_config else load_config()
        configfile = write_config(tmp_path_factory.mktemp(f"{name}_config") / "config.yaml", config) \
            if make_config else None
        log = tmp_path_factory.mktemp(f"{name}_log") / "snakemake.log"
        cmd, env = snakemake_command(workdir, "--cores", "all", configfile=configfile)
        with open(log, "w") as out:  # the child holds its own copy of the descriptor
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)  # its own process group: killed with its jobs
        runs[name] = BackgroundRun(proc, workdir, log, config, configfile)
    # While a pipeline's single-threaded jobs hold the cores, a second torch thread in the tests
    # would mostly wait for a core: the tests run one thread until the runs they need are over.
    import torch

    threads = torch.get_num_threads()
    if runs:
        torch.set_num_threads(1)
    yield runs, threads
    torch.set_num_threads(threads)
    for run in runs.values():
        run.stop()


def _finished_run(background, name: str) -> PipelineRun:
    runs, threads = background
    result = runs[name].result(name)
    if all(run.finished is not None for run in runs.values()):
        import torch

        torch.set_num_threads(threads)  # the cores are the tests' again
    return result


@pytest.fixture(scope="session")
def mini_run(pipeline_runs_in_background) -> PipelineRun:
    """The finished cold run of the default DAG at test scale (tests/quick_scale.yaml)."""
    return _finished_run(pipeline_runs_in_background, "mini_run")


@pytest.fixture(scope="session")
def default_run(pipeline_runs_in_background) -> PipelineRun:
    """The finished cold run of config.yaml as `make reproduce` runs it (slow: minutes)."""
    return _finished_run(pipeline_runs_in_background, "default_run")
