"""Paper Fig. 3: test loss and accuracy of one-shot magnitude pruning against sparsity, with the
predicted threshold, the kinematic bounds and the actual threshold marked."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, NullFormatter

from ..io import PrunelimitError, load_csv, load_json
from ..tables import by_task
from .style import (
    COLORS,
    DENSITY,
    SPARSITY,
    TASK_COLUMNS,
    apply_style,
    drawn_x,
    figure_legend,
    save_figure,
    task_panels,
)


def _mark_thresholds(ax: plt.Axes, prediction: Mapping, actual: Mapping | None) -> dict:
    """Vertical lines at the predicted threshold, the kinematic bounds (shaded between) and the
    actual threshold, in sparsity units. Returns their drawn x positions."""
    lo, up = float(prediction["lower_sparsity"]), float(prediction["upper_sparsity"])
    ax.axvspan(lo, up, color=COLORS["bounds"], alpha=0.12, lw=0)
    lower = ax.axvline(lo, color=COLORS["bounds"], ls="--", lw=1.0, label="kinematic bounds")
    upper = ax.axvline(up, color=COLORS["bounds"], ls="--", lw=1.0)
    pred = ax.axvline(float(prediction["predicted_sparsity"]), color=COLORS["predicted"], lw=1.4,
                      label="predicted threshold s* (theory)")
    drawn = {"predicted_sparsity": drawn_x(pred), "lower_sparsity": drawn_x(lower), "upper_sparsity": drawn_x(upper)}
    if actual is not None:
        act = ax.axvline(float(actual["actual_sparsity"]), color=COLORS["actual"], ls=":", lw=1.4,
                         label="actual threshold (official criterion)")
        drawn["actual_sparsity"] = drawn_x(act)
    return drawn


def _zoom_sparsity(ax: plt.Axes, values: Iterable[float]) -> None:
    """Sparsity x axis from 0 to 1, or from just below the lowest threshold mark when every mark is
    high (the phase transition of L1-trained nets sits near 1; a 0…1 axis would hide it). A little
    room right of 1 keeps a mark at s = 1 (a prediction of "prune everything") off the frame."""
    low = min(values)
    left = 0.0 if low < 0.6 else max(0.0, math.floor((1 - 1.6 * (1 - low)) * 20) / 20)
    ax.set_xlim(left, 1.0 + 0.015 * (1.0 - left))


def _decades(values: Iterable[float]) -> bool:
    """Whether the positive finite ``values`` span a decade or more (then a log axis is the readable one)."""
    v = np.asarray(list(values), float)
    v = v[np.isfinite(v) & (v > 0)]
    return bool(v.size and v.max() / v.min() >= 10)


def _log_y_plain(ax: plt.Axes) -> None:
    """Log y axis labelled 1, 10, 100 (not 10⁰, 10¹), minor ticks unlabelled."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _other_seeds(ax_acc: plt.Axes, runs: list[tuple[pd.DataFrame, Mapping, Mapping]]) -> list:
    """The claim test's other training seeds, faint: accuracy curve, predicted and actual threshold."""
    handles = []
    for curve, pred, act in runs:
        df = curve.sort_values("sparsity")
        handles.append(ax_acc.plot(df["sparsity"], df["test_acc"], "-", lw=0.7, alpha=0.35, color=COLORS["accuracy"],
                                   label="other training seeds (faint)")[0])
        ax_acc.axvline(float(pred["predicted_sparsity"]), color=COLORS["predicted"], lw=0.8, alpha=0.35)
        ax_acc.axvline(float(act["actual_sparsity"]), color=COLORS["actual"], ls=":", lw=0.8, alpha=0.5)
    return handles[:1]


def _spread(values: list[float]) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if v.size > 1 else f"{v[0]:.3f}"


def plot_pruning_curves(curves: Mapping[str, pd.DataFrame], predictions: Mapping[str, Mapping],
                        actuals: Mapping[str, Mapping], paths: Iterable[str | os.PathLike],
                        other_seeds: Mapping[str, list[tuple[pd.DataFrame, Mapping, Mapping]]] | None = None) -> dict:
    """Paper Fig. 3: normalised test loss and test accuracy of one-shot magnitude pruning vs sparsity.

    Per task two panels sharing the sparsity axis: test loss divided by the unpruned model's (log
    scale) and test accuracy, both from ``curve.csv`` (the 0.1% grid). Vertical lines: predicted
    threshold (prediction.json), kinematic bounds (shaded between) and the actual threshold by the
    official criterion (actual.json); the unpruned accuracy is a horizontal line. ``other_seeds``:
    per task, (curve, prediction, actual) of the claim test's other training seeds, drawn faint on
    the accuracy panel; the title then gives mean ± sd over every seed. Returns per task the drawn
    thresholds and the unpruned loss/accuracy.
    """
    apply_style()
    fig, panels = task_panels(list(curves), rows_per_task=2, panel=(3.4, 2.3), share_x=True)
    drawn, handles = {}, []
    # one y scale for every loss panel: log when some task's normalised loss spans a decade
    log_loss = any(_decades(c["test_loss"] / c.loc[c["sparsity"] == 0, "test_loss"].iloc[0])
                   for c in curves.values() if (c["sparsity"] == 0).any())
    for col, (task, (ax_loss, ax_acc)) in enumerate(panels.items()):
        df = curves[task].sort_values("sparsity")
        if not (df["sparsity"] == 0).any():
            raise PrunelimitError(f"pruning curve of {task} lacks the unpruned point (sparsity 0)")
        pred, act = predictions[task], actuals[task]
        unpruned_loss = float(df.loc[df["sparsity"] == 0, "test_loss"].iloc[0])
        loss_line, = ax_loss.plot(df["sparsity"], df["test_loss"] / unpruned_loss, "-", lw=1.2,
                                  color=COLORS["curve"], label="test loss / unpruned test loss")
        if log_loss:
            _log_y_plain(ax_loss)
        acc_line, = ax_acc.plot(df["sparsity"], df["test_acc"], "-", lw=1.0, color=COLORS["accuracy"],
                                label="test accuracy (one-shot magnitude pruning, 0.1% grid)")
        handles += [loss_line, acc_line]
        handles.append(ax_acc.axhline(float(act["dense_test_acc"]), color=COLORS["dense"], lw=0.8, ls="-.",
                                      label="unpruned test accuracy"))
        for ax in (ax_loss, ax_acc):
            marks = _mark_thresholds(ax, pred, act)
        handles += [ln for ln in ax_acc.get_lines() if ln.get_label() in
                    ("predicted threshold s* (theory)", "kinematic bounds", "actual threshold (official criterion)")]
        others = list((other_seeds or {}).get(task, []))
        handles += _other_seeds(ax_acc, others)
        # the numbers in the title too: a line on the axis edge (s* = 1) or two close lines are easy to miss
        if others:
            preds = [float(pred["predicted_sparsity"])] + [float(p["predicted_sparsity"]) for _, p, _ in others]
            acts = [float(act["actual_sparsity"])] + [float(a["actual_sparsity"]) for _, _, a in others]
            ax_loss.set_title(f"{task} ({len(preds)} seeds)\npredicted s* = {_spread(preds)}, "
                              f"actual = {_spread(acts)}", fontsize="small")
        else:
            ax_loss.set_title(f"{task}\npredicted s* = {marks['predicted_sparsity']:.3f}, "
                              f"actual = {marks['actual_sparsity']:.3f}")
        _zoom_sparsity(ax_acc, [marks["lower_sparsity"], marks["actual_sparsity"]])
        top = ax_loss.secondary_xaxis("top", functions=(lambda s: 1 - s, lambda d: 1 - d))
        top.set_xlabel(DENSITY, fontsize="small")
        top.tick_params(labelsize="small")
        ax_acc.set_ylim(-0.02, 1.02)
        ax_acc.set_xlabel(SPARSITY)
        if col % TASK_COLUMNS == 0:
            ax_loss.set_ylabel("test loss ÷ unpruned" + ("\n(log scale)" if log_loss else ""))
            ax_acc.set_ylabel("test accuracy")
        drawn[task] = {**marks, "unpruned_test_loss": unpruned_loss,
                       "max_normalised_loss": float(np.max(loss_line.get_ydata())),
                       "unpruned_test_acc": float(acc_line.get_ydata()[0])}
    figure_legend(fig, handles)
    save_figure(fig, *paths)
    return drawn


def draw_pruning_curves(inputs, params, outputs) -> dict:
    """Rule ``fig_pruning_curves``: Fig. 3 from the rule's files (``inputs.curve``, ``.prediction``,
    ``.actual`` per task; ``.seed_*`` per claim-test (task, seed) of ``params.claim``)."""
    tasks = params.tasks
    # the claim test's other training seeds (each task's own seed is the main study's files above)
    other_seeds = {}
    for task, seed, curve, pred, act in zip(params.claim["tasks"], params.claim["seeds"], inputs.seed_curve,
                                            inputs.seed_prediction, inputs.seed_actual, strict=True):
        if seed != params.own_seed[task]:
            other_seeds.setdefault(task, []).append((load_csv(curve), load_json(pred), load_json(act)))
    return plot_pruning_curves(by_task(tasks, inputs.curve, load_csv), by_task(tasks, inputs.prediction, load_json),
                               by_task(tasks, inputs.actual, load_json), outputs, other_seeds=other_seeds)
