"""ε, the loss tolerance of the sublevel set S(ε) = {w : L(w) ≤ L(w*) + ε}, measured on a trained model.

- :func:`loss_tolerance`: ε as the standard deviation of the per-minibatch training loss [code
  ``cal_loss``], or the ``theory.epsilon`` override.
- :func:`epsilon_from_metrics`: ε as the train rule measured it (its metrics), or the override.
- :func:`epsilon_spread`: ε over random batch partitions of the training set, the values of the ε
  band (:func:`prunelimit.gaussian_width.epsilon_band`) [ours].

The measurements run the model through the training code
(:func:`prunelimit.train.per_batch_loss_std`); what ε does in the prediction is
:mod:`prunelimit.gaussian_width`.
"""

from __future__ import annotations

import zlib

import numpy as np
from torch import nn

from .gaussian_width import check_epsilon
from .io import PrunelimitError
from .settings import TheorySettings
from .train import epsilon_batch_size, per_batch_loss_std


def loss_tolerance(model: nn.Module, data, *, l1: float = 0.0, override: float | None = None,
                   batch_size: int = 128, seed: int = 0) -> tuple[float, str]:
    """ε and where it came from: ``override`` (config ``theory.epsilon``) or the per-batch loss std.

    [code ``cal_loss``] ε is the population standard deviation of the per-minibatch training loss
    (batch 128, the loss including the L1 term) of the trained model, measured by
    :func:`prunelimit.train.per_batch_loss_std` on the un-augmented training set (``prunelimit
    predict`` and iterative pruning, which hold no loader). The pipeline's theory rule reads the
    value the train rule measured instead (:func:`epsilon_from_metrics`).
    """
    if override is not None:
        return check_epsilon(override, "config theory.epsilon"), "config theory.epsilon"
    batch = epsilon_batch_size(batch_size, len(data.x_train))
    value = per_batch_loss_std(model, data, batch_size=batch, l1=l1, seed=seed)
    source = f"per-batch training-loss std (batch {batch}, seed {seed}, l1 {l1:g}, clean data)"
    return check_epsilon(value, source), source


# The ε band [ours]: ε depends on how one shuffled pass cuts the training set into batches (~12 batches
# on digits, ~20% between partitions); its spread over random partitions, and the prediction at its ends.
EPSILON_PARTITION_TAG = zlib.crc32(b"epsilon_partition")  # the band's own random streams


def epsilon_partition_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th batch partition of the ε band: ``SeedSequence([seed, index, tag])``.

    In [2**62, 2**63): never a seed a run is given (the train rule measures ε with the training seed,
    ``prunelimit predict`` with ``--seed``), so the band never replays the pass that measured ε, and
    within what ``torch.Generator.manual_seed`` accepts.
    """
    state = int(np.random.SeedSequence([int(seed), int(index), EPSILON_PARTITION_TAG]).generate_state(
        1, dtype=np.uint64)[0])
    return (state >> 2) | (1 << 62)


def epsilon_spread(model: nn.Module, data, *, l1: float, batch_size: int = 128, partitions: int = 10,
                   seed: int = 0) -> np.ndarray:
    """ε over ``partitions`` random batch partitions of the training set [ours].

    Each value is :func:`prunelimit.train.per_batch_loss_std` (un-augmented data, the loss with its
    L1 term λ·Σ|w|, population std) on a shuffled pass seeded by :func:`epsilon_partition_seed`
    (``seed``, partition index); ``batch_size`` is halved on tiny training sets as for ε itself
    (:func:`prunelimit.train.epsilon_batch_size`).
    """
    partitions = int(partitions)
    if partitions < 2:
        raise PrunelimitError(f"the ε band needs at least 2 batch partitions, got {partitions}")
    batch = epsilon_batch_size(batch_size, len(data.x_train))
    return np.array([per_batch_loss_std(model, data, batch_size=batch, l1=l1, seed=epsilon_partition_seed(seed, i))
                     for i in range(partitions)], np.float64)


EPSILON_DATA = {"train_loader": "loss_std", "clean": "loss_std_clean"}  # theory.epsilon_data → metrics key


def epsilon_from_metrics(meta: dict, theory_settings: TheorySettings, where: str = "metrics.json") -> tuple[float, str]:
    """ε from the train rule's metrics: over the training loader (augmented where the task augments,
    the official ``cal_loss``) or on clean data, as ``theory.epsilon_data`` says; or the override."""
    if theory_settings.epsilon is not None:
        return check_epsilon(theory_settings.epsilon, "config theory.epsilon"), "config theory.epsilon"
    choice = theory_settings.epsilon_data
    if choice not in EPSILON_DATA:
        raise PrunelimitError(f"theory.epsilon_data must be one of {sorted(EPSILON_DATA)}, got {choice!r}")
    key = EPSILON_DATA[choice]
    if key not in meta:
        raise PrunelimitError(f"{where} has no {key!r} (written by an older train rule?); retrain the task")
    source = f"per-batch training-loss std over the {choice.replace('_', ' ')} ({where}: {key})"
    return check_epsilon(meta[key], source), source
