"""The table rules' side: each table ``<name>`` read from its rule's files and built, ``<name>_from_files``.

Each function here is the entry of one table of ``TABLES`` in workflow/rules/report.smk
("prunelimit.table_inputs:<name>_from_files"): it takes the rule's ``inputs`` and ``params`` (Snakemake's
named lists, read by attribute: ``inputs.metrics``, ``params.tasks``), loads the stage outputs they name,
builds the table with its builder in :mod:`prunelimit.tables` (:mod:`prunelimit.claim` for theory vs actual)
and returns it (a pandas DataFrame). It writes no file: the rule ``table_<name>`` runs scripts/table.py,
which calls the entry inside :func:`~prunelimit.runlog.rule_context` and writes the table as .csv, .md,
booktabs .tex and the report's HTML page (:func:`~prunelimit.tables.write_table`). Where a table's numbers
are worth a line in the rule's log (the claim test's verdicts, the regime map's points), the entry logs them
through the ``prunelimit`` logger, which rule_context sends to the log file.

Torch-free, like everything the plot environment runs (tests/test_no_torch.py): model weights are read by
:mod:`prunelimit.statedict`.
"""

from __future__ import annotations

import logging

import pandas as pd

from .claim import summary, theory_vs_actual_table
from .io import load_csv, load_json
from .spectrum import SLQResult
from .statedict import prunable_weights
from .tables import (
    bounds_gap_table,
    by_task,
    lomp_rows_from_sweep,
    lomp_vs_baselines_table,
    lomp_vs_sota_table,
    oneshot_rows,
    regime_map_table,
    slq_table,
    training_table,
    tv_distance_table,
)

log = logging.getLogger("prunelimit")


def training_from_files(inputs, params) -> pd.DataFrame:
    """Table ``training``: every run's metrics.json (``inputs.metrics``)."""
    return training_table([load_json(path) for path in inputs.metrics])


def tv_distance_from_files(inputs, params) -> pd.DataFrame:
    """Table ``tv_distance``: per task of ``params.tasks``, the weights of its reference L1 model
    (``inputs.reference``, training seed ``params.base_seed``) and of its reseeded ones (``inputs.reseeded``,
    task-major, one per seed of ``params.seeds``), histogrammed in ``params.bins`` bins."""
    n_seeds = len(params.seeds)
    runs = {}
    for i, task in enumerate(params.tasks):
        runs[task] = {params.base_seed: prunable_weights(inputs.reference[i])}
        for j, seed in enumerate(params.seeds):
            runs[task][seed] = prunable_weights(inputs.reseeded[i * n_seeds + j])
    return tv_distance_table(runs, bins=params.bins)


def lomp_vs_baselines_from_files(inputs, params) -> pd.DataFrame:
    """Table ``lomp_vs_baselines``: the baseline runs' JSON (``inputs.results``), LOMP's rows read from each
    claim seed's one-shot sweep (``inputs.lomp_curves``, one per (task, seed) of ``params.lomp``) at
    ``params.sparsities``, and the dense models' metrics (``inputs.dense``, possibly none)."""
    results = [load_json(path) for path in inputs.results]
    lomp_runs = zip(params.lomp["tasks"], params.lomp["seeds"], inputs.lomp_curves, strict=True)
    for task, seed, curve in lomp_runs:  # LOMP: the sweeps' rows, one per claim seed
        results += lomp_rows_from_sweep(task, load_csv(curve), params.sparsities, seed, params.lomp_epochs[task])
    dense = {m["task"]: m["test_acc"] for m in map(load_json, inputs.dense)}
    return lomp_vs_baselines_table(results, dense or None, methods=params.methods)


def lomp_vs_sota_from_files(inputs, params) -> pd.DataFrame:
    """Table ``lomp_vs_sota``: every one-shot run's JSON (``inputs.results``); ``params.methods``,
    ``params.starts`` and ``params.model_dataset`` (task → (model, dataset), for the published columns)."""
    runs = [load_json(path) for path in inputs.results]
    rows, unpruned = oneshot_rows(runs)
    table = lomp_vs_sota_table(rows, unpruned, params.methods, params.starts, tasks=params.model_dataset)
    log.info("%d one-shot runs, %d rows", len(runs), len(table))
    return table


def regime_map_from_files(inputs, params) -> pd.DataFrame:
    """Table ``regime_map``: per map point (``params.tasks`` and ``params.multipliers``, parallel to the
    files), its model's metrics.json, prediction.json and actual.json; logs one line per point."""
    files = zip(params.tasks, params.multipliers, inputs.metrics, inputs.prediction, inputs.actual, strict=True)
    table = regime_map_table([{"task": task, "multiplier": mult, "metrics": load_json(metrics),
                               "prediction": load_json(prediction), "actual": load_json(actual)}
                              for task, mult, metrics, prediction, actual in files])
    for row in table.itertuples():
        log.info("%s x%g: shrinkage %.4g, |w|<1e-3 share %.3f, acc %.4f: predicted %.4f (%s) [%.4f, %.4f], "
                 "actual %.4f (%s)", row.task, row.l1_multiplier, row.l1_shrinkage, row.small_weight_share,
                 row.test_acc, row.predicted_sparsity, row.spectrum, row.lower_sparsity, row.upper_sparsity,
                 row.actual_sparsity, row.actual_criterion)
    return table


def bounds_gap_from_files(inputs, params) -> pd.DataFrame:
    """Table ``bounds_gap``: each task's prediction.json (``inputs.prediction``, one per ``params.tasks``)."""
    return bounds_gap_table(by_task(params.tasks, inputs.prediction, load_json))


def theory_vs_actual_from_files(inputs, params) -> pd.DataFrame:
    """Table ``theory_vs_actual`` (the claim test): per (task, seed) of ``params.tasks`` and ``params.seeds``,
    that model's prediction.json, actual.json and metrics.json; logs each task's mean ± sd and verdict."""
    files = zip(params.tasks, params.seeds, inputs.prediction, inputs.actual, inputs.metrics, strict=True)
    runs = [{"task": task, "seed": seed, "prediction": load_json(pred), "actual": load_json(act),
             "metrics": load_json(met)} for task, seed, pred, act, met in files]
    table = theory_vs_actual_table(runs)
    for row in summary(table).itertuples():
        log.info("%s (%d seeds): predicted %.4f ± %.4f, actual %.4f ± %.4f, difference %+.4f ± %.4f; naive %.4f; %s",
                 row.task, row.n_seeds, row.predicted_sparsity, row.predicted_sparsity_sd, row.actual_sparsity,
                 row.actual_sparsity_sd, row.difference, row.difference_sd, row.naive_sparsity, row.verdict)
    return table


def slq_from_files(inputs, params) -> pd.DataFrame:
    """Table ``slq``: each task's slq.npz (``inputs.slq``, one per ``params.tasks``) with the config's
    smoothing of that task (``params.n_bins``, ``params.sigma2``: task → value)."""
    runs = {}
    for task, result in by_task(params.tasks, inputs.slq, SLQResult.load).items():
        q = result.quadrature()
        runs[task] = {"settings": result.settings, "steps": result.steps, "n_bins": params.n_bins[task],
                      "sigma2": params.sigma2[task], "lambda_min": q.lambda_min, "lambda_max": q.lambda_max}
    return slq_table(runs)
