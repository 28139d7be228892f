"""The regime map (beyond the paper): per task, the predicted and the actual pruning limit of
models retrained across L1 strength, against the L1 shrinkage each reached."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..io import PrunelimitError, load_csv
from .style import COLORS, SPARSITY, TASK_COLUMNS, apply_style, figure_legend, save_figure, task_panels

ZERO_SHRINKAGE_GAP = 6.0  # the λ = 0 point sits this factor left of the smallest positive shrinkage


def regime_x(shrinkage: Iterable[float]) -> tuple[np.ndarray, float]:
    """x positions on the log shrinkage axis: the shrinkages themselves, and λ = 0 (shrinkage 0,
    which a log axis cannot show) at the left edge, :data:`ZERO_SHRINKAGE_GAP` below the smallest
    positive one. Returns the positions and that edge position."""
    s = np.asarray(list(shrinkage), np.float64)
    positive = s[s > 0]
    if positive.size == 0:
        raise PrunelimitError("regime map: no point with a positive L1 shrinkage")
    edge = float(positive.min()) / ZERO_SHRINKAGE_GAP
    return np.where(s > 0, s, edge), edge


def plot_regime_map(table: pd.DataFrame, paths: Iterable[str | os.PathLike]) -> dict:
    """The regime map: per task, sparsity against the L1 shrinkage λ·Σlr each model reached.

    From the regime-map table (one row per model): the predicted threshold with its kinematic
    bounds shaded, the actual threshold by the official criterion with a band from the smallest to
    the largest accuracy tolerance of the table (``actual_tol_*``), and the share of weights with
    |w| < 1e-3. x is logarithmic; the λ = 0 model is drawn at the left edge (:func:`regime_x`), its
    tick labelled "0", set off by a white gap marked "//" on the axis. A dashed vertical line marks
    the task's own λ (multiplier 1). Returns per task the drawn series.
    """
    tol_cols = sorted((c for c in table.columns if c.startswith("actual_tol_")),
                      key=lambda c: float(c.removeprefix("actual_tol_")))
    if not tol_cols:
        raise PrunelimitError("regime map: the table has no actual_tol_* columns")
    lo_col, hi_col = tol_cols[0], tol_cols[-1]
    lo_tol, hi_tol = lo_col.removeprefix("actual_tol_"), hi_col.removeprefix("actual_tol_")
    apply_style()
    tasks = list(dict.fromkeys(table["task"]))
    fig, panels = task_panels(tasks, panel=(4.2, 3.2))
    drawn, handles = {}, []
    for col, (task, (ax,)) in enumerate(panels.items()):
        df = table[table["task"] == task].sort_values("l1_shrinkage")
        x, edge = regime_x(df["l1_shrinkage"])
        pred, = ax.plot(x, df["predicted_sparsity"], "o-", ms=4, lw=1.3, color=COLORS["predicted"],
                        label="predicted threshold s*")
        bounds = ax.fill_between(x, df["lower_sparsity"], df["upper_sparsity"], color=COLORS["predicted"],
                                 alpha=0.18, lw=0, label="kinematic bounds of the prediction")
        act, = ax.plot(x, df["actual_sparsity"], "s-", ms=4, lw=1.3, color=COLORS["actual"],
                       label="actual threshold (official criterion)")
        tolerance = ax.fill_between(x, df[lo_col], df[hi_col], color=COLORS["curve"], alpha=0.2, lw=0,
                                    label=f"actual at accuracy tolerance {lo_tol} to {hi_tol}")
        small, = ax.plot(x, df["small_weight_share"], "^--", ms=4, lw=1.0, color=COLORS["accuracy"],
                         label="share of weights with |w| < 1e-3")
        handles += [pred, bounds, act, tolerance, small]
        own = df[df["l1_multiplier"] == 1.0]
        if len(own):
            handles.append(ax.axvline(float(own["l1_shrinkage"].iloc[0]), color="0.35", ls="--", lw=0.9,
                                      label="the task's own λ (the paper's shrinkage)"))
        # which spectrum the prediction used, and D, in the title (the legend is shared by all panels)
        spectra = "/".join(sorted(set(df["spectrum"])))
        dims = sorted(set(int(d) for d in df["D"])) if "D" in df else []
        ax.set_title(f"{task}\n(prediction from the {spectra} spectrum"
                     + (f", D = {dims[0]:,})" if len(dims) == 1 else ")"))
        ax.set_xscale("log")
        positive = x[x > edge]
        ax.set_xlim(edge / 1.8, float(positive.max()) * 1.8)
        # the axis break between λ = 0 and the log scale: a white gap and "//" on the x axis
        brk = edge * math.sqrt(ZERO_SHRINKAGE_GAP)
        ax.axvspan(brk / 1.25, brk * 1.25, color="white", zorder=3, lw=0)
        ax.text(brk, 0.0, "//", transform=ax.get_xaxis_transform(), ha="center", va="center", zorder=4,
                fontsize="small", color="0.3")
        decades = 10.0 ** np.arange(math.floor(math.log10(positive.min())), math.ceil(math.log10(positive.max())) + 1)
        ticks = [edge] + [d for d in decades if positive.min() / 1.01 <= d <= positive.max() * 1.8]
        ax.set_xticks(ticks, ["0"] + [f"{d:g}" for d in ticks[1:]])
        ax.minorticks_off()
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("L1 shrinkage λ·Σ lr (log; 0 = no L1)")
        if col % TASK_COLUMNS == 0:
            ax.set_ylabel(SPARSITY)
        drawn[task] = {"x": pred.get_xdata().tolist(), "predicted_sparsity": pred.get_ydata().tolist(),
                       "actual_sparsity": act.get_ydata().tolist(), "small_weight_share": small.get_ydata().tolist(),
                       "zero_edge": edge}
    figure_legend(fig, handles, ncol=3)
    save_figure(fig, *paths)
    return drawn


def draw_regime_map(inputs, params, outputs) -> dict:
    """Rule ``fig_regime_map``: the regime map from the regime-map table (``inputs.table``, its CSV)."""
    return plot_regime_map(load_csv(inputs.table), outputs)
