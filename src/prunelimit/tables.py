"""Tables of the paper, each written as .csv, .md, booktabs .tex and an HTML page from a pandas DataFrame."""

from __future__ import annotations

import itertools
import os
from html import escape

import numpy as np
import pandas as pd

from .claim import bounds_verdict, verdict
from .io import PrunelimitError, atomic_path
from .methods import method
from .methods import names as method_names
from .spectrum import kernel_variance


def _formatted(df: pd.DataFrame, float_format: str) -> pd.DataFrame:
    """``df`` with float columns as text in ``float_format`` and blanks for NaN (the .md/.tex/.html look)."""
    shown = df.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else float_format.format(v))
    return shown


def write_table(df: pd.DataFrame, csv: str | os.PathLike, md: str | os.PathLike, tex: str | os.PathLike | None = None,
                *, html: str | os.PathLike | None = None, title: str = "", float_format: str = "{:.4g}") -> None:
    """Write ``df`` as .csv, .md, booktabs .tex and an HTML page titled ``title`` (the form the
    Snakemake report shows inline), each file atomically; ``tex`` and ``html`` only where given."""
    with atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    shown = _formatted(df, float_format)
    with atomic_path(md) as tmp:
        tmp.write_text(shown.to_markdown(index=False) + "\n")
    if tex is not None:
        with atomic_path(tex) as tmp:
            body = shown.to_latex(index=False, escape=True)  # booktabs rules (\toprule …) by default
            tmp.write_text(body)
    if html is not None:
        with atomic_path(html) as tmp:
            tmp.write_text(table_html(df, title, float_format))


def training_table(metrics: list[dict]) -> pd.DataFrame:
    """Per task and variant: architecture, size, the recipe actually used, the L1 regime it reached,
    accuracy, ε and time.

    The regime columns: ``l1_shrinkage`` = λ·Σ_t lr_t (how far L1 alone pulls a weight), the share
    of prunable weights with |w| < 1e-3 at the end and its net change over the last tenth of the
    epochs (equilibrium), the share of weights that never received a data gradient, and the share
    of weights that never received one and still have |w| ≥ 1e-3 at the end.
    """
    nan = float("nan")
    rows = []
    for m in metrics:
        t = m["train"]
        rows.append({
            "task": m["task"], "variant": m["variant"], "model": m["model"], "dataset": m["dataset"],
            "params": m["n_params"], "prunable": m["n_prunable"], "epochs": m["epochs_run"],
            "batch": t["batch_size"], "lr": t["lr"], "schedule": t["schedule"], "warmup": t["warmup_epochs"],
            "momentum": t["momentum"], "l1": t["l1"], "weight_decay": t["weight_decay"],
            "l1_shrinkage": m.get("l1_shrinkage", nan),
            "small_weight_share": m.get("small_weight_share", nan),
            "small_share_drift_last_tenth": _float_or_nan(m.get("small_weight_share_drift_last_tenth")),
            "never_updated_share": m.get("never_updated_share", nan),
            "never_updated_kept_share": m.get("never_updated_kept_share", nan),
            "train_acc": m["train_acc"], "test_acc": m["test_acc"], "epsilon": m["loss_std"],
            "wall_time_s": m["wall_time_s"],
        })
    return pd.DataFrame(rows).sort_values(["task", "variant"]).reset_index(drop=True)


def total_variation(a, b, bins: int = 200) -> float:
    """TV distance ½·Σ|p − q| between the histograms of samples ``a`` and ``b`` on a common grid."""

    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    p = np.histogram(a, edges)[0] / len(a)
    q = np.histogram(b, edges)[0] / len(b)
    return 0.5 * float(np.abs(p - q).sum())


def tv_distance_table(runs: dict[str, dict[int, object]], bins: int = 200) -> pd.DataFrame:
    """Per task, every pair of seeds: TV distance of the weight histograms and of |w| histograms."""


    rows = []
    for task, by_seed in runs.items():
        for (s1, w1), (s2, w2) in itertools.combinations(sorted(by_seed.items()), 2):
            rows.append({"task": task, "seed_a": s1, "seed_b": s2, "n_weights": len(w1),
                         "tv_weights": total_variation(w1, w2, bins),
                         "tv_log_abs_weights": total_variation(np.log10(np.abs(w1) + 1e-12),
                                                               np.log10(np.abs(w2) + 1e-12), bins)})
    return pd.DataFrame(rows)


def lomp_rows_from_sweep(task: str, curve: pd.DataFrame, sparsities: list[float], seed: int,
                         epochs: int | None = None) -> list[dict]:
    """LOMP's results at ``sparsities`` read from the task's one-shot sweep (``prune/<task>/curve.csv``).

    LOMP is the L1 model one-shot magnitude pruned without retraining, which is what the sweep
    evaluates at every grid point, by the same ranking (:func:`prunelimit.baselines.lomp` equals
    the sweep's row to the last digit: tests/test_baselines.py), so it is read, not recomputed.
    ``seed`` is the L1 model's training seed, ``epochs`` its training epochs. A sparsity off the
    sweep's grid is an error.
    """
    rows = []
    for s in sparsities:
        at = curve.loc[np.isclose(curve["sparsity"].to_numpy(dtype=float), float(s), rtol=0, atol=1e-9)]
        if at.empty:
            raise PrunelimitError(f"LOMP of {task} at sparsity {s:g}: the one-shot sweep has no grid point there "
                                  f"(choose baselines.sparsities on the prune.grid)")
        row = at.iloc[0]
        rows.append({"method": "lomp", "task": task, "sparsity": float(s), "seed": int(seed),
                     **{k: float(row[k]) for k in ("density", "test_acc", "test_loss", "train_acc", "train_loss")},
                     "kept": int(row["kept"]), "source": "one-shot sweep",
                     **({"training": f"{epochs} (the L1 model), no retraining"} if epochs is not None else {})})
    return rows


def _mean_sd_cell(values) -> str:
    """Accuracies (fractions) as a cell in %: "mean ± sd (n)" (sample sd, ddof 1), "x (1)" for one, "" for none."""
    pct = 100.0 * np.asarray(values, dtype=float)
    if len(pct) == 0:
        return ""
    if len(pct) == 1:
        return f"{pct[0]:.2f} (1)"
    return f"{pct.mean():.2f} ± {pct.std(ddof=1):.2f} ({len(pct)})"


def lomp_vs_baselines_table(results: list[dict], dense_acc: dict[str, float] | None = None,
                            methods: list[str] | None = None) -> pd.DataFrame:
    """LOMP vs Rare Gems, IMP, Smart-Ratio: top-1 test accuracy (%) per task and sparsity.

    ``results`` are the baseline JSON dicts (keys method, task, sparsity, seed, test_acc);
    ``dense_acc`` maps task → the dense model's test accuracy. Cells read "mean ± sd (n)" over
    seeds (sample sd, ddof 1, over the n seeds; "mean (1)" for a single run). LOMP's seeds are the
    training seeds of its L1 models. After each task's sparsities, a "training" row states what each
    method trained, in epochs of the task's recipe (the results' ``training``), so an unequal budget
    shows.
    """
    # the paper's column order, the registry's (torch-free: table jobs run without torch)
    labels = {name: method(name).label for name in method_names("baselines")}

    present = set(methods) if methods else {r["method"] for r in results}
    methods = [m for m in labels if m in present] + sorted(present - set(labels))
    if not results:
        raise PrunelimitError("no baseline results to tabulate")
    df = pd.DataFrame(results)
    missing = {"method", "task", "sparsity", "seed", "test_acc"} - set(df.columns)
    if missing:
        raise PrunelimitError(f"baseline results lack keys {sorted(missing)}")

    rows = []
    for (task, sparsity), group in df.groupby(["task", "sparsity"], sort=True):
        row = {"task": task, "sparsity_%": f"{100 * sparsity:g}", "density_%": f"{100 * (1 - sparsity):g}"}
        if dense_acc is not None:
            row["dense"] = f"{100 * dense_acc[task]:.2f}" if task in dense_acc else ""
        for m in methods:
            row[labels.get(m, m)] = _mean_sd_cell(group.loc[group["method"] == m, "test_acc"])
        rows.append(row)
    if "training" in df.columns:
        for task, group in df.groupby("task", sort=True):
            row = {"task": task, "sparsity_%": "training epochs", "density_%": ""}
            if dense_acc is not None:
                row["dense"] = ""
            for m in methods:
                runs = group.loc[group["method"] == m]
                cell = "; ".join(sorted(runs["training"].dropna().unique()))
                if "rounds" in runs and runs["rounds"].notna().any():  # IMP: its rounds to each target
                    by_target = runs.dropna(subset=["rounds"]).groupby("sparsity")["rounds"].max()
                    cell += ", rounds " + " / ".join(f"{int(r)}" for r in by_target) + " to " + \
                        " / ".join(f"{100 * s:g}%" for s in by_target.index)
                row[labels.get(m, m)] = cell
            rows.append(row)
    return pd.DataFrame(rows)


def by_task(tasks: list[str], paths: list[str], load) -> dict:
    """task → ``load(path)`` for parallel lists of tasks and files (the rules' per-task inputs)."""

    tasks, paths = list(tasks), list(paths)
    if len(tasks) != len(paths):
        raise PrunelimitError(f"{len(paths)} input files for {len(tasks)} tasks: {paths}")
    return {task: load(path) for task, path in zip(tasks, paths)}


def bounds_gap_table(predictions: dict[str, dict]) -> pd.DataFrame:
    """Paper's bounds-gap table: kinematic lower and upper bound on the sparsity and their gap Δ per task.

    ``predictions`` maps task → prediction.json. Beside the SLQ numbers, the same bounds from the
    exact Hessian spectrum (same ε, R(s) and f₀) where it was computed, and the SLQ − exact
    difference of the predicted threshold, so the quadrature error is visible (NaN elsewhere).
    All values are sparsities (fraction of prunable weights removed).
    """
    rows = []
    nan = float("nan")
    for task, p in predictions.items():
        exact = p.get("exact", {}).get("same_zero_mass", {})
        rows.append({
            "task": task, "D": int(p["D"]), "epsilon": float(p["epsilon"]), "zero_fraction": float(p["zero_fraction"]),
            "eta": float(p["eta"]), "lower_sparsity": float(p["lower_sparsity"]),
            "predicted_sparsity": float(p["predicted_sparsity"]), "upper_sparsity": float(p["upper_sparsity"]),
            "gap": float(p["gap"]),
            "exact_lower_sparsity": float(exact.get("lower_sparsity", nan)),
            "exact_predicted_sparsity": float(exact.get("predicted_sparsity", nan)),
            "exact_upper_sparsity": float(exact.get("upper_sparsity", nan)),
            "exact_gap": float(exact.get("gap", nan)),
            "slq_minus_exact": float(p["exact"]["slq_minus_exact"]) if "exact" in p else nan,
        })
    return pd.DataFrame(rows)


def _float_or_nan(value) -> float:
    return float("nan") if value is None else float(value)


def slq_table(runs: dict[str, dict]) -> pd.DataFrame:
    """Paper's SLQ hyperparameter table: runs, Lanczos iterations, density bins and σ² per task.

    ``runs`` maps task → {"settings": the slq.npz settings (how the spectrum was actually made),
    "n_bins": …, "sigma2": … (the config's smoothing of that task), "lambda_min", "lambda_max",
    "steps" (Lanczos steps each run actually took)}. ``sigma2`` is the config factor; the kernel
    variance used is ``sigma2_kernel`` = sigma2 · max(1, λmax − λmin) (PyHessian's scaling).
    ``iterations`` are the Lanczos steps of the longest run (the step count doubles from the
    configured start until the prediction is stable), ``min_steps_taken`` those of the shortest.
    """
    rows = []
    for task, r in runs.items():
        s = r["settings"]
        lo, hi = float(r["lambda_min"]), float(r["lambda_max"])
        steps = [int(x) for x in r["steps"]]
        rows.append({
            "task": task, "params": s.get("params", ""), "D": int(s["dim"]), "n_samples": s.get("n_samples"),
            "runs": int(s["n_runs"]), "iterations": max(steps), "min_steps_taken": min(steps),
            "bins": int(r["n_bins"]), "sigma2": float(r["sigma2"]),
            "sigma2_kernel": kernel_variance(float(r["sigma2"]), lo, hi), "lambda_min": lo, "lambda_max": hi,
            "hvp_products": s.get("products"), "seconds": s.get("elapsed_s"),
        })
    return pd.DataFrame(rows)


def table_html(df: pd.DataFrame, title: str, float_format: str = "{:.4g}") -> str:
    """A self-contained HTML page showing ``df`` (numbers as in the .md/.tex), for the Snakemake report."""
    shown = _formatted(df, float_format)
    body = shown.to_html(index=False, border=0, classes="table", na_rep="")
    style = ("body{font-family:sans-serif;font-size:13px;margin:1em}"
             "table{border-collapse:collapse}th,td{padding:3px 8px;text-align:right;white-space:nowrap}"
             "th{border-bottom:2px solid #444}tr:nth-child(even){background:#f3f3f3}"
             "td:first-child,th:first-child{text-align:left}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{style}</style></head><body>\n<h3>{escape(title)}</h3>\n{body}\n</body></html>\n")


def regime_map_table(points: list[dict]) -> pd.DataFrame:
    """The regime map: one row per (task, L1 multiplier) model, predicted against actual threshold.

    ``points``: dicts with ``task``, ``multiplier`` (λ as a multiple of the task's own l1) and that
    model's ``metrics`` (metrics.json of the train rule), ``prediction`` (prediction.json of the
    theory rule) and ``actual`` (actual.json of the sweep rule). Sparsities (fraction removed).

    ``predicted_sparsity`` and its kinematic bounds come from the exact spectrum where the theory
    rule computed one (``prediction['exact']['same_zero_mass']``: same ε, R(s) and f₀ as SLQ), else
    from SLQ; ``spectrum`` says which, and ``slq_predicted_sparsity`` keeps the SLQ value either way.
    ``actual_sparsity`` is the official criterion (tolerance 0 where it is undefined, as
    ``actual_criterion`` says), ``actual_tol_*`` the tolerance thresholds, all read from actual.json.
    ``dense_test_acc`` is the test accuracy of the task's multiplier-0 model (trained without L1),
    ``test_acc`` the model's own.
    """

    dense_acc = {p["task"]: float(p["metrics"]["test_acc"]) for p in points if float(p["multiplier"]) == 0.0}
    rows = []
    for p in points:
        task, m, pred, act = p["task"], p["metrics"], p["prediction"], p["actual"]
        if task not in dense_acc:
            raise PrunelimitError(f"regime map of {task}: no multiplier-0 (dense) point to compare accuracy with")
        if act.get("task", task) != task or act.get("variant", m["variant"]) != m["variant"]:
            raise PrunelimitError(f"regime map of {task}/{m['variant']}: actual.json is of "
                                  f"{act.get('task')}/{act.get('variant')}")
        exact = pred.get("exact", {}).get("same_zero_mass")
        source = exact if exact is not None else pred
        predicted, actual = float(source["predicted_sparsity"]), float(act["actual_sparsity"])
        lower, upper = float(source["lower_sparsity"]), float(source["upper_sparsity"])
        slq = pred.get("slq", {})
        row = {
            "task": task, "l1_multiplier": float(p["multiplier"]), "l1": float(m["train"]["l1"]),
            "l1_shrinkage": float(m["l1_shrinkage"]), "small_weight_share": float(m["small_weight_share"]),
            "small_share_drift_last_tenth": _float_or_nan(m.get("small_weight_share_drift_last_tenth")),
            "dense_test_acc": dense_acc[task], "test_acc": float(m["test_acc"]),
            "epsilon": float(pred["epsilon"]), "zero_fraction": float(pred["zero_fraction"]), "D": int(pred["D"]),
            "spectrum": "exact" if exact is not None else "SLQ",
            "predicted_sparsity": predicted, "lower_sparsity": lower, "upper_sparsity": upper,
            "slq_predicted_sparsity": float(pred["predicted_sparsity"]),
            "slq_converged": {True: "yes", False: "no (step cap)", None: "n/a"}[slq.get("converged")],
            "actual_sparsity": actual, "actual_criterion": act.get("actual_criterion", ""),
        }
        for tol, value in act.get("tolerance_sparsity", {}).items():
            row[f"actual_tol_{tol}"] = float(value)
        row.update({"difference": predicted - actual, "verdict": verdict([predicted - actual], 0.0),
                    "bounds_verdict": bounds_verdict(actual, lower, upper)})
        rows.append(row)
    return pd.DataFrame(rows)


# Published one-shot accuracies (%) of MLPNet on MNIST (dense 93.97), the mean of five runs in the CBS authors'
# table (Yu et al., ICML 2022, Table 1), keyed by (model, dataset): the paper preset's table shows them beside ours.
PUBLISHED_ONESHOT = {
    ("mlpnet", "mnist"): {
        "source": "CBS (Yu et al. 2022), Table 1",
        "dense": 93.97,
        "accuracy": {0.9: {"mp": 90.30, "wf": 91.69, "cbs": 93.14},
                     0.95: {"mp": 83.64, "wf": 85.54, "cbs": 88.92},
                     0.98: {"mp": 32.25, "wf": 38.26, "cbs": 55.45}},
    },
}


UNPRUNED_COLUMN = {"dense": "dense", "l1": "L1 model"}  # the unpruned starting models' accuracy


def oneshot_rows(runs: list[dict]) -> tuple[list[dict], dict[str, dict[str, list[float]]]]:
    """The rows of the oneshot rule's runs (``oneshot/<task>/<start>_seed<n>.json``, loaded) and each unpruned
    starting model's test accuracy, task → start → one per seed: what the lomp_vs_sota table and figure read."""
    unpruned: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        unpruned.setdefault(run["task"], {}).setdefault(run["start"], []).append(run["unpruned_test_acc"])
    return [row for run in runs for row in run["rows"]], unpruned


def oneshot_column(name: str, start: str) -> str:
    """The table column (and figure label) of one-shot method ``name`` applied to the ``start`` model."""
    if name == "mp" and start == "l1":
        return "LOMP (MP, L1)"
    return f"{method(name).label} ({start})"


def lomp_vs_sota_table(results: list[dict], unpruned: dict[str, dict[str, list[float]]], methods: list[str],
                       starts: list[str], tasks: dict[str, tuple[str, str]] | None = None) -> pd.DataFrame:
    """LOMP against MP, WF, CBS and CHITA: top-1 test accuracy (%) per task and sparsity, one column per
    (method, starting model), "mean ± sd (n)" over the training seeds (n of them).

    ``results``: rows of :func:`prunelimit.baselines.oneshot_compare.compare_oneshot` with ``task``, ``start``
    and ``seed`` added; ``unpruned``: task → start → the unpruned models' test accuracies (one per seed), the
    "dense" and "L1 model" columns;
    ``tasks``: task → (model, dataset), which adds the published columns where :data:`PUBLISHED_ONESHOT` has
    that pair. After each task's sparsities, two rows give each column's pruning time (median over the
    sparsities, mean over seeds) and the shared per-sample-gradient time."""
    if not results:
        raise PrunelimitError("no one-shot results to tabulate")
    df = pd.DataFrame(results)
    missing = {"method", "start", "task", "sparsity", "seed", "test_acc", "wall_time_s", "gradient_time_s"} - \
        set(df.columns)
    if missing:
        raise PrunelimitError(f"one-shot results lack keys {sorted(missing)}")
    columns = [(m, s) for s in starts for m in methods]
    rows = []
    for task, by_task in df.groupby("task", sort=False):
        published = PUBLISHED_ONESHOT.get((tasks or {}).get(task))
        for sparsity, group in by_task.groupby("sparsity", sort=True):
            row = {"task": task, "sparsity_%": f"{100 * sparsity:g}",
                   **{UNPRUNED_COLUMN[s]: _mean_sd_cell(unpruned.get(task, {}).get(s, [])) for s in starts}}
            for m, s in columns:
                row[oneshot_column(m, s)] = _mean_sd_cell(
                    group.loc[(group["method"] == m) & (group["start"] == s), "test_acc"])
            if published is not None:
                at = published["accuracy"].get(round(float(sparsity), 6), {})
                for m in methods:
                    if any(m in acc for acc in published["accuracy"].values()):
                        row[f"{method(m).label} published"] = f"{at[m]:.2f}" if m in at else ""
            rows.append(row)
        for what, key in (("prune time (s)", "wall_time_s"), ("gradients (s)", "gradient_time_s")):
            row = {"task": task, "sparsity_%": what, **{UNPRUNED_COLUMN[s]: "" for s in starts}}
            for m, s in columns:
                runs = by_task.loc[(by_task["method"] == m) & (by_task["start"] == s)]
                seconds = runs.groupby("seed")[key].median().mean() if len(runs) else float("nan")
                row[oneshot_column(m, s)] = "" if not np.isfinite(seconds) else f"{seconds:.3g}"
            rows.append(row)
        if published is not None:
            rows.append({"task": task, "sparsity_%": "published: " + published["source"],
                         "dense": f"{published['dense']:.2f}"})
    return pd.DataFrame(rows).fillna("")
