"""LOMP against the optimal-brain-surgeon family: every one-shot method of the registry on one trained model.

One job prunes one trained model (a task's dense or L1 model, one training seed) with every configured
one-shot method (``oneshot`` in :mod:`prunelimit.methods`: MP, WF, CBS, CHITA) at every target sparsity,
without retraining, and evaluates each pruned copy. The methods that need curvature share one matrix of N
per-sample gradients (the empirical Fisher's), drawn once from the training set, so each method's time
is its own pruning time plus, stated apart, the shared gradient time. Magnitude pruning (MP) of the L1
model is LOMP.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time

import torch
from torch import nn

from ..data import TensorData
from ..io import PrunelimitError
from ..methods import method, names
from ..models import count_prunable
from ..sections import Section
from ..seeds import derived_seed
from ..train import evaluate
from .fisher import check_open_sparsity
from .oneshot import per_sample_gradients

BYTES = 8  # float64 gradients and inverses


def _memory_bytes() -> int | None:
    """Physical memory of this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_fisher_size(samples: int, block_size: int, n_train: int, n_prunable: int, task: str,
                      memory: int | None = None) -> tuple[int, int]:
    """Refuse a Fisher the data or the machine cannot hold, naming the setting: N above the training set, or the
    N × D gradients with one block's N × N Woodbury matrix and its b × b inverse over half the machine's memory."""
    if int(samples) < 1:
        raise PrunelimitError(f"oneshot.samples (N) must be at least 1, got {samples}")
    if int(block_size) < 1:
        raise PrunelimitError(f"oneshot.block_size must be at least 1, got {block_size}")
    if int(samples) > n_train:
        raise PrunelimitError(f"oneshot.samples (N = {samples}) for {task} exceeds its training set ({n_train})")
    block = min(int(block_size), n_prunable)
    need = BYTES * (int(samples) * n_prunable + int(samples) ** 2 + block ** 2)
    memory = _memory_bytes() if memory is None else memory
    if memory is not None and need > memory // 2:
        raise PrunelimitError(f"oneshot.samples = {samples} and oneshot.block_size = {block_size} do not fit {task}: "
                              f"N × D gradients and one block's inverse need {need / 2**30:.1f} GiB, over half of "
                              f"this machine's {memory / 2**30:.1f} GiB")
    return int(samples), block


def gradient_sample(n_train: int, samples: int, seed: int) -> torch.Tensor:
    """The training-set indices of the N gradients: the first N of a permutation drawn from its own stream."""
    generator = torch.Generator().manual_seed(derived_seed(seed, "oneshot-fisher-sample"))
    return torch.randperm(n_train, generator=generator)[:samples]


def compare_oneshot(model: nn.Module, data: TensorData, *, methods: dict[str, Section], sparsities: list[float],
                    samples: int, block_size: int, seed: int, task: str = "", progress: bool = False) -> list[dict]:
    """One row per (method, sparsity): ``model`` (left unchanged) pruned by each registry method of
    ``methods`` (name → its typed settings) at each sparsity, no retraining, evaluated on the test and training
    sets. ``samples`` gradients (one sample each) from a ``seed``-drawn subset of the training set; Fisher
    blocks of ``block_size`` weights."""
    for name in methods:
        if method(name).comparison != "oneshot":
            raise PrunelimitError(f"{name} is not a one-shot method; one-shot methods: {', '.join(names('oneshot'))}")
    targets = [check_open_sparsity(s) for s in sparsities]
    n_prunable = count_prunable(model)
    if n_prunable == 0:
        raise PrunelimitError(f"{task or type(model).__name__} has no prunable (conv or linear) weights")
    samples, block = check_fisher_size(samples, block_size, len(data.x_train), n_prunable, task)
    grads, gradient_time = None, 0.0
    index = gradient_sample(len(data.x_train), samples, seed).to(data.x_train.device)

    def regrad(current: nn.Module) -> torch.Tensor:  # the same N samples' gradients of ``current`` (CHITA++'s stages)
        return per_sample_gradients(current, data.x_train[index], data.y_train[index], samples)

    if any(name != "mp" for name in methods):
        start = time.perf_counter()
        grads = regrad(model)
        gradient_time = time.perf_counter() - start
    rows, cache = [], {}  # block inverses and Lipschitz constants, shared by the sparsities and methods
    for name, settings in methods.items():
        options = dataclasses.asdict(settings)
        kernel_options = {"block_size": block, **options}
        for s in targets:
            pruned = copy.deepcopy(model)
            start = time.perf_counter()
            # the registry's entry point: (model, name, sparsity, grads, cache=, regrad=, **settings) → OneShotResult
            result = method(name).run()(pruned, name, s, grads, cache=cache, regrad=regrad, **kernel_options)
            wall = time.perf_counter() - start
            test_loss, test_acc = evaluate(pruned, data.x_test, data.y_test)
            train_loss, train_acc = evaluate(pruned, data.x_train, data.y_train)
            if not math.isfinite(test_loss):
                raise PrunelimitError(f"{task}: {name} at sparsity {s:g} left a non-finite test loss ({test_loss})")
            rows.append({"method": name, "sparsity": s, "kept": result.kept, "n_prunable": result.n_prunable,
                         "density": result.kept / result.n_prunable, "test_acc": test_acc, "test_loss": test_loss,
                         "train_acc": train_acc, "train_loss": train_loss, "wall_time_s": wall,
                         "gradient_time_s": gradient_time if name != "mp" else 0.0, "samples": samples,
                         "block_size": block, "blocks": len(result.blocks), "options": options})
            if progress:
                print(f"{task} {name} s={s:g}: test acc {test_acc:.4f} ({wall:.2f} s)", flush=True)
    return rows
