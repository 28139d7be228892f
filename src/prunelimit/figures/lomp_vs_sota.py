"""LOMP against the optimal-brain-surgeon family (the paper's appendix table, drawn): one-shot test accuracy
against sparsity, one line per method and starting model, the predicted limit of the L1 model marked."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from ..io import load_json
from ..tables import by_task, oneshot_column, oneshot_rows
from . import style

START_STYLE = {"l1": "-", "dense": "--"}  # L1-trained model solid, dense model dashed
METHOD_COLOR = {"mp": "C0", "wf": "C1", "cbs": "C2", "chita": "C4"}


def plot_lomp_vs_sota(results: pd.DataFrame, predicted: Mapping[str, float],
                      unpruned: Mapping[str, Mapping[str, list[float]]], paths: Iterable[str | os.PathLike]) -> dict:
    """Per task: test accuracy (%) of each (method, start) at each sparsity, mean over the training seeds with
    their sd as error bars; the unpruned models' accuracy (``unpruned``: task → start → one per seed) dotted;
    the predicted limit (``predicted``: task → the L1 model's predicted sparsity) a vertical line. Returns
    ``{task: {column: [mean accuracy per sparsity]}}`` read back from the drawn lines, with ``"predicted"`` the
    line's x and each unpruned model's line its y."""
    style.apply_style()
    tasks = list(dict.fromkeys(results["task"]))
    fig, panels = style.task_panels(tasks, panel=(3.6, 2.8))
    drawn, handles, labelled = {}, [], set()
    for col, (task, (ax,)) in enumerate(panels.items()):
        by_task, drawn[task] = results.loc[results["task"] == task], {}
        for (name, start), runs in by_task.groupby(["method", "start"], sort=False):
            stats = runs.groupby("sparsity")["test_acc"].agg(["mean", "std"]).sort_index()
            label = oneshot_column(name, start)
            bars = ax.errorbar(stats.index, 100 * stats["mean"], yerr=100 * stats["std"].fillna(0.0),
                               ls=START_STYLE.get(start, ":"), color=METHOD_COLOR.get(name), marker="o", ms=3,
                               lw=1.4 if start == "l1" else 1.1, capsize=2, label=label)
            drawn[task][label] = list(bars.lines[0].get_ydata())
            if label not in labelled:
                handles.append(bars)
                labelled.add(label)
        for start, accs in unpruned.get(task, {}).items():
            label = f"{'dense' if start == 'dense' else 'L1'} model, unpruned"
            line = ax.axhline(100 * float(np.mean(accs)), color="0.4" if start == "dense" else "0.7", ls=":", lw=1,
                              label=label)
            drawn[task][label] = style.drawn_y(line)
            if label not in labelled:
                handles.append(line)
                labelled.add(label)
        if task in predicted:
            mark = ax.axvline(float(predicted[task]), color=style.COLORS["predicted"], lw=1.2,
                              label="predicted limit (L1 model)")
            drawn[task]["predicted"] = style.drawn_x(mark)
            if "predicted" not in labelled:
                handles.append(mark)
                labelled.add("predicted")
        ax.set_xlabel(style.SPARSITY)
        ax.set_ylim(0, 100)
        if col % style.TASK_COLUMNS == 0:
            ax.set_ylabel("test accuracy (%), no retraining")
    style.figure_legend(fig, handles, ncol=4)
    style.save_figure(fig, *paths)
    return drawn


def draw_lomp_vs_sota(inputs, params, outputs) -> dict:
    """Rule ``fig_lomp_vs_sota``: every one-shot run's JSON (``inputs.results``) and the L1 model's predicted
    limit of each task (``inputs.prediction``, one per ``params.tasks``)."""
    rows, unpruned = oneshot_rows([load_json(path) for path in inputs.results])
    predicted = {task: prediction["predicted_sparsity"]
                 for task, prediction in by_task(params.tasks, inputs.prediction, load_json).items()}
    return plot_lomp_vs_sota(pd.DataFrame(rows), predicted, unpruned, outputs)
