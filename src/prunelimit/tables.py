"""Tables of the paper, each written as .csv, .md and booktabs .tex from a pandas DataFrame."""

from __future__ import annotations

import os

import pandas as pd

from .io import atomic_path


def write_table(df: pd.DataFrame, csv: str | os.PathLike, md: str | os.PathLike, tex: str | os.PathLike | None = None,
                float_format: str = "{:.4g}") -> None:
    """Write ``df`` three ways (each file atomically)."""
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    shown = df.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else float_format.format(v))
    with atomic_path(md) as tmp:
        tmp.write_text(shown.to_markdown(index=False) + "\n")
    if tex is not None:
        with atomic_path(tex) as tmp:
            body = shown.to_latex(index=False, escape=True)  # booktabs rules (\toprule …) by default
            tmp.write_text(body)


def training_table(metrics: list[dict]) -> pd.DataFrame:
    """Per task and variant: architecture, size, the recipe actually used, accuracy, ε, time."""
    rows = []
    for m in metrics:
        t = m["train"]
        rows.append({
            "task": m["task"], "variant": m["variant"], "model": m["model"], "dataset": m["dataset"],
            "params": m["n_params"], "prunable": m["n_prunable"], "epochs": m["epochs_run"],
            "batch": t["batch_size"], "lr": t["lr"], "schedule": t["schedule"], "warmup": t["warmup_epochs"],
            "momentum": t["momentum"], "l1": t["l1"], "weight_decay": t["weight_decay"],
            "train_acc": m["train_acc"], "test_acc": m["test_acc"], "epsilon": m["loss_std"],
            "wall_time_s": m["wall_time_s"],
        })
    return pd.DataFrame(rows).sort_values(["task", "variant"]).reset_index(drop=True)


def total_variation(a, b, bins: int = 200) -> float:
    """TV distance ½·Σ|p − q| between the histograms of samples ``a`` and ``b`` on a common grid."""
    import numpy as np

    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    p = np.histogram(a, edges)[0] / len(a)
    q = np.histogram(b, edges)[0] / len(b)
    return 0.5 * float(np.abs(p - q).sum())


def tv_distance_table(runs: dict[str, dict[int, "object"]], bins: int = 200) -> pd.DataFrame:
    """Per task, every pair of seeds: TV distance of the weight histograms and of |w| histograms."""
    import itertools

    import numpy as np

    rows = []
    for task, by_seed in runs.items():
        for (s1, w1), (s2, w2) in itertools.combinations(sorted(by_seed.items()), 2):
            rows.append({"task": task, "seed_a": s1, "seed_b": s2, "n_weights": len(w1),
                         "tv_weights": total_variation(w1, w2, bins),
                         "tv_log_abs_weights": total_variation(np.log10(np.abs(w1) + 1e-12),
                                                               np.log10(np.abs(w2) + 1e-12), bins)})
    return pd.DataFrame(rows)
