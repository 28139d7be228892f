"""LOMP and the baselines it is compared with (IMP, Rare Gems, Smart-Ratio), one result dict each.

- ``lomp``: the L1-trained model one-shot magnitude pruned at the sparsity, no retraining — the
  paper's method, as the official code evaluates it (``get_sparse_model`` then ``validate``;
  QiaozheZhang/Global-One-shot-Pruning ``trainer.py``: no fine-tuning step exists there).
- ``imp``: :mod:`.imp` (one trajectory per seed serves every target sparsity).
- ``rare_gems``: :mod:`.rare_gems`.
- ``smart_ratio``: :mod:`.smart_ratio` (random masks with its layer ratios, trained from scratch).

Every trained baseline goes through :func:`prunelimit.train.train` with its masks (applied before
training and after every optimiser step). Results share the keys: method, task, sparsity, seed,
kept, n_prunable, density, test_acc, test_loss, train_acc, train_loss, wall_time_s, source.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace

from torch import nn

from ..data import TensorData
from ..io import PrunelimitError
from ..methods import ImpSettings, method, names
from ..models import prunable_parameters
from ..prune import apply_pruning, count_kept, masked_weights_zero
from ..sections import Section
from ..sparsity import check_sparsity
from ..train import TrainConfig, evaluate, initial_model, train
from . import imp, smart_ratio

METHODS = tuple(names("baselines"))  # the registry's (prunelimit.methods): name, label, settings, entry point


def lomp(model: nn.Module, data: TensorData, sparsity: float) -> dict:
    """Prune the (L1-trained) ``model`` in place at ``sparsity`` and evaluate it, no retraining."""
    s = check_sparsity(sparsity)
    masks = apply_pruning(model, s)
    total = sum(m.numel() for m in masks.values())
    kept = count_kept(masks)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
    train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
    return {"sparsity": s, "kept": kept, "n_prunable": total, "density": kept / total, "test_acc": test_acc,
            "test_loss": test_loss, "train_acc": train_acc, "train_loss": train_loss}


def run_smart_ratio(spec: dict, data: TensorData, sparsity: float, seed: int, *, classifier_ratio: float = 0.3,
                    progress: bool = False) -> dict:
    """Smart-Ratio masks (seeded), a fresh model (seeded), trained from scratch under the masks."""
    s = check_sparsity(sparsity)
    cfg = replace(TrainConfig.from_dict({**spec["train"], "l1": 0.0}), seed=int(seed))
    model = initial_model(spec, data, cfg, int(seed))
    residual = smart_ratio.is_residual(model)
    masks = smart_ratio.smart_ratio_masks(model, s, int(seed), classifier_ratio=classifier_ratio, residual=residual)
    train(model, data, cfg, masks=masks, progress=progress, desc="Smart-Ratio")
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
    train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
    sizes = [p.numel() for _, p in prunable_parameters(model)]
    kept = count_kept(masks)
    zero_ok = masked_weights_zero(model, masks)
    return {"sparsity": s, "kept": kept, "n_prunable": sum(sizes), "density": kept / sum(sizes),
            "test_acc": test_acc, "test_loss": test_loss, "train_acc": train_acc, "train_loss": train_loss,
            "layers": smart_ratio.describe(sizes, s, classifier_ratio=classifier_ratio, residual=residual),
            "classifier_ratio": classifier_ratio, "residual": residual, "masked_weights_zero": zero_ok}


def _keywords(options: Section | dict | None) -> dict:
    """A method's settings (its config block, typed) as the keyword arguments of its function."""
    return asdict(options) if isinstance(options, Section) else dict(options or {})


def run_baseline(name: str, spec: dict, data: TensorData, sparsity: float, seed: int,
                 options: Section | dict | None = None, *, model: nn.Module | None = None,
                 progress: bool = False) -> dict:
    """One result of ``method`` on task ``spec`` at ``sparsity`` with ``seed``.

    ``options`` is the method's config block (``baselines.<method>``, typed or as a dict of its
    keyword arguments; none for LOMP); ``model`` is the trained
    L1 model for ``lomp``. IMP here runs a trajectory to this sparsity alone; use
    :func:`imp.run_imp` to serve several sparsities from one trajectory.
    """
    entry, options = method(name), _keywords(options)
    if entry.comparison != "baselines":
        raise PrunelimitError(f"{name} is not a baseline method (it is in the {entry.comparison} comparison); "
                              f"baselines: {', '.join(METHODS)}")
    start = time.perf_counter()
    if entry.runs == "sweep":
        if model is None:
            raise PrunelimitError(f"{entry.label} needs the trained L1 model (pass model=...)")
        result = lomp(model, data, sparsity)
    elif entry.runs == "trajectory":  # one trajectory through this sparsity alone
        result = entry.run()(spec, data, [sparsity], seed, progress=progress, **options)[0]
    else:
        result = entry.run()(spec, data, sparsity, seed, progress=progress, **options)
    return finish(result, name, spec, seed, options, time.perf_counter() - start)


def run_imp_trajectory(spec: dict, data: TensorData, sparsities: list[float], seed: int,
                       options: ImpSettings | dict | None = None, *, trained_dense: tuple[dict, dict] | None = None,
                       progress: bool = False) -> list[dict]:
    """One IMP trajectory (``seed``) through every target sparsity; one finished result per target.
    ``trained_dense``: the pipeline's dense model of this recipe and seed, taken over (:func:`imp.run_imp`)."""
    options = _keywords(options)
    start = time.perf_counter()
    results = imp.run_imp(spec, data, sparsities, seed, trained_dense=trained_dense, progress=progress, **options)
    wall = time.perf_counter() - start
    shared = {"dense_run": "the pipeline's trained dense model" if trained_dense is not None else "its own"}
    return [finish({**r, **shared}, "imp", spec, seed, options, wall) for r in results]


def finish(result: dict, name: str, spec: dict, seed: int, options: dict, wall_time: float) -> dict:
    """Add provenance (method, task, seed, options, source, training epochs, time) to a result dict."""
    epochs = int(spec["train"]["epochs"])
    settings = method(name).settings  # a baseline's TrainingSettings says what it trains; LOMP has none
    budget = settings(**options).training_budget(epochs) if settings is not None else f"{epochs}"
    return {"method": name, "task": spec["task"], "model": spec["model"], "dataset": spec["dataset"],
            "seed": int(seed), **result, "options": options, "source": method(name).source, "train_epochs": epochs,
            "training": budget, "wall_time_s": wall_time}
