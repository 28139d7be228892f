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
