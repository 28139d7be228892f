"""Global magnitude pruning: masks, the one-shot sweep, the actual threshold, iterative pruning.

Conventions (PAPER.md): ``sparsity`` is the fraction of prunable weights *removed*, ``density``
the fraction kept. The prunable weights are :func:`prunable_parameters` (every conv and linear
weight, first and last layer included; never biases or BatchNorm), D of them in all.

One-shot global magnitude pruning at sparsity s keeps the ``round((1 − s)·D)`` weights of largest
|w| across all layers and zeroes the rest, with no retraining [code: ``get_sparse_model`` of
QiaozheZhang/Global-One-shot-Pruning, ``utils.py``]. The official code thresholds at the k-th
smallest |w| (``ceil(s·D)`` removed, ties at the threshold all kept); here the count is exact and
ties are broken deterministically: among equal |w|, the weight earlier in the flat parameter
order (module order, row-major) is kept. All masks of a model come from one stable sort.
"""

from __future__ import annotations

import contextlib
import logging
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn

from .data import TensorData
from .io import PrunelimitError
from .models import prunable_parameters
from .train import Masks, TrainConfig, apply_masks, evaluate, train

log = logging.getLogger("prunelimit")


def derived_seed(seed: int, stream: str) -> int:
    """An independent seed for the random ``stream`` (e.g. "smart_ratio_masks") of run ``seed``.

    Needed because ``torch.Generator().manual_seed(k)`` replays the global stream that
    ``build_model(seed=k)`` initialised the weights from: masks or scores drawn with the same k
    would be correlated with the signs of the initial weights.
    """
    entropy = [int(seed), zlib.crc32(stream.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    s = float(sparsity)
    if not (0.0 <= s <= 1.0) or math.isnan(s):
        raise PrunelimitError(f"{what} must lie in [0, 1] (fraction of weights removed), got {sparsity!r}")
    return s


def keep_count(n: int, sparsity: float) -> int:
    """Weights kept at ``sparsity`` out of ``n``: round((1 − s)·n), half-way cases rounded up."""
    return int(math.floor((1.0 - check_sparsity(sparsity)) * n + 0.5))


# ---------------------------------------------------------------------------------------------
# One sort, every mask
# ---------------------------------------------------------------------------------------------


@dataclass
class MagnitudeRanking:
    """The prunable weights of a model ranked once by decreasing |w|.

    ``order[i]`` is the flat index (over the concatenated prunable weights) of the i-th largest
    |w|; the mask at sparsity s keeps ``order[:keep_count(D, s)]``.
    """

    names: list[str]
    shapes: list[torch.Size]
    order: torch.Tensor  # (D,) int64 flat indices, largest |w| first, ties by lower index

    @classmethod
    def of(cls, model: nn.Module, alive: Masks | None = None) -> "MagnitudeRanking":
        """Rank ``model``'s prunable weights; weights outside ``alive`` (if given) rank last."""
        params = prunable_parameters(model)
        if not params:
            raise PrunelimitError(f"model {type(model).__name__} has no prunable (conv or linear) weights")
        with torch.no_grad():
            mags = torch.cat([p.detach().abs().reshape(-1).double() for _, p in params])
            if alive is not None:
                flat_alive = torch.cat([alive[n].reshape(-1).to(mags.device).bool() for n, _ in params])
                mags = torch.where(flat_alive, mags, torch.full_like(mags, -1.0))
        if not torch.isfinite(mags).all():
            raise PrunelimitError("model has non-finite prunable weights; cannot rank them by magnitude")
        # stable descending sort: equal |w| keep their flat order, so the lower index wins
        order = torch.sort(mags, descending=True, stable=True).indices
        return cls([n for n, _ in params], [p.shape for _, p in params], order)

    @property
    def size(self) -> int:
        return int(self.order.numel())

    def flat_keep(self, sparsity: float) -> torch.Tensor:
        """Boolean (D,) vector of the weights kept at ``sparsity``."""
        keep = torch.zeros(self.size, dtype=torch.bool, device=self.order.device)
        keep[self.order[:keep_count(self.size, sparsity)]] = True
        return keep

    def masks(self, sparsity: float) -> Masks:
        """name → 0/1 float mask at ``sparsity`` (exactly ``keep_count(D, sparsity)`` ones)."""
        return unflatten(self.flat_keep(sparsity).float(), self.names, self.shapes)


def unflatten(flat: torch.Tensor, names: Sequence[str], shapes: Sequence[torch.Size]) -> Masks:
    out, i = {}, 0
    for name, shape in zip(names, shapes):
        n = math.prod(shape)
        out[name] = flat[i:i + n].reshape(shape).clone()
        i += n
    return out


def magnitude_masks(model: nn.Module, sparsity: float, alive: Masks | None = None) -> Masks:
    """Global magnitude masks of ``model`` at ``sparsity`` (optionally only among ``alive`` weights)."""
    return MagnitudeRanking.of(model, alive).masks(sparsity)


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
        self.ranking = MagnitudeRanking.of(model)
        with torch.no_grad():
            self.original = torch.cat([p.detach().reshape(-1).clone() for p in self.params])

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
        flat[self.ranking.order[keep_count(self.ranking.size, sparsity):]] = 0.0
        self._write(flat)
        try:
            yield self.model
        finally:
            self._write(self.original)


# ---------------------------------------------------------------------------------------------
# One-shot sweep and the actual threshold
# ---------------------------------------------------------------------------------------------


def sweep_grid(points: int) -> np.ndarray:
    if int(points) < 2:
        raise PrunelimitError(f"prune.sweep_points must be at least 2, got {points}")
    return np.round(np.linspace(0.0, 1.0, int(points)), 12)


def one_shot_sweep(model: nn.Module, data: TensorData, sparsities: Sequence[float], *, train_metrics: bool = True,
                   pruner: InPlacePruner | None = None, progress: bool = False) -> list[dict]:
    """Test (and train) loss and accuracy of ``model`` magnitude-pruned at each sparsity, in place.

    Rows: sparsity, density, kept (count), test_loss, test_acc, train_loss, train_acc. The model
    comes back unchanged.
    """
    from tqdm import tqdm

    pruner = pruner or InPlacePruner(model)
    rows = []
    for s in tqdm(list(sparsities), desc="sweep", disable=not progress, leave=False):
        s = check_sparsity(s)
        kept = keep_count(pruner.ranking.size, s)
        with pruner.pruned(s) as m:
            test_loss, test_acc = evaluate(m, data.x_test, data.y_test)
            train_loss, train_acc = evaluate(m, data.x_train, data.y_train) if train_metrics else (math.nan, math.nan)
        rows.append({"sparsity": s, "density": kept / pruner.ranking.size, "kept": kept, "test_loss": test_loss,
                     "test_acc": test_acc, "train_loss": train_loss, "train_acc": train_acc})
    return rows


@dataclass
class Threshold:
    sparsity: float  # largest sparsity found meeting the criterion (a multiple of the resolution)
    bracket: tuple[float, float]  # (last passing, first failing) sparsity at the end
    evaluations: int  # accuracy evaluations spent by the bisection (the sweep's are not counted)
    history: list[tuple[float, float]]  # (sparsity, test accuracy) of every bisection evaluation


def bracket_from_sweep(sparsities: Sequence[float], passes: Sequence[bool]) -> tuple[float, float | None]:
    """(last sparsity of the leading run of passes, first failing sparsity or None if all pass)."""
    s = np.asarray(sparsities, dtype=np.float64)
    ok = np.asarray(passes, dtype=bool)
    if s.size == 0 or np.any(np.diff(s) <= 0):
        raise PrunelimitError("sweep sparsities must be non-empty and strictly increasing")
    if not ok[0]:
        raise PrunelimitError(f"the sweep's first point (sparsity {s[0]:g}) already fails the accuracy criterion; "
                              "start the grid at 0 with a non-negative tolerance")
    failing = np.flatnonzero(~ok)
    if failing.size == 0:
        return float(s[-1]), None
    first_fail = int(failing[0])
    return float(s[first_fail - 1]), float(s[first_fail])


def bisect_threshold(passes_at: Callable[[float], tuple[bool, float]], lo: float, hi: float, resolution: float,
                     max_evaluations: int = 15) -> Threshold:
    """Largest sparsity in [lo, hi) that passes, by bisection on the grid of multiples of ``resolution``.

    Assumes ``lo`` passes and ``hi`` fails, and **monotonicity**: that accuracy after one-shot
    magnitude pruning does not recover once it has dropped below the criterion inside the bracket
    (the paper's sharp phase transition). Without it, bisection returns *a* pass→fail transition
    within the bracket (not necessarily the first). ``passes_at(s)`` returns (passes, accuracy).
    """
    if not 0 < resolution <= 0.1:
        raise PrunelimitError(f"prune.resolution must lie in (0, 0.1], got {resolution}")
    lo_i = int(math.floor(lo / resolution + 1e-9))  # on the grid, at or below lo (still passes by monotonicity)
    hi_i = int(math.ceil(hi / resolution - 1e-9))  # on the grid, at or above hi (still fails)
    needed = max(0, math.ceil(math.log2(max(hi_i - lo_i, 1))))
    if needed > max_evaluations:
        raise PrunelimitError(f"bisection from bracket [{lo:g}, {hi:g}] to resolution {resolution:g} needs {needed} "
                              f"evaluations (> {max_evaluations}); use more prune.sweep_points or a coarser resolution")
    history = []
    while hi_i - lo_i > 1:
        mid = (lo_i + hi_i) // 2
        ok, acc = passes_at(mid * resolution)
        history.append((mid * resolution, acc))
        if ok:
            lo_i = mid
        else:
            hi_i = mid
    lo_s, hi_s = round(lo_i * resolution, 12), round(hi_i * resolution, 12)
    return Threshold(sparsity=lo_s, bracket=(lo_s, hi_s), evaluations=len(history), history=history)


def actual_threshold(model: nn.Module, data: TensorData, curve: list[dict], *, tolerance: float = 0.0,
                     resolution: float = 0.001, pruner: InPlacePruner | None = None) -> dict:
    """The actual pruning threshold [code: ``cal_rate.py``]: the largest sparsity whose test accuracy
    is still ≥ dense accuracy − ``tolerance``, bracketed by the sweep ``curve`` and bisected.

    The dense accuracy is the curve's sparsity-0 accuracy (the unpruned model).
    """
    if not curve or curve[0]["sparsity"] != 0.0:
        raise PrunelimitError("the sweep must start at sparsity 0 (the dense model) to define the actual threshold")
    if tolerance < 0:
        raise PrunelimitError(f"prune.tolerance must be ≥ 0, got {tolerance}")
    dense_acc = curve[0]["test_acc"]
    floor_acc = dense_acc - tolerance
    passes = [row["test_acc"] >= floor_acc - 1e-12 for row in curve]
    lo, hi = bracket_from_sweep([r["sparsity"] for r in curve], passes)
    pruner = pruner or InPlacePruner(model)

    def passes_at(s: float) -> tuple[bool, float]:
        with pruner.pruned(s) as m:
            acc = evaluate(m, data.x_test, data.y_test)[1]
        return acc >= floor_acc - 1e-12, acc

    if hi is None:  # every sweep point passes, sparsity 1 included
        found = Threshold(sparsity=lo, bracket=(lo, lo), evaluations=0, history=[])
    else:
        found = bisect_threshold(passes_at, lo, hi, resolution)
    return {
        "actual_sparsity": found.sparsity, "actual_density": 1.0 - found.sparsity,
        "dense_test_acc": dense_acc, "tolerance": tolerance, "criterion": "test_acc >= dense_test_acc - tolerance",
        "resolution": resolution, "sweep_bracket": [lo, hi], "final_bracket": list(found.bracket),
        "evaluations": found.evaluations, "bisection": [{"sparsity": s, "test_acc": a} for s, a in found.history],
        "assumption": "accuracy after one-shot magnitude pruning falls monotonically through the criterion inside "
                      "the sweep's first failing interval (bisection finds a pass-to-fail transition there)",
        "source": "[code] official cal_rate.py criterion (first sparsity with acc < dense acc - tol), bisected [ours]",
    }


def sweep_and_threshold(model: nn.Module, data: TensorData, *, points: int, tolerance: float, resolution: float,
                        train_metrics: bool = True, progress: bool = False) -> tuple[list[dict], dict]:
    """The sweep on ``points`` evenly spaced sparsities in [0, 1] and the bisected actual threshold.

    ``train_metrics=False`` skips the training-set evaluation at each point (the criterion uses
    test accuracy only)."""
    pruner = InPlacePruner(model)
    curve = one_shot_sweep(model, data, sweep_grid(points), train_metrics=train_metrics, pruner=pruner,
                           progress=progress)
    actual = actual_threshold(model, data, curve, tolerance=tolerance, resolution=resolution, pruner=pruner)
    actual["sweep_points"] = int(points)
    actual["n_prunable"] = pruner.ranking.size
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
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for _, p in params])
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
    """The retraining recipe of iterative pruning: the task's recipe (lr, batch, schedule, L1, seed)
    for ``epochs`` epochs with no warm-up (the model is already trained) and ``weight_decay``."""
    cfg = TrainConfig.from_dict(task_train)
    return replace(cfg, epochs=int(epochs), warmup_epochs=0, milestones=[], weight_decay=float(weight_decay))


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------

CURVE_COLUMNS = ["sparsity", "density", "kept", "test_loss", "test_acc", "train_loss", "train_acc"]


def save_rows_csv(rows: list[dict], path, columns: Sequence[str] | None = None) -> None:
    """Write ``rows`` (dicts) as a CSV atomically; ``columns`` fixes their order (and must exist)."""
    import pandas as pd

    from .io import atomic_path

    df = pd.DataFrame(rows)
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise PrunelimitError(f"rows for {path} lack columns {missing}")
        df = df[list(columns) + [c for c in df.columns if c not in columns]]
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
