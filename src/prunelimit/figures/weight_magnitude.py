"""Figures of weight magnitude: paper Figs. 2 and 8 (the weight distribution, log |w|, and the
threshold against a weight scale c) and Fig. 7 (the prediction curve against the actual curves of
the weights scaled by c). Both mark the scaled models whose accuracy collapsed before pruning."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D

from ..io import load_json
from ..sparsity import MagnitudeRanking
from ..statedict import prunable_weights
from ..tables import by_task
from .style import (
    COLORS,
    SPARSITY,
    TASK_COLUMNS,
    apply_style,
    drawn_x,
    drawn_y,
    figure_legend,
    interesting_radius,
    save_figure,
    task_panels,
)


def load_prunable_weights(model_path: str | os.PathLike, metrics_path: str | os.PathLike) -> np.ndarray:
    """The trained model's prunable weights (conv and linear weights, the library's order), flat
    float64; read without torch (figure jobs have none), their count checked against the metrics."""
    return prunable_weights(model_path, load_json(metrics_path)["n_prunable"]).astype(np.float64)


def _collapsed_scales(rows: list[dict], drop: float = 0.1) -> dict[float, float]:
    """Scales whose scaled, unpruned model lost more than ``drop`` test accuracy against the first
    (unscaled) scale: scale → that accuracy. The actual threshold is measured against the scaled
    model's own unpruned accuracy, so for these it is not comparable with the others (it is drawn
    greyed and the accuracies are written in the panel, not hidden)."""
    accs = {float(r["scale"]): float(r["dense_test_acc"]) for r in rows if "dense_test_acc" in r}
    if not accs:
        return {}
    reference = accs[min(accs)]
    return {c: a for c, a in accs.items() if reference - a > drop}


def _note_collapsed(ax: plt.Axes, collapsed: dict[float, float]) -> None:
    """Say in the panel's title which scaled models lost their accuracy before any pruning."""
    if collapsed:
        listed = ", ".join(f"×{c:g} {a:.2f}" for c, a in collapsed.items())
        title = ax.get_title()
        ax.set_title((f"{title}\n" if title else "") + f"unpruned acc. of scaled model:\n{listed}",
                     fontsize="small")


def plot_weight_distribution(weights: Mapping[str, Mapping[str, np.ndarray]], predictions: Mapping[str, Mapping],
                             actuals: Mapping[str, Mapping], scalings: Mapping[str, Mapping],
                             paths: Iterable[str | os.PathLike], bins: int = 80) -> dict:
    """Paper Figs. 2 and 8: the weight distribution (log |w|) and the threshold vs weight magnitude.

    Per task, top: histogram of log₁₀|w| of the prunable weights of each trained variant
    (``weights[task]``: variant → flat weights; the L1 model the theory uses first), with the
    magnitude cut of global magnitude pruning at the predicted and the actual threshold. Bottom:
    predicted (kinematic bounds shaded) and actual threshold against the weight scale c
    (``magnitude_scaling.json``). Returns the drawn cuts and per-scale thresholds.
    """
    apply_style()
    fig, panels = task_panels(list(weights), rows_per_task=2, panel=(3.4, 2.4))
    drawn, handles = {}, []
    for col, (task, (ax_hist, ax_scale)) in enumerate(panels.items()):
        drawn[task] = {"zero_weights": {}}
        reference = None
        for i, (variant, w) in enumerate(weights[task].items()):
            a = np.abs(np.asarray(w, float))
            drawn[task]["zero_weights"][variant] = int(np.sum(a == 0))
            logs = np.log10(a[a > 0])
            handles.append(ax_hist.hist(logs, bins=bins, density=True, histtype="stepfilled" if i == 0 else "step",
                                        alpha=0.45 if i == 0 else 1.0, lw=1.2, color="C0" if i == 0 else "0.3",
                                        label=f"{variant} model")[2][0])
            reference = MagnitudeRanking.of(w) if reference is None else reference  # the cuts: the first variant's
        cut_at_prediction = reference.threshold_magnitude(predictions[task]["predicted_sparsity"])
        cut_pred = ax_hist.axvline(math.log10(max(cut_at_prediction, 1e-300)), color=COLORS["predicted"], lw=1.4,
                                   label="|w| cut at the predicted threshold")
        cut_act = ax_hist.axvline(math.log10(max(reference.threshold_magnitude(actuals[task]["actual_sparsity"]),
                                                 1e-300)),
                                  color=COLORS["actual"], ls=":", lw=1.4, label="|w| cut at the actual threshold")
        handles += [cut_pred, cut_act]
        ax_hist.set_xlabel("log₁₀ |w| (prunable weights)")
        sc = pd.DataFrame(scalings[task]["scales"]).sort_values("scale")
        ax_scale.fill_between(sc["scale"], sc["lower_sparsity"], sc["upper_sparsity"], color=COLORS["predicted"],
                              alpha=0.12, lw=0)
        pred, = ax_scale.plot(sc["scale"], sc["predicted_sparsity"], "o-", color=COLORS["predicted"], lw=1.4,
                              label="predicted threshold (kinematic bounds shaded)")
        handles.append(pred)
        drawn[task].update({"cut_predicted_log10": drawn_x(cut_pred), "cut_actual_log10": drawn_x(cut_act),
                            "scaled_predicted": np.asarray(pred.get_ydata(), float).tolist()})
        if "actual_sparsity" in sc:
            act, = ax_scale.plot(sc["scale"], sc["actual_sparsity"], "D--", mfc="none", ms=5, color=COLORS["actual"],
                                 lw=1.0, label="actual threshold")
            handles.append(act)
            drawn[task]["scaled_actual"] = np.asarray(act.get_ydata(), float).tolist()
            collapsed = _collapsed_scales(scalings[task]["scales"])
            if collapsed:
                bad = sc[sc["scale"].isin(list(collapsed))]
                handles += ax_scale.plot(bad["scale"], bad["actual_sparsity"], "X", ms=7, color="0.5", ls="",
                                         label="actual threshold, scaled model's unpruned accuracy collapsed")
                _note_collapsed(ax_scale, collapsed)
        ax_scale.set_xticks(sc["scale"])
        ax_scale.set_ylim(0, 1.02)
        ax_scale.set_xlabel("weight scale c (weights × c)")
        if col % TASK_COLUMNS == 0:
            ax_hist.set_ylabel("probability density")
            ax_scale.set_ylabel(SPARSITY)
    figure_legend(fig, handles, ncol=3)
    save_figure(fig, *paths)
    return drawn


def plot_magnitude_scaling(scalings: Mapping[str, Mapping], paths: Iterable[str | os.PathLike]) -> dict:
    """Paper Fig. 7: the prediction curve against the actual curves (c·R(s), s) for weights × c.

    ``scalings[task]`` is ``magnitude_scaling.json``. Per task: w²(R)/D (spectrum and ε of the
    unscaled model, as in the paper) and one magnitude-pruning curve per scale c; filled circles
    mark the crossings (predicted thresholds), hollow diamonds the actual thresholds of the scaled
    models. Returns per task {scale: (predicted, actual)} as drawn.
    """
    apply_style()
    fig, panels = task_panels(list(scalings), panel=(3.4, 2.9))
    drawn, handles = {}, []
    for col, (task, (ax,)) in enumerate(panels.items()):
        sc = scalings[task]
        r_grid, gw = np.asarray(sc["R_grid"], float), np.asarray(sc["gw2_over_D"], float)
        s_grid, r_of_s = np.asarray(sc["sparsity_grid"], float), np.asarray(sc["R_of_sparsity"], float)
        keep = r_of_s > 0
        handles += ax.plot(r_grid, gw, color="black", lw=1.6, label="prediction curve w²(R)/D")
        palette = sns.color_palette("viridis", len(sc["scales"]))
        collapsed = _collapsed_scales(sc["scales"])
        drawn[task], marks_r = {}, [r["R_at_prediction"] for r in sc["scales"]]
        for color, row in zip(palette, sc["scales"]):
            c = float(row["scale"])
            handles += ax.plot(c * r_of_s[keep], s_grid[keep], color=color, lw=1.2, label=f"weights × {c:g}")
            pred, = ax.plot([row["R_at_prediction"]], [row["predicted_sparsity"]], "o", ms=5, color=color)
            actual = math.nan
            if "actual_sparsity" in row:
                s_act = float(row["actual_sparsity"])
                mark, = ax.plot([c * np.interp(s_act, s_grid, r_of_s)], [s_act], "X" if c in collapsed else "D",
                                ms=6, mfc="none", mew=1.3, color="0.5" if c in collapsed else color)
                actual = drawn_y(mark)
                marks_r.append(drawn_x(mark))
            drawn[task][c] = (drawn_y(pred), actual)
        _note_collapsed(ax, collapsed)
        handles += [Line2D([], [], ls="", marker="o", color="0.3", label="crossing = predicted threshold"),
                    Line2D([], [], ls="", marker="D", mfc="none", color="0.3", label="actual threshold")]
        if collapsed:
            handles.append(Line2D([], [], ls="", marker="X", mfc="none", color="0.5",
                                  label="actual threshold, scaled model's unpruned accuracy collapsed"))
        ax.set_xscale("log")
        ax.set_xlim(interesting_radius(r_grid, [gw], marks_r), r_grid.max())
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("projection distance R (log)")
        if col % TASK_COLUMNS == 0:
            ax.set_ylabel(SPARSITY)
    figure_legend(fig, handles, ncol=4)
    save_figure(fig, *paths)
    return drawn


def draw_weight_distribution(inputs, params, outputs) -> dict:
    """Rule ``fig_weight_distribution``: Figs. 2 and 8 from each (task, variant)'s model.pt and metrics.json
    (task-major, variant-minor, as ``params.tasks`` × ``params.variants``) and each task's prediction.json,
    actual.json and magnitude_scaling.json."""
    tasks, weights, files = params.tasks, {}, iter(zip(inputs.model, inputs.metrics))
    for task in tasks:
        weights[task] = {variant: load_prunable_weights(*next(files)) for variant in params.variants}
    return plot_weight_distribution(weights, by_task(tasks, inputs.prediction, load_json),
                                    by_task(tasks, inputs.actual, load_json), by_task(tasks, inputs.scaling, load_json),
                                    outputs)


def draw_magnitude_scaling(inputs, params, outputs) -> dict:
    """Rule ``fig_magnitude_scaling``: Fig. 7 from each task's magnitude_scaling.json."""
    return plot_magnitude_scaling(by_task(params.tasks, inputs.scaling, load_json), outputs)
