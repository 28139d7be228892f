"""Figures of the paper and the pipeline's diagnostic plots, one function per figure.

Every figure uses :func:`apply_style` and is written atomically (temporary name, then renamed),
with the format taken from the destination's suffix (png, pdf, svg). The paper's figures are
small multiples: one panel (or one column of panels) per task, all tasks in one file.

Each ``plot_*`` function takes the stage outputs already loaded (dicts keyed by task, in the
order the panels should appear), writes the figure to every path in ``paths`` and returns the
numbers it drew, read back from the plotted artists (``{task: {name: value}}``), so tests can
check that a figure shows its data. Conventions as everywhere: ``sparsity`` = fraction of
prunable weights removed, ``density`` = fraction kept; every axis says which.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .io import PrunelimitError, atomic_path  # noqa: E402
from .spectrum import Quadrature, from_eigenvalues, smoothed_density  # noqa: E402
from .tables import by_task  # noqa: E402,F401 - the rule scripts' loader

TASK_COLUMNS = 4  # panels per row of the small multiples (the paper's 8 tasks: two rows of four)
SPARSITY = "sparsity (fraction removed)"
DENSITY = "density (fraction kept)"
COLORS = {"curve": "C0", "actual_curve": "C1", "accuracy": "C2", "predicted": "C3", "exact": "C4",
          "bounds": "0.45", "actual": "black", "official": "C7", "dense": "C7"}


def apply_style() -> None:
    """One look for every figure: seaborn's white grid, paper context, colour-blind palette."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 150, "savefig.bbox": "tight", "axes.titlesize": "medium"})


def _save(fig: plt.Figure, *paths: str | os.PathLike) -> None:
    """Write ``fig`` to every path (format from the suffix), each atomically, then close it."""
    for path in paths:
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Shared pieces: the panel grid, threshold marks, legends, loaders
# ---------------------------------------------------------------------------------------------


def _task_panels(tasks: list[str], rows_per_task: int = 1, panel: tuple[float, float] = (3.4, 2.6),
                 share_x: bool = False) -> tuple[plt.Figure, dict[str, list[plt.Axes]]]:
    """One column of ``rows_per_task`` axes per task, at most :data:`TASK_COLUMNS` tasks a row.

    Returns the figure (constrained layout) and task → its axes, top to bottom; the task's name
    titles its top axes. With ``share_x`` a task's axes share the x axis and only the lowest shows
    tick labels. Empty cells of the last row are hidden.
    """
    if not tasks:
        raise PrunelimitError("nothing to plot: no task has data for this figure")
    ncols = min(len(tasks), TASK_COLUMNS)
    blocks = math.ceil(len(tasks) / ncols)
    fig, grid = plt.subplots(blocks * rows_per_task, ncols, squeeze=False, layout="constrained",
                             figsize=(panel[0] * ncols, panel[1] * rows_per_task * blocks))
    panels = {}
    for i, task in enumerate(tasks):
        block, col = divmod(i, ncols)
        axes = [grid[block * rows_per_task + r, col] for r in range(rows_per_task)]
        if share_x:
            for ax in axes[1:]:
                ax.sharex(axes[0])
            for ax in axes[:-1]:
                ax.tick_params(labelbottom=False)
        axes[0].set_title(task)
        panels[task] = axes
    for i in range(len(tasks), blocks * ncols):
        block, col = divmod(i, ncols)
        for r in range(rows_per_task):
            grid[block * rows_per_task + r, col].set_visible(False)
    return fig, panels


def _figure_legend(fig: plt.Figure, handles: list, ncol: int | None = None) -> None:
    """One legend for all panels, below them (unique labels, first occurrence wins)."""
    seen, unique = set(), []
    for h in handles:
        if h.get_label() and not h.get_label().startswith("_") and h.get_label() not in seen:
            seen.add(h.get_label())
            unique.append(h)
    fig.legend(handles=unique, loc="outside lower center", ncol=ncol or min(len(unique), 4), frameon=False,
               fontsize="small")


def _x(line: Line2D) -> float:
    """The x position of a vertical line (axvline) or single marker as drawn."""
    return float(np.asarray(line.get_xdata(), dtype=float)[0])


def _y(line: Line2D) -> float:
    return float(np.asarray(line.get_ydata(), dtype=float)[0])


def _mark_thresholds(ax: plt.Axes, prediction: Mapping, actual: Mapping | None) -> dict:
    """Vertical lines at the predicted threshold, the kinematic bounds (shaded between) and the
    actual threshold, in sparsity units. Returns their drawn x positions."""
    lo, up = float(prediction["lower_sparsity"]), float(prediction["upper_sparsity"])
    ax.axvspan(lo, up, color=COLORS["bounds"], alpha=0.12, lw=0)
    lower = ax.axvline(lo, color=COLORS["bounds"], ls="--", lw=1.0, label="kinematic bounds")
    upper = ax.axvline(up, color=COLORS["bounds"], ls="--", lw=1.0)
    pred = ax.axvline(float(prediction["predicted_sparsity"]), color=COLORS["predicted"], lw=1.4,
                      label="predicted threshold s* (theory)")
    drawn = {"predicted_sparsity": _x(pred), "lower_sparsity": _x(lower), "upper_sparsity": _x(upper)}
    if actual is not None:
        act = ax.axvline(float(actual["actual_sparsity"]), color=COLORS["actual"], ls=":", lw=1.4,
                         label="actual threshold (official criterion)")
        drawn["actual_sparsity"] = _x(act)
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
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _interesting_radius(r_grid: np.ndarray, width_curves: list, marks: list[float]) -> float:
    """Left end of an R axis: a decade below where the first width curve leaves 1 or the first mark
    sits (R(s) of tiny sparsities reaches far lower, but nothing happens there)."""
    starts = [float(r_grid[np.argmax(np.asarray(w, float) < 0.98)]) for w in width_curves
              if np.any(np.asarray(w, float) < 0.98)]
    return max(float(r_grid.min()), min(starts + [float(m) for m in marks if m > 0]) / 10)


def load_prunable_weights(model_path: str | os.PathLike, metrics_path: str | os.PathLike) -> np.ndarray:
    """The trained model's prunable weights (conv and linear weights, the library's order), flat
    float64; read without torch (figure jobs have none), their count checked against the metrics."""
    from .io import load_json
    from .statedict import prunable_weights

    return prunable_weights(model_path, load_json(metrics_path)["n_prunable"]).astype(np.float64)


def magnitude_at(abs_weights_sorted: np.ndarray, sparsity: float) -> float:
    """|w| of the largest weight removed by global magnitude pruning at ``sparsity`` (the cut)."""
    from .sparsity import keep_count

    n = abs_weights_sorted.size
    removed = n - keep_count(n, sparsity)
    return float(abs_weights_sorted[max(removed - 1, 0)])


# ---------------------------------------------------------------------------------------------
# Fig. 3: pruning curves
# ---------------------------------------------------------------------------------------------


def plot_pruning_curves(curves: Mapping[str, pd.DataFrame], predictions: Mapping[str, Mapping],
                        actuals: Mapping[str, Mapping], paths: Iterable[str | os.PathLike]) -> dict:
    """Paper Fig. 3: normalised test loss and test accuracy of one-shot magnitude pruning vs sparsity.

    Per task two panels sharing the sparsity axis: test loss divided by the unpruned model's (log
    scale) and test accuracy, both from ``curve.csv`` (the 0.1% grid). Vertical lines: predicted threshold (prediction.json),
    kinematic bounds (shaded between) and the actual threshold by the official criterion (actual.json); the unpruned accuracy
    is a horizontal line. Returns per task the drawn thresholds and the unpruned loss/accuracy.
    """
    apply_style()
    fig, panels = _task_panels(list(curves), rows_per_task=2, panel=(3.4, 2.3), share_x=True)
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
        # the numbers in the title too: a line on the axis edge (s* = 1) or two close lines are easy to miss
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
    _figure_legend(fig, handles)
    _save(fig, *paths)
    return drawn


# ---------------------------------------------------------------------------------------------
# Fig. 5: prediction curve vs actual (R, s) curve
# ---------------------------------------------------------------------------------------------


def plot_theory_vs_actual(predictions: Mapping[str, Mapping], actuals: Mapping[str, Mapping],
                          paths: Iterable[str | os.PathLike]) -> dict:
    """Paper Fig. 5: the prediction curve w²(R)/D against the actual curve (R(s), s), per task.

    x: projection distance R (log); y: sparsity. The prediction curve (SLQ spectrum) with the band
    of the kinematic bounds around it, the exact-spectrum curve where one exists and the official
    code's smoothed-density curve; the magnitude-pruning curve (R(s), s); their crossing (the
    predicted threshold) and the actual threshold on the (R(s), s) curve.
    """
    apply_style()
    fig, panels = _task_panels(list(predictions), panel=(3.4, 2.9))
    drawn, handles = {}, []
    for col, (task, (ax,)) in enumerate(panels.items()):
        pred, act = predictions[task], actuals[task]
        c = pred["curves"]
        r_grid, gw = np.asarray(c["R_grid"], float), np.asarray(c["gw2_over_D"], float)
        s_grid, r_of_s = np.asarray(c["sparsity_grid"], float), np.asarray(c["R_of_sparsity"], float)
        dim, a = float(pred["D"]), float(pred["a_eta"])
        handles.append(ax.fill_between(r_grid, np.clip(gw - a * math.sqrt(dim) / dim, 0, 1),
                                       np.clip(gw + (1 + a * math.sqrt(dim)) / dim, 0, 1), color=COLORS["curve"],
                                       alpha=0.18, lw=0, label="kinematic-bound band of the prediction"))
        handles += ax.plot(r_grid, gw, color=COLORS["curve"], lw=1.6, label="prediction curve w²(R)/D (SLQ)")
        if "exact" in pred:
            handles += ax.plot(r_grid, pred["exact"]["gw2_over_D"], "--", color=COLORS["exact"], lw=1.2,
                               label="prediction curve, exact spectrum")
        if "gw2_over_D_official_smoothed" in c:
            handles += ax.plot(r_grid, c["gw2_over_D_official_smoothed"], ":", color=COLORS["official"], lw=1.2,
                               label="official code's smoothed-density curve")
        keep = r_of_s > 0
        handles += ax.plot(r_of_s[keep], s_grid[keep], color=COLORS["actual_curve"], lw=1.6,
                           label="magnitude pruning (R(s), s)")
        cross, = ax.plot([pred["R_at_prediction"]], [pred["predicted_sparsity"]], "o", ms=6, color=COLORS["predicted"],
                         label="crossing = predicted threshold")
        s_act = float(act["actual_sparsity"])
        actual, = ax.plot([np.interp(s_act, s_grid, r_of_s)], [s_act], "D", ms=6, mfc="none", mew=1.4,
                          color=COLORS["actual"], label="actual threshold on (R(s), s)")
        handles += [cross, actual]
        ax.set_xscale("log")
        ax.set_xlim(_interesting_radius(r_grid, [gw, c.get("gw2_over_D_official_smoothed", gw)],
                                        [pred["R_at_prediction"], _x(actual)]), 1.3 * r_of_s.max())
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("projection distance R = ‖w* − w_s‖₂ (log)")
        if col % TASK_COLUMNS == 0:
            ax.set_ylabel(SPARSITY)
        drawn[task] = {"predicted_sparsity": _y(cross), "R_at_prediction": _x(cross), "actual_sparsity": _y(actual)}
    _figure_legend(fig, handles)
    _save(fig, *paths)
    return drawn


# ---------------------------------------------------------------------------------------------
# Fig. 4: iterative pruning, with and without l2, and Rare Gems
# ---------------------------------------------------------------------------------------------

# iterative-pruning arms: name in iterative.csv, colour, marker, label (two markers keep overlaps visible)
ARMS = (("no_l2", "C0", "o", "without l2"), ("l2", "C1", "^", "with l2"))


def _arm_label(label: str, arm: str, l2: float | None) -> str:
    return f"{label} (λ₂ = {l2:g})" if arm == "l2" and l2 else label


def plot_iterative_threshold(iterative: Mapping[str, pd.DataFrame], paths: Iterable[str | os.PathLike],
                             l2: float | None = None) -> dict:
    """Paper Fig. 4 (top): the theoretical threshold recomputed after each iterative-pruning round.

    Per task: round on x; the threshold predicted for the model after the round (solid, kinematic
    bounds shaded) and the sparsity the model was pruned to (dashed), without and with l2 during
    retraining (``iterative.csv``). Returns the drawn final thresholds per arm.
    """
    apply_style()
    fig, panels = _task_panels(list(iterative), panel=(3.6, 2.9))
    drawn, handles = {}, []
    for col, (task, (ax,)) in enumerate(panels.items()):
        df = iterative[task]
        drawn[task] = {}
        shown = []
        for arm, color, marker, label in ARMS:
            g = df[df["arm"] == arm].sort_values("round")
            if g.empty:
                continue
            if {"lower_sparsity", "upper_sparsity"} <= set(g.columns):
                ax.fill_between(g["round"], g["lower_sparsity"], g["upper_sparsity"], color=color, alpha=0.12, lw=0)
                shown += g["lower_sparsity"].tolist()
            theory, = ax.plot(g["round"], g["theoretical_sparsity"], f"{marker}-", color=color, lw=1.5,
                              label=_arm_label(f"theoretical threshold, {label}", arm, l2))
            later = g[g["round"] > 0]  # round 0 is the unpruned model (sparsity 0)
            pruned, = ax.plot(later["round"], later["sparsity"], f"{marker}--", ms=5, mfc="none", color=color,
                              lw=1.0, label=f"sparsity pruned to, {label}")
            handles += [theory, pruned]
            shown += g["theoretical_sparsity"].tolist() + later["sparsity"].tolist()
            drawn[task][arm] = {"final_theoretical_sparsity": float(theory.get_ydata()[-1]),
                                "final_sparsity": float(pruned.get_ydata()[-1]) if len(later) else 0.0,
                                "rounds": len(g)}
        handles.append(Line2D([], [], color="0.5", alpha=0.3, lw=6, label="kinematic bounds (shaded)"))
        ax.set_xticks(sorted(df["round"].unique()))
        ax.set_xlabel("iterative-pruning round (0 = trained model)")
        ax.set_ylim(max(0.0, min(shown) - 0.05), min(1.02, max(shown) + 0.05))
        if col % TASK_COLUMNS == 0:
            ax.set_ylabel(SPARSITY)
    _figure_legend(fig, handles, ncol=2 if len(panels) == 1 else 3)
    _save(fig, *paths)
    return drawn


def plot_l2_vs_rare_gems(iterative: Mapping[str, pd.DataFrame], one_shot: Mapping[str, pd.DataFrame],
                         rare_gems: Mapping[str, list[dict]], paths: Iterable[str | os.PathLike],
                         l2: float | None = None) -> dict:
    """Paper Fig. 4 (bottom): accuracy reached at each sparsity with and without l2, and Rare Gems.

    Per task: test accuracy vs sparsity of the iterative-pruning rounds of both arms (after
    retraining), their final theoretical thresholds (dotted verticals), Rare Gems (mean ± std over
    seeds at its target sparsities, from the baseline results; it applies l2 to its scores) and the
    one-shot LOMP curve for reference. Returns the drawn Rare Gems means and final thresholds.
    """
    apply_style()
    fig, panels = _task_panels(list(iterative), panel=(3.6, 2.9))
    drawn, handles = {}, []
    for col, (task, (ax,)) in enumerate(panels.items()):
        drawn[task] = {}
        if task in one_shot:
            curve = one_shot[task].sort_values("sparsity")
            handles += ax.plot(curve["sparsity"], curve["test_acc"], "-", color="0.6", lw=1.0,
                               label="one-shot LOMP (no retraining)")
        df = iterative[task]
        for arm, color, marker, label in ARMS:
            g = df[df["arm"] == arm].sort_values("round")
            if g.empty:
                continue
            handles += ax.plot(g["sparsity"], g["test_acc"], f"{marker}-", ms=6, mfc="none", mew=1.4, color=color,
                               lw=1.0, label=_arm_label(f"iterative LOMP {label}", arm, l2))
            final = ax.axvline(float(g["theoretical_sparsity"].iloc[-1]), color=color, ls=":", lw=1.2,
                               label=f"final theoretical threshold, {label}")
            handles.append(final)
            drawn[task][f"final_threshold_{arm}"] = _x(final)
        runs = pd.DataFrame(rare_gems.get(task, []))
        if len(runs):
            stats = runs.groupby("sparsity")["test_acc"].agg(["mean", "std", "count"]).reset_index()
            bars = ax.errorbar(stats["sparsity"], stats["mean"], yerr=stats["std"].fillna(0.0), fmt="D", ms=5,
                               color="C2", capsize=3, label=f"Rare Gems (l2 on scores), mean ± std over "
                                                             f"{int(stats['count'].max())} seeds")
            handles.append(bars)
            drawn[task]["rare_gems"] = dict(zip(np.asarray(bars.lines[0].get_xdata(), float).tolist(),
                                                np.asarray(bars.lines[0].get_ydata(), float).tolist()))
        else:
            ax.text(0.03, 0.04, "no Rare Gems run for this task", transform=ax.transAxes, fontsize="small",
                    color="0.4")
        ax.set_xlim(0, 1.0)
        # the accuracies compared (iterative arms, Rare Gems) sit near the top: zoom there; the
        # one-shot curve, there for reference, may leave the axis below
        compared = df["test_acc"].tolist() + ((stats["mean"] - stats["std"].fillna(0.0)).tolist() if len(runs) else [])
        ax.set_ylim(max(0.0, min(compared) - 0.1), 1.005)
        ax.set_xlabel(SPARSITY)
        if col % TASK_COLUMNS == 0:
            ax.set_ylabel("test accuracy")
    _figure_legend(fig, handles, ncol=2 if len(panels) == 1 else 3)
    _save(fig, *paths)
    return drawn


# ---------------------------------------------------------------------------------------------
# Fig. 6: Hessian row L1 norms
# ---------------------------------------------------------------------------------------------


def plot_hessian_row_l1(rows: Mapping[str, Mapping[str, np.ndarray]], paths: Iterable[str | os.PathLike]) -> dict:
    """Paper Fig. 6: L1 norm of the Hessian row of the weight at each magnitude rank (log y).

    ``rows[task]`` holds the arrays of ``hessian_rows.npz`` (sparsities, l1_norms, zero_threshold).
    x: the weight's magnitude rank, as the % of prunable weights with smaller |w| (the sparsity
    level whose threshold weight it is). Rows below the zero threshold count as zero eigen-
    directions (f₀); they are drawn as triangles at the bottom of the axis when their norm is
    below it. Returns per task the drawn zero fraction and number of rows.
    """
    apply_style()
    fig, panels = _task_panels(list(rows), panel=(3.4, 2.7))
    drawn, handles = {}, []
    for col, (task, (ax,)) in enumerate(panels.items()):
        r = rows[task]
        x = 100.0 * np.asarray(r["sparsities"], float)
        norms = np.asarray(r["l1_norms"], float)
        threshold = float(r["zero_threshold"])
        zero = norms < threshold
        positive = norms[norms > 0]
        floor = min(threshold, positive.min() if positive.size else threshold) / 10
        handles += ax.plot(x[~zero], norms[~zero], "o", ms=4, color=COLORS["curve"], label="Hessian row L1 norm")
        handles += ax.plot(x[zero], np.maximum(norms[zero], floor), "v", ms=5, color=COLORS["predicted"],
                           label="zero row (below threshold; at floor if 0)")
        handles.append(ax.axhline(threshold, color=COLORS["bounds"], ls="--", lw=1.0,
                                  label=f"zero-row threshold ({threshold:g})"))
        ax.set_yscale("log")
        ax.set_ylim(bottom=floor / 2)
        f0 = float(zero.mean()) if zero.size else 0.0
        ax.set_title(f"{task}\nf₀ = {f0:.2f} ({int(zero.sum())} of {zero.size} rows zero)")
        ax.set_xlim(-2, 102)
        ax.set_xlabel("row index (%): weights with smaller |w|")
        if col % TASK_COLUMNS == 0:
            ax.set_ylabel("Hessian row L1 norm\n‖H eᵢ‖₁ (log scale)")
        drawn[task] = {"zero_fraction": f0, "n_rows": int(norms.size), "zero_threshold": _y(handles[-1])}
    _figure_legend(fig, handles)
    _save(fig, *paths)
    return drawn


# ---------------------------------------------------------------------------------------------
# Fig. 7: weight-magnitude scaling
# ---------------------------------------------------------------------------------------------


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


def plot_magnitude_scaling(scalings: Mapping[str, Mapping], paths: Iterable[str | os.PathLike]) -> dict:
    """Paper Fig. 7: the prediction curve against the actual curves (c·R(s), s) for weights × c.

    ``scalings[task]`` is ``magnitude_scaling.json``. Per task: w²(R)/D (spectrum and ε of the
    unscaled model, as in the paper) and one magnitude-pruning curve per scale c; filled circles
    mark the crossings (predicted thresholds), hollow diamonds the actual thresholds of the scaled
    models. Returns per task {scale: (predicted, actual)} as drawn.
    """
    import seaborn as sns

    apply_style()
    fig, panels = _task_panels(list(scalings), panel=(3.4, 2.9))
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
                actual = _y(mark)
                marks_r.append(_x(mark))
            drawn[task][c] = (_y(pred), actual)
        _note_collapsed(ax, collapsed)
        handles += [Line2D([], [], ls="", marker="o", color="0.3", label="crossing = predicted threshold"),
                    Line2D([], [], ls="", marker="D", mfc="none", color="0.3", label="actual threshold")]
        if collapsed:
            handles.append(Line2D([], [], ls="", marker="X", mfc="none", color="0.5",
                                  label="actual threshold, scaled model's unpruned accuracy collapsed"))
        ax.set_xscale("log")
        ax.set_xlim(_interesting_radius(r_grid, [gw], marks_r), r_grid.max())
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("projection distance R (log)")
        if col % TASK_COLUMNS == 0:
            ax.set_ylabel(SPARSITY)
    _figure_legend(fig, handles, ncol=4)
    _save(fig, *paths)
    return drawn


# ---------------------------------------------------------------------------------------------
# Figs. 2 and 8: weight distribution and the threshold against weight magnitude
# ---------------------------------------------------------------------------------------------


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
    fig, panels = _task_panels(list(weights), rows_per_task=2, panel=(3.4, 2.4))
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
            reference = np.sort(a) if reference is None else reference
        cut_pred = ax_hist.axvline(math.log10(max(magnitude_at(reference, predictions[task]["predicted_sparsity"]),
                                                  1e-300)), color=COLORS["predicted"], lw=1.4,
                                   label="|w| cut at the predicted threshold")
        cut_act = ax_hist.axvline(math.log10(max(magnitude_at(reference, actuals[task]["actual_sparsity"]), 1e-300)),
                                  color=COLORS["actual"], ls=":", lw=1.4, label="|w| cut at the actual threshold")
        handles += [cut_pred, cut_act]
        ax_hist.set_xlabel("log₁₀ |w| (prunable weights)")
        sc = pd.DataFrame(scalings[task]["scales"]).sort_values("scale")
        ax_scale.fill_between(sc["scale"], sc["lower_sparsity"], sc["upper_sparsity"], color=COLORS["predicted"],
                              alpha=0.12, lw=0)
        pred, = ax_scale.plot(sc["scale"], sc["predicted_sparsity"], "o-", color=COLORS["predicted"], lw=1.4,
                              label="predicted threshold (kinematic bounds shaded)")
        handles.append(pred)
        drawn[task].update({"cut_predicted_log10": _x(cut_pred), "cut_actual_log10": _x(cut_act),
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
    _figure_legend(fig, handles, ncol=3)
    _save(fig, *paths)
    return drawn


# ---------------------------------------------------------------------------------------------
# The Hessian spectrum (SLQ), with the exact eigenvalues where computed
# ---------------------------------------------------------------------------------------------


def _draw_spectrum(ax: plt.Axes, spectrum, n_bins: int, sigma2: float, floor: float,
                   exact: np.ndarray | None = None, title: str = "") -> dict:
    """The smoothed SLQ density (log y) with its Ritz nodes as ticks, and optionally the exact
    eigenvalues' smoothed density (same kernel) for comparison; returns λmin, λmax, D."""
    q: Quadrature = spectrum.quadrature() if hasattr(spectrum, "quadrature") else spectrum
    settings = getattr(spectrum, "settings", {})
    grid, density = smoothed_density(q, n_bins=n_bins, sigma2=sigma2)
    ax.semilogy(grid, density + floor, lw=1.0, color="C0", label="smoothed density (SLQ)")
    if exact is not None:
        e_grid, e_density = smoothed_density(from_eigenvalues(exact), n_bins=n_bins, sigma2=sigma2)
        ax.semilogy(e_grid, e_density + floor, lw=1.0, ls="--", color=COLORS["exact"],
                    label="smoothed density (exact eigenvalues)")
    keep = q.weights > 0
    heights = floor * 10 ** (1 + 2 * q.weights[keep] / q.weights[keep].max())  # 10·floor … 1000·floor
    ax.vlines(q.nodes[keep], floor, heights, colors="C3", lw=0.6, alpha=0.7, label="Ritz nodes (SLQ)")
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylim(bottom=floor * 0.5)
    runs, iters = settings.get("n_runs"), settings.get("n_iter")
    detail = f"D = {q.dim:,}" + (f", {runs} run{'s' if runs != 1 else ''} × {iters} Lanczos steps"
                                 if runs and iters else "")
    ax.set_title(f"{title}\n{detail}" if title else detail)
    ax.text(0.98, 0.95, f"λmin = {q.lambda_min:.3g}\nλmax = {q.lambda_max:.3g}", transform=ax.transAxes,
            ha="right", va="top", fontsize="small")
    return {"lambda_min": q.lambda_min, "lambda_max": q.lambda_max, "dim": q.dim}


def plot_hessian_spectrum(spectrum, path: str | os.PathLike, title: str = "", n_bins: int = 10000,
                          sigma2: float = 1e-5, floor: float = 1e-7) -> None:
    """Smoothed Hessian eigenvalue density on a log axis, with the Ritz nodes marked beneath it.

    ``spectrum``: an :class:`~prunelimit.hessian.SLQResult` or a :class:`~prunelimit.spectrum.Quadrature`.
    The density is the Gaussian-smoothed one of PyHessian and the official ``density_plot.py``
    (kernel variance ``sigma2 · max(1, λmax − λmin)``), floored at ``floor`` for the log axis as
    there. Nodes are drawn as ticks whose height grows with their quadrature weight.
    """
    apply_style()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    _draw_spectrum(ax, spectrum, n_bins, sigma2, floor, title=title)
    ax.set_ylabel("density (log scale)")
    ax.legend(loc="upper center", fontsize="small", frameon=False)
    _save(fig, path)


def plot_hessian_spectra(spectra: Mapping[str, object], paths: Iterable[str | os.PathLike],
                         exact: Mapping[str, np.ndarray] | None = None, n_bins: int | Mapping[str, int] = 10000,
                         sigma2: float | Mapping[str, float] = 1e-5, floor: float = 1e-7) -> dict:
    """The SLQ spectral density of every task as panels (:func:`plot_hessian_spectrum`'s drawing),
    the exact eigenvalues' density overlaid where ``exact`` has the task. ``n_bins`` and ``sigma2``
    may be per task. Returns per task λmin, λmax and D as drawn in the panel."""
    apply_style()
    exact = exact or {}
    fig, panels = _task_panels(list(spectra), panel=(3.6, 2.9))
    drawn, handles = {}, []
    for col, (task, (ax,)) in enumerate(panels.items()):
        bins = n_bins[task] if isinstance(n_bins, Mapping) else n_bins
        var = sigma2[task] if isinstance(sigma2, Mapping) else sigma2
        drawn[task] = _draw_spectrum(ax, spectra[task], int(bins), float(var), floor, exact=exact.get(task),
                                     title=task)
        handles += ax.get_lines() + list(ax.collections)
        if col % TASK_COLUMNS == 0:
            ax.set_ylabel("density (log scale)")
    _figure_legend(fig, handles)
    _save(fig, *paths)
    return drawn


# ---------------------------------------------------------------------------------------------
# Loading stage outputs for the rule scripts
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The regime map (beyond the paper): predicted vs actual limit across L1 strength
# ---------------------------------------------------------------------------------------------

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
    fig, panels = _task_panels(tasks, panel=(4.2, 3.2))
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
    _figure_legend(fig, handles, ncol=3)
    _save(fig, *paths)
    return drawn


def load_csv(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise PrunelimitError(f"missing file: {path}")
    return pd.read_csv(path)
