"""Figures of the paper and the pipeline's diagnostic plots, one function per figure.

Every figure uses :func:`~prunelimit.figures.style.apply_style` and is written atomically
(temporary name, then renamed), with the format taken from the destination's suffix (png, pdf,
svg). The paper's figures are small multiples: one panel (or one column of panels) per task, all
tasks in one file.

Each ``plot_*`` function takes the stage outputs already loaded (dicts keyed by task, in the
order the panels should appear), writes the figure to every path in ``paths`` and returns the
numbers it drew, read back from the plotted artists (``{task: {name: value}}``), so tests can
check that a figure shows its data. Conventions as everywhere: ``sparsity`` = fraction of
prunable weights removed, ``density`` = fraction kept; every axis says which.

Where each figure is drawn (rule ``fig_<name>`` calls ``plot_<name>``):

- :mod:`.style`: the look, the panel grid of the small multiples, the shared legend, saving
- :mod:`.pruning_curves`: Fig. 3, ``plot_pruning_curves``
- :mod:`.theory_vs_actual`: Fig. 5, ``plot_theory_vs_actual``
- :mod:`.iterative_pruning`: Fig. 4, ``plot_iterative_threshold`` (top), ``plot_l2_vs_rare_gems`` (bottom)
- :mod:`.hessian`: Fig. 6, ``plot_hessian_row_l1``; the SLQ spectra, ``plot_hessian_spectrum`` (one task,
  the slq rule) and ``plot_hessian_spectra`` (all tasks)
- :mod:`.weight_magnitude`: Figs. 2 and 8, ``plot_weight_distribution``; Fig. 7, ``plot_magnitude_scaling``
- :mod:`.regime_map`: the regime map (beyond the paper), ``plot_regime_map``
"""

import matplotlib

# files only, never a display; set here because this package runs before any of its modules
# imports pyplot
matplotlib.use("Agg")
