"""Resolving the validated pipeline config into per-task specs (the library's view of config.yaml)."""

from __future__ import annotations

import copy

import torch

from .io import PrunelimitError


def task_spec(config: dict, task: str, variant: str, seed: int | None = None) -> dict:
    """The resolved recipe of ``task`` trained as ``variant`` (``dense`` or ``l1``), optionally reseeded."""
    tasks = config["tasks"]
    if task not in tasks:
        raise PrunelimitError(f"unknown task {task!r}; tasks in the config: {', '.join(tasks)}")
    if variant not in ("dense", "l1"):
        raise PrunelimitError(f"unknown variant {variant!r}; use dense or l1")
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
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise PrunelimitError("device: cuda was requested but no CUDA device is available")
    return torch.device(name)


def setup_torch(config: dict) -> torch.device:
    """Apply the config's thread count and return its device."""
    threads = int(config.get("torch_threads", 0) or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    return resolve_device(config.get("device", "auto"))
