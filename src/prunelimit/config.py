"""Resolving the validated pipeline config into per-task specs (the library's view of config.yaml).

The workflow calls task_spec while it parses and builds the DAG, so this module imports torch (and
prunelimit.io, which imports it) only inside the functions that need it: a dry run stays torch-free.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _error(message: str) -> Exception:
    from .io import PrunelimitError  # only on the error path: io imports torch

    return PrunelimitError(message)


TASK_LIST_SECTIONS = ("iterative", "baselines", "tv_distance")


def check_task_references(config: dict) -> None:
    """Stop on a section's ``tasks`` list naming a task the config does not define (the workflow
    runs this after the schema, which cannot express cross-references)."""
    tasks = list(config["tasks"])
    for section in TASK_LIST_SECTIONS:
        unknown = sorted(set(config.get(section, {}).get("tasks", [])) - set(tasks))
        if unknown:
            raise ValueError(f"config key {section}.tasks names unknown task(s) {unknown}; tasks: {tasks}")


def task_spec(config: dict, task: str, variant: str, seed: int | None = None) -> dict:
    """The resolved recipe of ``task`` trained as ``variant`` (``dense`` or ``l1``), optionally reseeded."""
    tasks = config["tasks"]
    if task not in tasks:
        raise _error(f"unknown task {task!r}; tasks in the config: {', '.join(tasks)}")
    if variant not in ("dense", "l1"):
        raise _error(f"unknown variant {variant!r}; use dense or l1")
    entry = tasks[task]
    train = {**copy.deepcopy(config.get("train_defaults", {})), **copy.deepcopy(entry.get("train", {}))}
    train["l1"] = float(entry.get("l1", 0.0)) if variant == "l1" else 0.0
    if seed is not None:
        train["seed"] = int(seed)
        variant = f"{variant}_seed{seed}"
    return {"task": task, "variant": variant, "model": entry["model"], "dataset": entry["dataset"],
            "model_args": copy.deepcopy(entry.get("model_args", {})), "train": train}


def resolve_device(name: str = "auto") -> torch.device:
    """The device chosen once for a job: cuda if asked or available (auto), else cpu."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise _error("device: cuda was requested but no CUDA device is available")
    return torch.device(name)


def setup_torch(config: dict) -> torch.device:
    """Apply the config's thread count and return its device."""
    import torch

    threads = int(config.get("torch_threads", 0) or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    return resolve_device(config.get("device", "auto"))
