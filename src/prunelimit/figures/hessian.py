"""Figures of the Hessian: paper Fig. 6 (the L1 norms of Hessian rows by weight magnitude) and the
smoothed SLQ spectral density, alone (the slq rule's plot) or of every task as panels, with the
exact eigenvalues' density where computed."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import matplotlib.pyplot as plt
import numpy as np

from ..io import load_npz
from ..spectrum import Quadrature, SLQResult, from_eigenvalues, load_exact, smoothed_density
from ..tables import by_task
from .style import COLORS, TASK_COLUMNS, apply_style, drawn_y, figure_legend, save_figure, task_panels


def plot_hessian_row_l1(rows: Mapping[str, Mapping[str, np.ndarray]], paths: Iterable[str | os.PathLike]) -> dict:
    """Paper Fig. 6: L1 norm of the Hessian row of the weight at each magnitude rank (log y).

    ``rows[task]`` holds the arrays of ``hessian_rows.npz`` (sparsities, l1_norms, zero_threshold).
    x: the weight's magnitude rank, as the % of prunable weights with smaller |w| (the sparsity
    level whose threshold weight it is). Rows below the zero threshold count as zero eigen-
    directions (f₀); they are drawn as triangles at the bottom of the axis when their norm is
    below it. Returns per task the drawn zero fraction and number of rows.
    """
    apply_style()
    fig, panels = task_panels(list(rows), panel=(3.4, 2.7))
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
        drawn[task] = {"zero_fraction": f0, "n_rows": int(norms.size), "zero_threshold": drawn_y(handles[-1])}
    figure_legend(fig, handles)
    save_figure(fig, *paths)
    return drawn


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

    ``spectrum``: an :class:`~prunelimit.spectrum.SLQResult` or a :class:`~prunelimit.spectrum.Quadrature`.
    The density is the Gaussian-smoothed one of PyHessian and the official ``density_plot.py``
    (kernel variance ``sigma2 · max(1, λmax − λmin)``), floored at ``floor`` for the log axis as
    there. Nodes are drawn as ticks whose height grows with their quadrature weight.
    """
    apply_style()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    _draw_spectrum(ax, spectrum, n_bins, sigma2, floor, title=title)
    ax.set_ylabel("density (log scale)")
    ax.legend(loc="upper center", fontsize="small", frameon=False)
    save_figure(fig, path)


def plot_hessian_spectra(spectra: Mapping[str, object], paths: Iterable[str | os.PathLike],
                         exact: Mapping[str, np.ndarray] | None = None, n_bins: int | Mapping[str, int] = 10000,
                         sigma2: float | Mapping[str, float] = 1e-5, floor: float = 1e-7) -> dict:
    """The SLQ spectral density of every task as panels (:func:`plot_hessian_spectrum`'s drawing),
    the exact eigenvalues' density overlaid where ``exact`` has the task. ``n_bins`` and ``sigma2``
    may be per task. Returns per task λmin, λmax and D as drawn in the panel."""
    apply_style()
    exact = exact or {}
    fig, panels = task_panels(list(spectra), panel=(3.6, 2.9))
    drawn, handles = {}, []
    for col, (task, (ax,)) in enumerate(panels.items()):
        bins = n_bins[task] if isinstance(n_bins, Mapping) else n_bins
        var = sigma2[task] if isinstance(sigma2, Mapping) else sigma2
        drawn[task] = _draw_spectrum(ax, spectra[task], int(bins), float(var), floor, exact=exact.get(task),
                                     title=task)
        handles += ax.get_lines() + list(ax.collections)
        if col % TASK_COLUMNS == 0:
            ax.set_ylabel("density (log scale)")
    figure_legend(fig, handles)
    save_figure(fig, *paths)
    return drawn


def draw_hessian_row_l1(inputs, params, outputs) -> dict:
    """Rule ``fig_hessian_row_l1``: Fig. 6 from each task's hessian_rows.npz."""
    return plot_hessian_row_l1(by_task(params.tasks, inputs.rows, load_npz), outputs)


def draw_hessian_spectrum(inputs, params, outputs) -> dict:
    """Rule ``fig_hessian_spectrum``: every task's SLQ spectrum (slq.npz), the exact eigenvalues (exact.npz) of
    ``params.exact_tasks`` beside them (:func:`plot_hessian_spectra`)."""
    return plot_hessian_spectra(by_task(params.tasks, inputs.slq, SLQResult.load), outputs,
                                exact=by_task(params.exact_tasks, inputs.exact, load_exact), n_bins=params.n_bins,
                                sigma2=params.sigma2)
