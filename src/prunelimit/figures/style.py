"""What every figure shares: the look, the panel grid of the small multiples, the legend below
the panels, the axis labels and colours, reading drawn positions back, and atomic saving."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.lines import Line2D

from ..io import PrunelimitError, atomic_path

TASK_COLUMNS = 4  # panels per row of the small multiples (the paper's 8 tasks: two rows of four)
SPARSITY = "sparsity (fraction removed)"
DENSITY = "density (fraction kept)"
COLORS = {"curve": "C0", "actual_curve": "C1", "accuracy": "C2", "predicted": "C3", "exact": "C4",
          "bounds": "0.45", "actual": "black", "official": "C7", "dense": "C7"}


def apply_style() -> None:
    """One look for every figure: seaborn's white grid, paper context, colour-blind palette."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 150, "savefig.bbox": "tight", "axes.titlesize": "medium"})


def save_figure(fig: plt.Figure, *paths: str | os.PathLike) -> None:
    """Write ``fig`` to every path (format from the suffix), each atomically, then close it."""
    for path in paths:
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def task_panels(tasks: list[str], rows_per_task: int = 1, panel: tuple[float, float] = (3.4, 2.6),
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


def figure_legend(fig: plt.Figure, handles: list, ncol: int | None = None) -> None:
    """One legend for all panels, below them (unique labels, first occurrence wins)."""
    seen, unique = set(), []
    for h in handles:
        if h.get_label() and not h.get_label().startswith("_") and h.get_label() not in seen:
            seen.add(h.get_label())
            unique.append(h)
    fig.legend(handles=unique, loc="outside lower center", ncol=ncol or min(len(unique), 4), frameon=False,
               fontsize="small")


def drawn_x(line: Line2D) -> float:
    """The x position of a vertical line (axvline) or single marker as drawn."""
    return float(np.asarray(line.get_xdata(), dtype=float)[0])


def drawn_y(line: Line2D) -> float:
    """The y position of a horizontal line (axhline) or single marker as drawn."""
    return float(np.asarray(line.get_ydata(), dtype=float)[0])


def interesting_radius(r_grid: np.ndarray, width_curves: list, marks: list[float]) -> float:
    """Left end of an R axis: a decade below where the first width curve leaves 1 or the first mark
    sits (R(s) of tiny sparsities reaches far lower, but nothing happens there)."""
    starts = [float(r_grid[np.argmax(np.asarray(w, float) < 0.98)]) for w in width_curves
              if np.any(np.asarray(w, float) < 0.98)]
    return max(float(r_grid.min()), min(starts + [float(m) for m in marks if m > 0]) / 10)
