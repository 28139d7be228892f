"""Paper Fig. 5: the prediction curve w²(R)/D against the actual curve (R(s), s) of magnitude
pruning, their crossing (the predicted threshold) and the actual threshold."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping

import numpy as np

from ..io import load_json
from ..tables import by_task
from . import style


def plot_theory_vs_actual(predictions: Mapping[str, Mapping], actuals: Mapping[str, Mapping],
                          paths: Iterable[str | os.PathLike]) -> dict:
    """Paper Fig. 5: the prediction curve w²(R)/D against the actual curve (R(s), s), per task.

    x: projection distance R (log); y: sparsity. The prediction curve (SLQ spectrum) with the band
    of the kinematic bounds around it, the exact-spectrum curve where one exists and the official
    code's smoothed-density curve; the magnitude-pruning curve (R(s), s); their crossing (the
    predicted threshold) and the actual threshold on the (R(s), s) curve.
    """
    style.apply_style()
    fig, panels = style.task_panels(list(predictions), panel=(3.4, 2.9))
    drawn, handles = {}, []
    for col, (task, (ax,)) in enumerate(panels.items()):
        pred, act = predictions[task], actuals[task]
        c = pred["curves"]
        r_grid, gw = np.asarray(c["R_grid"], float), np.asarray(c["gw2_over_D"], float)
        s_grid, r_of_s = np.asarray(c["sparsity_grid"], float), np.asarray(c["R_of_sparsity"], float)
        dim, a = float(pred["D"]), float(pred["a_eta"])
        handles.append(ax.fill_between(r_grid, np.clip(gw - a * math.sqrt(dim) / dim, 0, 1),
                                       np.clip(gw + (1 + a * math.sqrt(dim)) / dim, 0, 1),
                                       color=style.COLORS["curve"], alpha=0.18, lw=0,
                                       label="kinematic-bound band of the prediction"))
        handles += ax.plot(r_grid, gw, color=style.COLORS["curve"], lw=1.6, label="prediction curve w²(R)/D (SLQ)")
        if "exact" in pred:
            handles += ax.plot(r_grid, pred["exact"]["gw2_over_D"], "--", color=style.COLORS["exact"], lw=1.2,
                               label="prediction curve, exact spectrum")
        if "gw2_over_D_official_smoothed" in c:
            handles += ax.plot(r_grid, c["gw2_over_D_official_smoothed"], ":", color=style.COLORS["official"], lw=1.2,
                               label="official code's smoothed-density curve")
        keep = r_of_s > 0
        handles += ax.plot(r_of_s[keep], s_grid[keep], color=style.COLORS["actual_curve"], lw=1.6,
                           label="magnitude pruning (R(s), s)")
        cross, = ax.plot([pred["R_at_prediction"]], [pred["predicted_sparsity"]], "o", ms=6,
                         color=style.COLORS["predicted"], label="crossing = predicted threshold")
        s_act = float(act["actual_sparsity"])
        actual, = ax.plot([np.interp(s_act, s_grid, r_of_s)], [s_act], "D", ms=6, mfc="none", mew=1.4,
                          color=style.COLORS["actual"], label="actual threshold on (R(s), s)")
        handles += [cross, actual]
        ax.set_xscale("log")
        ax.set_xlim(style.interesting_radius(r_grid, [gw, c.get("gw2_over_D_official_smoothed", gw)],
                                             [pred["R_at_prediction"], style.drawn_x(actual)]), 1.3 * r_of_s.max())
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("projection distance R = ‖w* − w_s‖₂ (log)")
        if col % style.TASK_COLUMNS == 0:
            ax.set_ylabel(style.SPARSITY)
        drawn[task] = {"predicted_sparsity": style.drawn_y(cross), "R_at_prediction": style.drawn_x(cross),
                       "actual_sparsity": style.drawn_y(actual)}
    style.figure_legend(fig, handles)
    style.save_figure(fig, *paths)
    return drawn


def draw_theory_vs_actual(inputs, params, outputs) -> dict:
    """Rule ``fig_theory_vs_actual``: Fig. 5 from each task's prediction.json and actual.json."""
    tasks = params.tasks
    return plot_theory_vs_actual(by_task(tasks, inputs.prediction, load_json), by_task(tasks, inputs.actual, load_json),
                                 outputs)
