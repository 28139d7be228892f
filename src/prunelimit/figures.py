"""Figures of the paper and the pipeline's diagnostic plots, one function per figure.

Every figure uses :func:`apply_style` and is written atomically (temporary name, then renamed),
with the format taken from the destination's suffix (png, pdf, svg).
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_path  # noqa: E402
from .spectrum import Quadrature, smoothed_density  # noqa: E402


def apply_style() -> None:
    """One look for every figure: seaborn's white grid, paper context, colour-blind palette."""
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 150, "savefig.bbox": "tight", "axes.titlesize": "medium"})


def _save(fig: plt.Figure, path: str | os.PathLike) -> None:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)


def plot_hessian_spectrum(spectrum, path: str | os.PathLike, title: str = "", n_bins: int = 10000,
                          sigma2: float = 1e-5, floor: float = 1e-7) -> None:
    """Smoothed Hessian eigenvalue density on a log axis, with the Ritz nodes marked beneath it.

    ``spectrum``: an :class:`~prunelimit.hessian.SLQResult` or a :class:`~prunelimit.spectrum.Quadrature`.
    The density is the Gaussian-smoothed one of PyHessian and the official ``density_plot.py``
    (kernel variance ``sigma2 · max(1, λmax − λmin)``), floored at ``floor`` for the log axis as
    there. Nodes are drawn as ticks whose height grows with their quadrature weight.
    """
    q: Quadrature = spectrum.quadrature() if hasattr(spectrum, "quadrature") else spectrum
    settings = getattr(spectrum, "settings", {})
    grid, density = smoothed_density(q, n_bins=n_bins, sigma2=sigma2)
    apply_style()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.semilogy(grid, density + floor, lw=1.0, color="C0", label="smoothed density")
    keep = q.weights > 0
    heights = floor * 10 ** (1 + 2 * q.weights[keep] / q.weights[keep].max())  # 10·floor … 1000·floor
    ax.vlines(q.nodes[keep], floor, heights, colors="C3", lw=0.6, alpha=0.7, label="Ritz nodes")
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density (log scale)")
    ax.set_ylim(bottom=floor * 0.5)
    runs, iters = settings.get("n_runs"), settings.get("n_iter")
    detail = f"D = {q.dim:,}" + (f", {runs} runs × {iters} Lanczos steps" if runs and iters else "")
    ax.set_title(f"{title}\n{detail}" if title else detail)
    ax.text(0.98, 0.95, f"λmin = {q.lambda_min:.3g}\nλmax = {q.lambda_max:.3g}", transform=ax.transAxes,
            ha="right", va="top", fontsize="small")
    ax.legend(loc="upper center", fontsize="small", frameon=False)
    _save(fig, path)
