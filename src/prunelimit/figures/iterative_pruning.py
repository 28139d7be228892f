"""Paper Fig. 4: iterative pruning. Top: the theoretical threshold recomputed after each round,
with and without l2 during retraining. Bottom: the accuracy reached at each sparsity by both arms,
beside the Rare Gems baseline."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ..io import load_csv, load_json
from ..tables import by_task
from .style import SPARSITY, TASK_COLUMNS, apply_style, drawn_x, figure_legend, save_figure, task_panels

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
    fig, panels = task_panels(list(iterative), panel=(3.6, 2.9))
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
    figure_legend(fig, handles, ncol=2 if len(panels) == 1 else 3)
    save_figure(fig, *paths)
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
    fig, panels = task_panels(list(iterative), panel=(3.6, 2.9))
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
            drawn[task][f"final_threshold_{arm}"] = drawn_x(final)
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
    figure_legend(fig, handles, ncol=2 if len(panels) == 1 else 3)
    save_figure(fig, *paths)
    return drawn


def draw_iterative_threshold(inputs, params, outputs) -> dict:
    """Rule ``fig_iterative_threshold``: Fig. 4 (top) from each task's iterative.csv."""
    return plot_iterative_threshold(by_task(params.tasks, inputs.iterative, load_csv), outputs, l2=params.l2)


def draw_l2_vs_rare_gems(inputs, params, outputs) -> dict:
    """Rule ``fig_l2_vs_rare_gems``: Fig. 4 (bottom) from each task's iterative.csv and one-shot curve.csv, and
    the Rare Gems runs (one JSON per task, sparsity and seed, grouped by the task each names)."""
    rare_gems = defaultdict(list)
    for path in inputs.rare_gems:
        result = load_json(path)
        rare_gems[result["task"]].append(result)
    return plot_l2_vs_rare_gems(by_task(params.tasks, inputs.iterative, load_csv),
                                by_task(params.tasks, inputs.curve, load_csv), rare_gems, outputs, l2=params.l2)
