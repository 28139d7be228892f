"""Training: one masked SGD loop for dense, L1 (LOMP), iterative pruning and every baseline.

Data live as tensors on the device; batches come from a seeded permutation and are augmented
as whole batches. Each epoch ends with an atomic checkpoint (model, optimiser, RNG, history)
from which a killed run resumes to the same final weights as an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .checkpoint import load_state_dict, save_torch
from .data import TensorData, augment_batch
from .data_gradients import DataGradientTracker
from .io import PrunelimitError, load_json, save_json
from .models import (
    build_model,
    count_parameters,
    count_prunable,
    prunable_parameters,
    prunable_vector,
    revive_dead_units,
)
from .resume import plain, read_resume, resume_key

Masks = dict[str, torch.Tensor]


@dataclass
class TrainConfig:
    """One training run's recipe. The pipeline gives every field from its config (``train_defaults`` with the
    task's overrides, complete by the schema: prunelimit.config.task_spec), so no default here is the
    pipeline's; those below are the official recipe's, for direct callers. ``epochs`` has none: each task
    sets its own (config.yaml's L1 regime rule), and a default would contradict every preset's."""

    epochs: int
    batch_size: int = 128  # official code: 128 for every task
    lr: float = 0.01  # peak learning rate after warm-up
    momentum: float = 0.9
    weight_decay: float = 0.0  # l2 coefficient through SGD (the paper's runs use 0)
    l1: float = 0.0  # λ of the L1 penalty λ·Σ|w| over the prunable weights (LOMP)
    # or the L1 shrinkage S = λ·Σ_t lr_t to reach: λ is then S over the run's summed learning rate
    l1_shrinkage: float | None = None
    revive_dead_units: bool = True  # re-draw units dead on every training sample at init (models.revive_dead_units)
    recalibrate_batchnorm: bool = True  # BatchNorm statistics of the final weights (recalibrate_batchnorm)
    schedule: str = "constant"  # constant | cosine | multistep
    milestones: list[int] = field(default_factory=list)  # multistep epochs
    gamma: float = 0.1  # multistep factor
    warmup_epochs: int = 0  # linear warm-up to lr
    seed: int = 0
    augment: bool = False  # random crop (padding crop_padding) + horizontal flip
    crop_padding: int = 4
    max_steps: int | None = None  # stop after this many optimiser steps (smoke runs)
    start_epoch: int = 0  # first epoch run; the schedule continues from it (IMP rewinding)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise PrunelimitError(f"unknown training option(s) {sorted(unknown)}; known: {sorted(known)}")
        if "epochs" not in d:
            raise PrunelimitError("training options lack epochs (the task's recipe sets it)")
        return cls(**d)


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate for ``epoch`` (0-based): linear warm-up, then the chosen schedule."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * (epoch + 1) / cfg.warmup_epochs
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        span = max(1, cfg.epochs - cfg.warmup_epochs)
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * (epoch - cfg.warmup_epochs) / span))
    if cfg.schedule == "multistep":
        return cfg.lr * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    raise PrunelimitError(f"unknown schedule {cfg.schedule!r}; use constant, cosine or multistep")


def l1_penalty(model: nn.Module) -> torch.Tensor:
    return sum(p.abs().sum() for _, p in prunable_parameters(model))  # type: ignore[return-value]


def training_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, l1: float) -> torch.Tensor:
    """Cross-entropy (mean over the batch) plus λ·Σ|w| over the prunable weights."""
    loss = F.cross_entropy(model(x), y)
    if l1:
        loss = loss + l1 * l1_penalty(model)
    return loss


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (eval mode, no regulariser)."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size])
        total_loss += F.cross_entropy(out, y[i:i + batch_size], reduction="sum").item()
        correct += (out.argmax(1) == y[i:i + batch_size]).sum().item()
    model.train(was_training)
    return total_loss / len(x), correct / len(x)


@torch.no_grad()
def per_batch_loss_std(model: nn.Module, data: TensorData, batch_size: int = 128, l1: float = 0.0,
                       seed: int = 0, augment: bool = False, crop_padding: int = 4) -> float:
    """ε of the theory: the spread of the training loss over the minibatches of one pass of the loader.

    As the official ``cal_loss`` computes it [code]: the model in eval mode, every batch of a
    shuffled pass over the training set (the partial last batch included), each batch augmented
    as in training when ``augment`` (random crop with ``crop_padding`` + flip), the loss the model
    was trained on (cross-entropy + λ·Σ|w|), and numpy's population standard deviation (ddof 0)
    of the per-batch losses. The pass is seeded by ``seed``, so reruns agree.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    n = len(data.x_train)
    order = torch.randperm(n, generator=generator).to(data.x_train.device)
    penalty = l1 * l1_penalty(model).item() if l1 else 0.0
    losses = []
    for i in range(0, n, batch_size):
        idx = order[i:i + batch_size]
        x = data.x_train[idx]
        if augment:
            x = augment_batch(x, crop_padding, generator)
        losses.append(F.cross_entropy(model(x), data.y_train[idx]).item() + penalty)
    model.train(was_training)
    if len(losses) < 2:
        raise PrunelimitError(f"need at least 2 batches of {batch_size} to measure the loss spread, "
                              f"have {n} training samples")
    return float(np.std(np.asarray(losses, np.float64)))  # population std, ddof 0 (numpy's default)


def epsilon_batch_size(batch_size: int, n_train: int) -> int:
    """The loader's batch size for ε, halved on tiny training sets so the spread has two batches."""
    return max(1, min(int(batch_size), n_train // 2))


def steps_per_epoch(cfg: TrainConfig, n_train: int) -> int:
    """SGD steps of one epoch: full batches only (the last partial batch is dropped), at least one."""
    return max(1, n_train // cfg.batch_size)


def lr_sum(cfg: TrainConfig, n_train: int, steps: int | None = None) -> float:
    """Σ_t lr_t over ``steps`` SGD steps from ``cfg.start_epoch`` (default: every step the run takes)."""
    per_epoch = steps_per_epoch(cfg, n_train)
    if steps is None:
        steps = per_epoch * (cfg.epochs - cfg.start_epoch)
        if cfg.max_steps is not None:
            steps = min(steps, cfg.max_steps)
    total, epoch = 0.0, cfg.start_epoch
    while steps > 0:
        taken = min(per_epoch, steps)
        total += lr_at(cfg, epoch) * taken
        steps -= taken
        epoch += 1
    return total


def l1_shrinkage(cfg: TrainConfig, n_train: int, steps: int) -> float:
    """λ·Σ_t lr_t over the ``steps`` SGD steps run: how far L1 alone moves a weight the data never
    push back [ours]. The official recipes give ≈0.04 (FC5: 0.01·5e-5·200·391) and ≈0.08 (VGG16)."""
    return cfg.l1 * lr_sum(cfg, n_train, steps)


def resolve_l1(cfg: TrainConfig, n_train: int) -> TrainConfig:
    """``cfg`` with λ set from its target ``l1_shrinkage``: λ = S / Σ_t lr_t over the whole run, so
    the run reaches exactly S (the L1 regime rule of config.yaml). Unchanged without a target."""
    if cfg.l1_shrinkage is None:
        return cfg
    if cfg.l1:
        raise PrunelimitError("give l1 or l1_shrinkage, not both")
    return replace(cfg, l1=cfg.l1_shrinkage / lr_sum(cfg, n_train))


def initial_model(spec: dict, data: TensorData, cfg: TrainConfig, seed: int) -> nn.Module:
    """The task's model initialised with ``seed`` on the data's device; dead ReLU units re-drawn
    when ``cfg.revive_dead_units`` (on the un-augmented training inputs)."""
    model = build_model(spec["model"], data.in_shape, data.num_classes, seed=seed,
                        **spec.get("model_args", {})).to(data.x_train.device)
    if cfg.revive_dead_units:
        revive_dead_units(model, data.x_train, seed)
    return model


SMALL_WEIGHT = 1e-3  # |w| below this counts as pruned away by L1 (the equilibrium diagnostic)


def small_weight_share(model: nn.Module) -> float:
    """Share of the prunable weights with |w| < 1e-3."""
    return float((prunable_vector(model).abs() < SMALL_WEIGHT).double().mean())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> bool:
    """Set every BatchNorm's running statistics to their average over ``x`` under the current weights.

    Training keeps an exponential average (momentum 0.1) of the batch statistics, which lags the
    weights when they move fast. Under L1 they do at mini scale: λ is ~45× the paper's (the same
    shrinkage in ~45× fewer steps) and the scale-invariant conv weights shrink every step, so the
    lagging statistics cost a VGG on digits 2 points of test accuracy (0.961 → 0.981 once
    recomputed; dense 0.983). Recomputing them after training ("precise BN", Wu & Johnson 2021,
    "Rethinking 'Batch' in BatchNorm") evaluates the network the weights define [ours; the official
    code keeps the running averages]. Returns whether the model has BatchNorm at all.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return False
    was_training = model.training
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    try:
        for start in range(0, len(x), batch_size):
            if len(x) - start > 1:  # a batch of one has no spread
                model(x[start:start + batch_size])
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(was_training)
    return True


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Masks | None) -> None:
    if not masks:
        return
    for name, p in prunable_parameters(model):
        if name in masks:
            p.mul_(masks[name].to(p.dtype))


@dataclass
class TrainResult:
    history: list[dict]
    wall_time: float
    steps: int


def train(model: nn.Module, data: TensorData, cfg: TrainConfig, *, masks: Masks | None = None,
          checkpoint: str | os.PathLike | None = None, progress: bool = True, desc: str = "train",
          on_epoch: Callable[[int, dict], None] | None = None, extra_state: dict | None = None) -> TrainResult:
    """Train ``model`` in place with SGD on ``data`` under ``cfg``.

    ``masks`` (name → 0/1 tensor over the prunable weights) are applied before training and after
    every optimiser step, so pruned weights stay exactly zero. With ``checkpoint``, state is saved
    atomically after each epoch and a run finding that file resumes from it if it was written for
    the same model, data and config (else it starts afresh and logs why); the file is removed
    when training completes. ``extra_state`` (name → object with ``state_dict()`` and
    ``load_state_dict()``, e.g. a :class:`.data_gradients.DataGradientTracker`) is whatever else the run accumulates:
    saved in the resume file beside the model, optimiser, RNG and history and restored from it, so a
    resumed run ends with the same state as an uninterrupted one (a file without it is not resumed).
    """

    device = data.x_train.device
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)  # CPU generator: identical streams on any device
    history: list[dict] = []
    start_epoch, steps, elapsed = cfg.start_epoch, 0, 0.0
    ckpt_path = Path(checkpoint) if checkpoint else None
    # the resume file continues only a run of the same model, data and config (prunelimit.resume)
    key = resume_key(model, data, asdict(cfg)) if ckpt_path else None
    extra_state = extra_state or {}
    if ckpt_path and ckpt_path.exists():
        state, why_not = read_resume(ckpt_path, key, device, extra=extra_state)
        if state is None:
            logging.getLogger("prunelimit").warning("%s: not resuming from %s: %s; training from the start",
                                                    desc, ckpt_path, why_not)
        else:
            try:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                generator.set_state(state["rng"].cpu())  # a CPU generator, whatever map_location did
                for name, obj in extra_state.items():
                    obj.load_state_dict(state["extra"][name])
            except (RuntimeError, KeyError, ValueError, TypeError) as err:  # same key, damaged content
                raise PrunelimitError(f"resume checkpoint {ckpt_path} is damaged ({type(err).__name__}: "
                                      f"{str(err).splitlines()[0] if str(err) else ''}); delete it") from None
            start_epoch, steps, elapsed, history = state["epoch"], state["steps"], state["elapsed"], state["history"]
    apply_masks(model, masks)
    n = len(data.x_train)
    batches_per_epoch = steps_per_epoch(cfg, n)
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.epochs, initial=start_epoch, desc=desc, unit="epoch", disable=not progress, leave=False)
    for epoch in range(start_epoch, cfg.epochs):
        lr = lr_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        running, seen = 0.0, 0
        for b in range(batches_per_epoch):
            if cfg.max_steps is not None and steps >= cfg.max_steps:
                break
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            x, y = data.x_train[idx], data.y_train[idx]
            if cfg.augment:
                x = augment_batch(x, cfg.crop_padding, generator)
            loss = training_loss(model, x, y, cfg.l1)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"{desc}: training loss is {loss.item()} at epoch {epoch + 1}, batch {b + 1} "
                    f"(lr={lr:g}); lower the learning rate or check the data"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            apply_masks(model, masks)
            steps += 1
            running += loss.item() * len(idx)
            seen += len(idx)
        record = {"epoch": epoch + 1, "lr": lr, "train_loss_running": running / max(seen, 1)}
        if on_epoch is not None:
            on_epoch(epoch, record)
        history.append(record)
        bar.update(1)
        bar.set_postfix(loss=f"{record['train_loss_running']:.4f}")
        if ckpt_path:
            # builtins and tensors only, so that it loads with weights_only=True
            save_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": generator.get_state(),
                        "epoch": epoch + 1, "steps": steps, "elapsed": elapsed + time.perf_counter() - t0,
                        "history": plain(history), "key": key,
                        "extra": {name: obj.state_dict() for name, obj in extra_state.items()}}, ckpt_path)
        if cfg.max_steps is not None and steps >= cfg.max_steps:
            break
    bar.close()
    if cfg.recalibrate_batchnorm:
        recalibrate_batchnorm(model, data.x_train, cfg.batch_size)
    if ckpt_path and ckpt_path.exists():
        ckpt_path.unlink()
    return TrainResult(history=history, wall_time=elapsed + time.perf_counter() - t0, steps=steps)


# ---------------------------------------------------------------------------------------------
# Task level: build, train, measure, save (what the pipeline's train rule calls)
# ---------------------------------------------------------------------------------------------


def train_and_save(spec: dict, data: TensorData, model_out: str | os.PathLike, metrics_out: str | os.PathLike,
               checkpoint: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Train the task ``spec`` (see :func:`prunelimit.config.task_spec`) and write its outputs.

    Writes ``model_out`` (state_dict) and ``metrics_out`` (metadata, losses, accuracies, ε, time).
    """

    cfg = resolve_l1(TrainConfig.from_dict(spec["train"]), len(data.x_train))
    model = initial_model(spec, data, cfg, cfg.seed)
    gradients = DataGradientTracker(model, cfg.l1)

    def on_epoch(epoch: int, record: dict) -> None:
        record["small_weight_share"] = small_weight_share(model)

    # the tracker's masks go into the resume file: a resumed run's never-updated shares cover every epoch
    result = train(model, data, cfg, checkpoint=checkpoint, progress=progress, desc=f"{spec['task']}/{spec['variant']}",
                   on_epoch=on_epoch, extra_state={"data_gradients": gradients})
    gradients.remove()
    train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
    test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
    eps_batch = epsilon_batch_size(cfg.batch_size, len(data.x_train))
    history = result.history
    # the share after the last epoch against the share a tenth of the epochs earlier (E // 10 epochs of change)
    tail = [h["small_weight_share"] for h in history[-(max(1, len(history) // 10) + 1):] if "small_weight_share" in h]
    metrics = {
        "task": spec["task"], "variant": spec["variant"], "model": spec["model"],
        "model_args": spec.get("model_args", {}), "dataset": spec["dataset"],
        "in_shape": list(data.in_shape), "num_classes": data.num_classes,
        "n_params": count_parameters(model), "n_prunable": count_prunable(model),
        "train": asdict(cfg),
        "train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc,
        # ε of the theory [code cal_loss]: over the loader the model was trained with, and on clean data
        "loss_std": per_batch_loss_std(model, data, batch_size=eps_batch, l1=cfg.l1, seed=cfg.seed,
                                       augment=cfg.augment, crop_padding=cfg.crop_padding),
        "loss_std_clean": per_batch_loss_std(model, data, batch_size=eps_batch, l1=cfg.l1, seed=cfg.seed),
        "loss_std_batch_size": eps_batch,
        "l1_penalty": l1_penalty(model).item(), "epochs_run": len(history), "steps": result.steps,
        # total L1 pull on a weight the data never push back: λ·Σ_t lr_t [ours; the paper's regime]
        "l1_shrinkage": l1_shrinkage(cfg, len(data.x_train), result.steps),
        "small_weight_share": small_weight_share(model),
        # equilibrium: the net change of that share over the last tenth of the epochs (the regime rule)
        "small_weight_share_drift_last_tenth": (tail[-1] - tail[0]) if tail else None,
        "never_updated_share": gradients.never_updated_share(),
        # of those, the ones still at |w| ≥ 1e-3: 0 means every weight the data never shaped was pulled to ~0
        "never_updated_kept_share": gradients.never_updated_share(model, at_least=SMALL_WEIGHT),
        "wall_time_s": result.wall_time, "history": history,
    }
    save_torch(model.state_dict(), model_out)
    save_json(metrics, metrics_out)
    return metrics


def load_trained(model_path: str | os.PathLike, metrics_path: str | os.PathLike,
                 device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a trained model from its metrics.json metadata and load its state_dict."""

    meta = load_json(metrics_path)
    model = build_model(meta["model"], tuple(meta["in_shape"]), meta["num_classes"], **meta.get("model_args", {}))
    load_state_dict(model, model_path)
    return model.to(device).eval(), meta
