"""Figures of the paper and the pipeline's diagnostic plots, one module per family of figures.

Every figure uses :func:`~prunelimit.figures.style.apply_style` and is written atomically
(temporary name, then renamed), with the format taken from the destination's suffix (png, pdf,
svg). The paper's figures are small multiples: one panel (or one column of panels) per task, all
tasks in one file.

Each figure ``<name>`` is two functions of one module here:

- ``plot_<name>`` takes the stage outputs already loaded (dicts keyed by task, in the order the
  panels should appear), writes the figure to every path in ``paths`` and returns the numbers it
  drew, read back from the plotted artists (``{task: {name: value}}``), so tests can check that a
  figure shows its data. Conventions as everywhere: ``sparsity`` = fraction of prunable weights
  removed, ``density`` = fraction kept; every axis says which.
- ``draw_<name>(inputs, params, outputs)`` is the rule's side: it reads the rule's files
  (``inputs`` and ``params`` are Snakemake's named lists, read by attribute: ``inputs.curve``,
  ``params.tasks``), calls ``plot_<name>`` with them and ``outputs`` (the output paths) and returns
  what it returns.

The workflow's side is one entry of ``FIGURES`` in workflow/rules/report.smk: its inputs, params, report
labels, caption (reStructuredText) and ``entry`` ("prunelimit.figures.<module>:draw_<name>"). The rule
``fig_<name>`` it makes runs scripts/figure.py, which calls the entry inside
:func:`~prunelimit.runlog.rule_context` and logs the drawn numbers (:func:`summary_lines`); the report
shows the caption through workflow/report/figure.rst. Adding a figure is these two functions and that entry.
Modules here never import torch: figure rules run in the plot environment (tests/test_no_torch.py).

Where each figure is drawn:

- :mod:`.style`: the look, the panel grid of the small multiples, the shared legend, saving
- :mod:`.pruning_curves`: Fig. 3, ``pruning_curves``
- :mod:`.theory_vs_actual`: Fig. 5, ``theory_vs_actual``
- :mod:`.iterative_pruning`: Fig. 4, ``iterative_threshold`` (top), ``l2_vs_rare_gems`` (bottom)
- :mod:`.hessian`: Fig. 6, ``hessian_row_l1``; the SLQ spectra of all tasks, ``hessian_spectrum``
  (``draw_hessian_spectrum`` calls ``plot_hessian_spectra``; ``plot_hessian_spectrum`` is the slq rule's
  plot of one task)
- :mod:`.weight_magnitude`: Figs. 2 and 8, ``weight_distribution``; Fig. 7, ``magnitude_scaling``
- :mod:`.regime_map`: the regime map (beyond the paper), ``regime_map``
- :mod:`.lomp_vs_sota`: the appendix table against the OBS family, drawn, ``lomp_vs_sota``
"""

import json
import math
from collections.abc import Mapping

import matplotlib
import numpy as np

# files only, never a display; set here because this package runs before any of its modules
# imports pyplot
matplotlib.use("Agg")


def _rounded(value, digits: int):
    """``value`` as plain JSON-ready Python, every float rounded to ``digits`` significant digits."""
    if isinstance(value, Mapping):
        return {_key(k, digits): _rounded(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_rounded(v, digits) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{digits}g}")
    return value


def _key(key, digits: int):
    """A dict key JSON can write: a number rounded as the values are, anything but a plain scalar as text."""
    key = _rounded(key, digits) if isinstance(key, float | np.generic) else key
    return key if key is None or isinstance(key, str | int | float) else str(key)


def summary_lines(drawn, digits: int = 4) -> list[str]:
    """A figure's drawn numbers (what ``plot_<name>`` returns) for its rule's log: one line per task,
    ``task: {json}``, floats (in lists too) rounded to ``digits`` significant digits."""
    if not isinstance(drawn, Mapping):
        return [json.dumps(_rounded(drawn, digits), ensure_ascii=False)]
    return [f"{task}: {json.dumps(_rounded(numbers, digits), ensure_ascii=False)}" for task, numbers in drawn.items()]
