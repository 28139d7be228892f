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
