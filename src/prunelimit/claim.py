"""The claim test over training seeds: predicted against actual pruning limit, per seed and as mean ± sd.

One row per (task, training seed) from that model's prediction.json (theory rule), actual.json (its
one-shot sweep) and metrics.json (train rule), then two rows per task with the mean and the sample
standard deviation (ddof 1) over its seeds, and a verdict decided from the measured spread
(:func:`verdict`), never from a constant. Sparsity = fraction of prunable weights removed,
density = 1 − sparsity (the paper's unit, in which a miss near s = 1 shows: ``density_error``).

Beside the theory, the naive predictor: the share of prunable weights L1 has already driven below
|w| < 1e-3 (``small_weight_share`` of the train rule), with its own difference to the actual limit.
Torch-free (the table job imports it).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .io import PrunelimitError

SE_MULTIPLE = 2.0  # "agrees": the mean difference lies within this many standard errors of 0
# the numeric columns averaged over seeds (mean and sd rows)
SUMMARY_COLUMNS = ("predicted_sparsity", "predicted_at_eps_p10", "predicted_at_eps_p90", "actual_sparsity",
                   "difference", "predicted_density", "actual_density", "density_error", "naive_sparsity",
                   "naive_difference", "lower_sparsity", "upper_sparsity", "epsilon", "epsilon_p10", "epsilon_p90",
                   "zero_fraction", "unpruned_test_acc")


def _nan(value) -> float:
    return float("nan") if value is None else float(value)


def bounds_verdict(actual: float, lower: float, upper: float) -> str:
    if actual < lower:
        return "actual below lower bound"
    if actual > upper:
        return "actual above upper bound"
    return "within kinematic bounds"


def seed_row(task: str, seed: int, prediction: dict, actual: dict, metrics: dict) -> dict:
    """One model's claim test: prediction, ε band, actual limit, naive predictor, bounds."""
    if actual.get("task", task) != task or metrics.get("task", task) != task:
        raise PrunelimitError(f"claim test of {task} seed {seed}: files of another task "
                              f"({actual.get('task')}, {metrics.get('task')})")
    trained_seed = metrics.get("train", {}).get("seed", seed)
    if int(trained_seed) != int(seed):
        raise PrunelimitError(f"claim test of {task} seed {seed}: metrics.json is of training seed {trained_seed}")
    predicted, actual_s = float(prediction["predicted_sparsity"]), float(actual["actual_sparsity"])
    lower, upper = float(prediction["lower_sparsity"]), float(prediction["upper_sparsity"])
    band = prediction.get("epsilon_band") or {}
    naive = float(metrics["small_weight_share"])
    slq = prediction.get("slq", {})
    row = {
        "task": task, "seed": str(seed), "n_seeds": 1,
        "predicted_sparsity": predicted,
        "predicted_at_eps_p10": _nan(band.get("predicted_sparsity_at_p10")),
        "predicted_at_eps_p90": _nan(band.get("predicted_sparsity_at_p90")),
        "actual_sparsity": actual_s, "actual_criterion": actual.get("actual_criterion", ""),
    }
    for tol, value in actual.get("tolerance_sparsity", {}).items():
        row[f"actual_tol_{tol}"] = float(value)
    predicted_density, actual_density = 1.0 - predicted, 1.0 - actual_s
    row.update({
        "difference": predicted - actual_s,
        "predicted_density": predicted_density, "actual_density": actual_density,
        "density_error": (predicted_density - actual_density) / actual_density if actual_density > 0 else math.nan,
        "naive_sparsity": naive, "naive_difference": naive - actual_s,
        "theory_beats_naive": "yes" if abs(predicted - actual_s) < abs(naive - actual_s) else "no",
        "verdict": "",
        "lower_sparsity": lower, "upper_sparsity": upper, "bounds_verdict": bounds_verdict(actual_s, lower, upper),
        "epsilon": float(prediction["epsilon"]), "epsilon_p10": _nan(band.get("p10")),
        "epsilon_p90": _nan(band.get("p90")), "zero_fraction": float(prediction["zero_fraction"]),
        "slq_steps": "/".join(str(m) for m in slq.get("steps", [])),
        "slq_converged": {True: "yes", False: "no (step cap)", None: "n/a"}[slq.get("converged")],
        "official_smoothed_sparsity": _nan(prediction.get("official_smoothed", {}).get("predicted_sparsity")),
        "unpruned_test_acc": float(actual["dense_test_acc"]),
    })
    return row


def verdict(differences: np.ndarray, actual_sd: float) -> str:
    """Agreement of prediction and actual limit, judged from the per-seed differences alone.

    With n ≥ 2 seeds, mean d̄ and sample sd s of the differences (predicted − actual), standard
    error se = s/√n: "agrees" when |d̄| ≤ 2·se (the difference is not distinguishable from 0 at this
    many seeds), or when |d̄| is within the actual limit's own seed-to-seed sd (the prediction misses
    by less than another training seed's model would); otherwise the prediction lies above or below
    by |d̄|. Both yardsticks are measured by the run; with one seed there is none, and the verdict
    says so.
    """
    d = np.asarray(differences, np.float64)
    mean = float(d.mean())
    side = "above" if mean > 0 else "below"
    if d.size < 2:
        return f"one seed, no spread measured: prediction {side} actual by {abs(mean):.3f}"
    se = float(d.std(ddof=1)) / math.sqrt(d.size)
    if abs(mean) <= SE_MULTIPLE * se:
        return f"agrees: |mean difference| {abs(mean):.4f} <= {SE_MULTIPLE:g} se ({SE_MULTIPLE * se:.4f})"
    if abs(mean) <= actual_sd:
        return f"agrees: |mean difference| {abs(mean):.4f} <= the actual limit's seed sd ({actual_sd:.4f})"
    return (f"prediction {side} actual by {abs(mean):.4f} (> {SE_MULTIPLE:g} se = {SE_MULTIPLE * se:.4f} and > "
            f"the actual limit's seed sd {actual_sd:.4f})")


def _summary_rows(task: str, rows: list[dict]) -> list[dict]:
    df = pd.DataFrame(rows)
    n = len(rows)
    columns = [c for c in df.columns if c in SUMMARY_COLUMNS or c.startswith("actual_tol_")]
    mean = {"task": task, "seed": "mean", "n_seeds": n, **{c: float(df[c].mean()) for c in columns}}
    sd = {"task": task, "seed": "sd", "n_seeds": n,
          **{c: float(df[c].std(ddof=1)) if n > 1 else math.nan for c in columns}}
    beats = int((df["theory_beats_naive"] == "yes").sum())
    mean["theory_beats_naive"] = ("yes" if abs(mean["difference"]) < abs(mean["naive_difference"]) else "no") + \
        f" (per seed {beats}/{n})"
    mean["verdict"] = verdict(df["difference"].to_numpy(float), sd["actual_sparsity"] if n > 1 else 0.0)
    within = int((df["bounds_verdict"] == "within kinematic bounds").sum())
    mean["bounds_verdict"] = f"within kinematic bounds for {within}/{n} seeds"
    mean["slq_converged"] = f"{int((df['slq_converged'] == 'yes').sum())}/{n} converged"
    return [mean, sd]


def theory_vs_actual_table(runs: list[dict]) -> pd.DataFrame:
    """The paper's theoretical-vs-actual table, over training seeds.

    ``runs``: dicts with ``task``, ``seed`` and that model's ``prediction``, ``actual`` and ``metrics``
    (tasks in order, each task's seeds together). Per task: one row per seed, then a ``mean`` and an
    ``sd`` row (sample sd, ddof 1; blank with one seed) of every number, and on the mean row the
    verdict (:func:`verdict`), whether the theory beats the naive predictor on the mean (and on how
    many seeds), how many seeds' actual limits fall inside the kinematic bounds and how many SLQ runs
    converged. ``difference`` = predicted − actual sparsity; ``density_error`` = (predicted density −
    actual density) / actual density; ``naive_*`` the |w| < 1e-3 share and its difference.
    """
    if not runs:
        raise PrunelimitError("no claim-test runs to tabulate")
    by_task: dict[str, list[dict]] = {}
    for run in runs:
        by_task.setdefault(run["task"], []).append(
            seed_row(run["task"], int(run["seed"]), run["prediction"], run["actual"], run["metrics"]))
    rows = []
    for task, seed_rows in by_task.items():
        seeds = [r["seed"] for r in seed_rows]
        if len(set(seeds)) != len(seeds):
            raise PrunelimitError(f"claim test of {task}: seed listed twice in {seeds}")
        rows += seed_rows + _summary_rows(task, seed_rows)
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """The mean rows of :func:`theory_vs_actual_table` with their sd beside each number (for logs and the README)."""
    means = table[table["seed"] == "mean"].set_index("task")
    sds = table[table["seed"] == "sd"].set_index("task")
    out = means[["n_seeds", "verdict", "theory_beats_naive"]].copy()
    for col in ("predicted_sparsity", "actual_sparsity", "difference", "density_error", "naive_sparsity"):
        out[col] = means[col]
        out[f"{col}_sd"] = sds[col]
    return out.reset_index()
