"""Global magnitude pruning: masks, the one-shot sweep, the actual threshold, iterative pruning.

Conventions (docs/method.md): ``sparsity`` is the fraction of prunable weights *removed*, ``density``
the fraction kept. The prunable weights are :func:`prunable_parameters` (every conv and linear
weight, first and last layer included; never biases or BatchNorm), D of them in all.

One-shot global magnitude pruning at sparsity s keeps the ``round((1 − s)·D)`` weights of largest
|w| across all layers and zeroes the rest, with no retraining [code: ``get_sparse_model`` of
QiaozheZhang/Global-One-shot-Pruning, ``utils.py``]. The official code thresholds at the k-th
smallest |w| (``ceil(s·D)`` removed, ties at the threshold all kept); here the count is exact and
ties are broken deterministically: among equal |w|, the weight earlier in the flat parameter
order (module order, row-major) is kept. All masks of a model come from one stable sort,
:class:`prunelimit.sparsity.MagnitudeRanking`, the one the theory's R(s) is computed from too.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .data import TensorData
from .io import PrunelimitError, atomic_path
from .models import prunable_parameters, prunable_vector
from .seeds import derived_seed  # noqa: F401  (re-exported: masks and scores draw from derived streams)
from .settings import ThresholdSettings
from .sparsity import MagnitudeRanking, check_sparsity, keep_count
from .train import Masks, TrainConfig, apply_masks, evaluate, train

log = logging.getLogger("prunelimit")


# ---------------------------------------------------------------------------------------------
# One sort, every mask
# ---------------------------------------------------------------------------------------------


def magnitude_ranking(model: nn.Module, alive: Masks | None = None) -> MagnitudeRanking:
    """``model``'s prunable weights ranked by decreasing |w|; weights outside ``alive`` (if given) rank last."""
    flat_alive = None
    if alive is not None:
        flat_alive = torch.cat([alive[n].reshape(-1).bool().cpu() for n, _ in prunable_parameters(model)]).numpy()
    return MagnitudeRanking.of(prunable_vector(model).double().cpu().numpy(), flat_alive)


def unflatten(flat: torch.Tensor, names: Sequence[str], shapes: Sequence[torch.Size]) -> Masks:
    out, i = {}, 0
    for name, shape in zip(names, shapes):
        n = math.prod(shape)
        out[name] = flat[i:i + n].reshape(shape).clone()
        i += n
    return out


def magnitude_masks(model: nn.Module, sparsity: float, alive: Masks | None = None) -> Masks:
    """Global magnitude masks of ``model`` at ``sparsity`` (optionally only among ``alive`` weights):
    name → 0/1 float mask, exactly ``keep_count(D, sparsity)`` ones."""
    params = prunable_parameters(model)
    keep = torch.from_numpy(magnitude_ranking(model, alive).keep_mask(sparsity)).float()
    return unflatten(keep.to(params[0][1].device), [n for n, _ in params], [p.shape for _, p in params])


def count_kept(masks: Masks) -> int:
    return int(sum(m.sum().item() for m in masks.values()))


def masked_weights_zero(model: nn.Module, masks: Masks) -> bool:
    """Whether every weight the masks remove is exactly zero in ``model`` (training kept them pruned)."""
    return all(bool((p.detach()[masks[n] == 0] == 0).all()) for n, p in prunable_parameters(model))


def apply_pruning(model: nn.Module, sparsity: float) -> Masks:
    """Prune ``model`` in place at ``sparsity`` (one-shot global magnitude) and return its masks."""
    masks = magnitude_masks(model, sparsity)
    apply_masks(model, masks)
    return masks


class InPlacePruner:
    """Evaluate a model at many sparsities without copying it: zero weights, measure, restore.

    The original prunable weights are kept once as a flat vector; :meth:`pruned` writes the
    weights of a given sparsity (the ranking's first ``keep`` indices, the rest zero) into the
    model and restores the originals on exit.
    """

    def __init__(self, model: nn.Module):
        self.model = model
        self.params = [p for _, p in prunable_parameters(model)]
        self.ranking = magnitude_ranking(model)
        self.original = prunable_vector(model)
        self.order = torch.from_numpy(self.ranking.order).to(self.original.device)

    @torch.no_grad()
    def _write(self, flat: torch.Tensor) -> None:
        i = 0
        for p in self.params:
            n = p.numel()
            p.copy_(flat[i:i + n].view_as(p))
            i += n

    @contextlib.contextmanager
    def pruned(self, sparsity: float) -> Iterator[nn.Module]:
        flat = self.original.clone()
        flat[self.order[self.ranking.kept(sparsity):]] = 0.0
        self._write(flat)
        try:
            yield self.model
        finally:
            self._write(self.original)


# ---------------------------------------------------------------------------------------------
# One-shot sweep and the actual threshold
# ---------------------------------------------------------------------------------------------


OFFICIAL_GRID = 1000  # sparsities i/1000, i = 0 … 999 [code: ``sparse_epoch`` = 1000 in cal_rate.py]
TOLERANCES = (0.0, 0.005, 0.01, 0.02)  # accuracy drops reported beside the official criterion [ours]


def threshold_grid(steps: int = OFFICIAL_GRID) -> np.ndarray:
    """Sparsities i/steps for i = 0 … steps − 1: the official 0.1% grid for ``steps`` = 1000."""
    if int(steps) < 2:
        raise PrunelimitError(f"prune.grid must be at least 2 sparsity steps, got {steps}")
    return np.arange(int(steps), dtype=np.float64) / int(steps)


def one_shot_sweep(model: nn.Module, data: TensorData, sparsities: Sequence[float], *, train_every: int = 0,
                   pruner: InPlacePruner | None = None, progress: bool = False) -> list[dict]:
    """Test (and train) loss and accuracy of ``model`` magnitude-pruned at each sparsity, in place.

    Rows: sparsity, density, kept (count), test_loss, test_acc, train_loss, train_acc. Train-set
    metrics cost several test passes each, so they are taken at every ``train_every``-th point only
    (0: never) and are NaN elsewhere; the thresholds use test accuracy alone. The model comes back
    unchanged.
    """
    pruner = pruner or InPlacePruner(model)
    rows = []
    for i, s in enumerate(tqdm(list(sparsities), desc="sweep", disable=not progress, leave=False)):
        s = check_sparsity(s)
        kept = keep_count(pruner.ranking.dim, s)
        with pruner.pruned(s) as m:
            test_loss, test_acc = evaluate(m, data.x_test, data.y_test)
            with_train = train_every > 0 and i % train_every == 0
            train_loss, train_acc = evaluate(m, data.x_train, data.y_train) if with_train else (math.nan, math.nan)
        rows.append({"sparsity": s, "density": kept / pruner.ranking.dim, "kept": kept, "test_loss": test_loss,
                     "test_acc": test_acc, "train_loss": train_loss, "train_acc": train_acc})
    return rows


def official_threshold(sparsities: Sequence[float], accuracies: Sequence[float]) -> float | None:
    """The official actual threshold [code ``gaussian_width.py``]: scanning down from the largest
    sparsity of the grid, the first whose test accuracy is strictly above the unpruned model's
    (the grid's first point, sparsity 0). ``None`` when no pruned model beats the unpruned one.

    No monotonicity is assumed: accuracy against sparsity is not monotone at 0.1% steps.
    """
    s, acc = _checked_curve(sparsities, accuracies)
    above = np.flatnonzero(acc[1:] > acc[0]) + 1
    return float(s[above[-1]]) if above.size else None


def tolerance_threshold(sparsities: Sequence[float], accuracies: Sequence[float], tolerance: float) -> float:
    """The largest sparsity of the grid whose test accuracy is ≥ the unpruned accuracy − ``tolerance``
    [ours: the official scan with a tolerance]; the unpruned point always qualifies."""
    if not tolerance >= 0:
        raise PrunelimitError(f"accuracy tolerance must be ≥ 0, got {tolerance}")
    s, acc = _checked_curve(sparsities, accuracies)
    passing = np.flatnonzero(acc >= acc[0] - tolerance - 1e-12)  # slack for 0.95 - 0.01 style round-off
    return float(s[passing[-1]])


def _checked_curve(sparsities: Sequence[float], accuracies: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    s, acc = np.asarray(sparsities, np.float64), np.asarray(accuracies, np.float64)
    if s.ndim != 1 or s.shape != acc.shape or s.size < 2 or s[0] != 0.0 or np.any(np.diff(s) <= 0):
        raise PrunelimitError("a threshold scan needs a curve from sparsity 0 (the unpruned model) on a strictly "
                              "increasing grid, with one accuracy per sparsity")
    if not np.all(np.isfinite(acc)):
        raise PrunelimitError("the pruning curve has non-finite test accuracies")
    return s, acc


def thresholds_from_curve(curve: Sequence[dict], tolerances: Sequence[float] = TOLERANCES) -> dict:
    """Every actual-threshold criterion of one sweep, and the one the verdicts use.

    ``actual_sparsity`` is the official criterion; when no pruned model beats the unpruned one it
    is undefined, and the tolerance-0 threshold (accuracy ≥ unpruned) stands in, as
    ``actual_criterion`` records.
    """
    sparsities = [r["sparsity"] for r in curve]
    accuracies = [r["test_acc"] for r in curve]
    official = official_threshold(sparsities, accuracies)
    by_tolerance = {f"{t:g}": tolerance_threshold(sparsities, accuracies, float(t)) for t in tolerances}
    zero = tolerance_threshold(sparsities, accuracies, 0.0)
    return {
        "actual_sparsity": official if official is not None else zero,
        "actual_density": 1.0 - (official if official is not None else zero),
        "actual_criterion": "official" if official is not None else "tolerance 0 (official undefined)",
        "official_sparsity": official,
        "tolerance_sparsity": by_tolerance,
        "dense_test_acc": float(accuracies[0]),
        "grid_points": len(sparsities),
        "grid_step": float(sparsities[1] - sparsities[0]),
        "criteria": {
            "official": "[code gaussian_width.py] scanning down from the largest grid sparsity, the first whose "
                        "test accuracy is strictly above the unpruned model's",
            "tolerance": "[ours] the largest grid sparsity whose test accuracy is >= unpruned accuracy - tolerance",
        },
    }


def sweep_and_threshold(model: nn.Module, data: TensorData, settings: ThresholdSettings, *, train_every: int = 0,
                        progress: bool = False) -> tuple[list[dict], dict]:
    """The sweep over the ``settings.grid``-point sparsity grid (evaluated in place) and its actual thresholds
    (the official criterion, and ``settings.tolerances``)."""
    pruner = InPlacePruner(model)
    curve = one_shot_sweep(model, data, threshold_grid(settings.grid), train_every=train_every, pruner=pruner,
                           progress=progress)
    actual = thresholds_from_curve(curve, settings.tolerances)
    actual["n_prunable"] = pruner.ranking.dim
    return curve, actual


# ---------------------------------------------------------------------------------------------
# Iterative pruning with the theoretical threshold recomputed each round
# ---------------------------------------------------------------------------------------------

Predictor = Callable[[nn.Module], dict]


def iterative_prune(model: nn.Module, data: TensorData, predict: Predictor, *, rounds: int, retrain: TrainConfig,
                    progress: bool = False) -> list[dict]:
    """Iterative pruning as in the paper's iteration figure: predict, prune, retrain, repeat.

    Round 0 is the trained model as given: its theoretical threshold s₀ = ``predict(model)``.
    Round r ≥ 1 prunes the current model (global magnitude, only among surviving weights) to the
    threshold predicted for it in round r − 1, retrains it ``retrain.epochs`` epochs under that
    mask (the masked :func:`train` loop, with the recipe's L1 term and ``retrain.weight_decay``
    as the l2 arm's regulariser), then predicts the threshold s_r of the retrained pruned model.
    Because the pruned coordinates are already zero, R(s) = 0 for s up to the current sparsity,
    so s_r ≥ the current sparsity: the recomputed threshold rises toward a final ratio. A round
    never lowers the sparsity (it prunes to max(s_{r−1}, current sparsity)).

    ``predict(model)`` returns a dict with at least ``predicted_sparsity`` (the theory's keys
    ``lower_sparsity``, ``upper_sparsity``, ``epsilon`` are copied when present).
    Rows: round, sparsity (of the model after the round's pruning), theoretical_sparsity (the
    threshold predicted for the model after the round), lower/upper bounds, test accuracy after
    pruning (before retraining) and after retraining, train loss, mean |w| and ‖w‖₂ of the weights.
    """
    if rounds < 1:
        raise PrunelimitError(f"iterative.rounds must be at least 1, got {rounds}")
    params = prunable_parameters(model)
    total = sum(p.numel() for _, p in params)
    masks: Masks = {n: torch.ones_like(p, dtype=torch.float32) for n, p in params}

    def describe(r: int, sparsity: float, pruned_acc: float) -> dict:
        pred = predict(model)
        if "predicted_sparsity" not in pred:
            raise PrunelimitError(f"theory prediction lacks 'predicted_sparsity' (keys: {sorted(pred)})")
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
        train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
        flat = prunable_vector(model)
        row = {"round": r, "sparsity": sparsity, "theoretical_sparsity": float(pred["predicted_sparsity"])}
        for key in ("lower_sparsity", "upper_sparsity", "epsilon"):
            if key in pred:
                row[key] = float(pred[key])
        row.update({"test_acc_pruned": pruned_acc, "test_acc": test_acc, "test_loss": test_loss,
                    "train_acc": train_acc, "train_loss": train_loss,
                    "weight_l2": float(flat.norm()), "weight_abs_mean": float(flat.abs().mean())})
        log.info("round %d: sparsity %.4f, test acc %.4f, theoretical threshold %.4f", r, sparsity, test_acc,
                 row["theoretical_sparsity"])
        return row

    rows = [describe(0, 0.0, evaluate(model, data.x_test, data.y_test)[1])]
    for r in range(1, rounds + 1):
        current = 1.0 - count_kept(masks) / total
        target = max(rows[-1]["theoretical_sparsity"], current)
        masks = magnitude_masks(model, target, alive=masks)
        apply_masks(model, masks)
        pruned_acc = evaluate(model, data.x_test, data.y_test)[1]
        train(model, data, replace(retrain, seed=retrain.seed + r), masks=masks, progress=progress,
              desc=f"iterative round {r}")
        rows.append(describe(r, 1.0 - count_kept(masks) / total, pruned_acc))
    return rows


def retrain_config(task_train: dict, *, epochs: int, weight_decay: float) -> TrainConfig:
    """The retraining recipe of iterative pruning: the trained model's recipe (``metrics.json``'s
    ``train``: lr, batch, schedule, the λ it was trained with, seed) for ``epochs`` epochs with no
    warm-up (the model is already trained) and ``weight_decay``. λ stays the model's own: a shrinkage
    target would be re-spread over the few retraining epochs."""
    cfg = TrainConfig.from_dict(task_train)
    return replace(cfg, epochs=int(epochs), warmup_epochs=0, milestones=[], weight_decay=float(weight_decay),
                   l1_shrinkage=None, start_epoch=0, max_steps=None)


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------

CURVE_COLUMNS = ["sparsity", "density", "kept", "test_loss", "test_acc", "train_loss", "train_acc"]


def save_rows_csv(rows: list[dict], path, columns: Sequence[str] | None = None) -> None:
    """Write ``rows`` (dicts) as a CSV atomically; ``columns`` fixes their order (and must exist)."""
    import pandas as pd  # here, not at the top: most jobs that import this module write no CSV

    df = pd.DataFrame(rows)
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise PrunelimitError(f"rows for {path} lack columns {missing}")
        df = df[list(columns) + [c for c in df.columns if c not in columns]]
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
