"""Shared fixtures."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from pipeline_utils import load_config, write_config


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


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory):
    """The whole default (mini) pipeline, cold, in a scratch directory: once per test session,
    shared by every module that asks for it. Returns (workdir, seconds)."""
    import time

    from pipeline_utils import snakemake

    workdir = tmp_path_factory.mktemp("mini")
    start = time.perf_counter()
    snakemake(workdir, "--cores", "all")
    elapsed = time.perf_counter() - start
    print(f"\nmini pipeline, cold: {elapsed:.0f} s")
    return workdir, elapsed
