"""The training and pruning rules' entry points: from the files a rule reads to the files it writes.

One function per rule, called by its script in ``scripts/`` (the curvature and theory rules' entries
are in :mod:`prunelimit.stages`): :func:`train_task` (rule ``train``), :func:`sweep_task` (``sweep``,
``sweep_dense``), :func:`iterative_task` (``iterative``), :func:`baseline_task` (``baseline``,
``imp``) and :func:`oneshot_task` (``oneshot``). Each loads its inputs onto ``device``, calls the
library and writes its outputs atomically (prunelimit.io); it returns what it wrote, for the log.
"""

from __future__ import annotations

import os

from .baselines import run_baseline, run_imp_trajectory
from .baselines.oneshot_compare import compare_oneshot
from .checkpoint import read_state_dict
from .io import load_json, save_json
from .prune import CURVE_COLUMNS, iterative_prune, retrain_config, save_rows_csv, sweep_and_threshold
from .sections import Section
from .settings import HessianSettings, IterativeSettings, PruneSettings, TheorySettings
from .stages import load_data, load_task, predict_from_model
from .train import load_trained, train_and_save

ITERATIVE_COLUMNS = ["round", "arm", "sparsity", "theoretical_sparsity", "test_acc"]


def train_task(*, spec: dict, data_path, model_path, metrics_path, device: str = "cpu",
               checkpoint: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Rule ``train``: train one task variant (``spec``: :func:`prunelimit.config.task_spec`), resuming from
    ``checkpoint`` after a kill; writes the model and metrics.json and returns the metrics."""
    data, _ = load_data(data_path, device)
    return train_and_save(spec, data, model_path, metrics_path, checkpoint=checkpoint, progress=progress)


def sweep_task(*, model_path, metrics_path, data_path, curve_path, actual_path, prune_settings: PruneSettings,
               device: str = "cpu", progress: bool = True) -> dict:
    """Rule ``sweep``: one-shot magnitude pruning over the grid and the actual thresholds; writes the
    curve (CSV) and actual.json and returns the latter."""
    model, meta, data = load_task(model_path, metrics_path, data_path, device)
    curve, actual = sweep_and_threshold(model, data, prune_settings, train_every=prune_settings.train_every,
                                        progress=progress)
    actual.update(task=meta["task"], variant=meta["variant"], model_test_acc=meta["test_acc"])
    save_rows_csv(curve, curve_path, CURVE_COLUMNS)
    save_json(actual, actual_path)
    return actual


def iterative_task(*, model_path, metrics_path, data_path, out_path, iterative_settings: IterativeSettings,
                   hessian_settings: HessianSettings, theory_settings: TheorySettings, device: str = "cpu",
                   progress: bool = True) -> list[dict]:
    """Rule ``iterative``: predict, prune, retrain, repeat, in two arms from the same trained model, without
    and with L2 during retraining (the paper's iteration figure); writes and returns one row per round."""
    data, device = load_data(data_path, device)
    rows = []
    for arm, weight_decay in (("no_l2", 0.0), ("l2", float(iterative_settings.l2))):
        model, meta = load_trained(model_path, metrics_path, device)
        l1 = float(meta["train"]["l1"])  # λ as the run resolved it from the task's shrinkage target
        retrain = retrain_config(meta["train"], epochs=iterative_settings.retrain_epochs, weight_decay=weight_decay)

        def predict(m, l1=l1):
            return predict_from_model(m, data, hessian_settings=hessian_settings, theory_settings=theory_settings,
                                      l1=l1)

        for row in iterative_prune(model, data, predict, rounds=iterative_settings.rounds, retrain=retrain,
                                   progress=progress):
            rows.append({"round": row.pop("round"), "arm": arm, **row})
    save_rows_csv(rows, out_path, ITERATIVE_COLUMNS)
    return rows


def baseline_task(*, method: str, spec: dict, data_path, out_paths: list, sparsities: list[float], seed: int,
                  options: Section, device: str = "cpu", dense: tuple | None = None,
                  progress: bool = True) -> list[dict]:
    """Rules ``baseline`` and ``imp``: a baseline method on task ``spec`` with ``seed``, one result file per
    sparsity (``out_paths`` in ``sparsities`` order). IMP runs one trajectory through every sparsity;
    ``dense`` = (model path, metrics path) of the train rule's dense model when the trajectory takes it
    over (imp_takes_over_dense). Every other method runs once per sparsity. Returns the results."""
    data, _ = load_data(data_path, device)
    if method == "imp":
        trained = (read_state_dict(dense[0]), load_json(dense[1])["train"]) if dense else None
        results = run_imp_trajectory(spec, data, sparsities, seed, options, trained_dense=trained, progress=progress)
        by_sparsity = {result["sparsity"]: result for result in results}
        results = [by_sparsity[s] for s in sparsities]
    else:
        results = [run_baseline(method, spec, data, float(s), seed, options, progress=progress) for s in sparsities]
    for result, path in zip(results, out_paths, strict=True):
        save_json(result, path)
    return results


def oneshot_task(*, model_path, metrics_path, data_path, out_path, task: str, start: str, seed: int,
                 methods: dict[str, Section], sparsities: list[float], fisher: dict, device: str = "cpu",
                 progress: bool = True) -> list[dict]:
    """Rule ``oneshot``: every one-shot method at every sparsity on one trained model (``start``: dense or
    l1) with one seed's gradient sample, no retraining; writes the rows with the unpruned accuracy."""
    model, meta, data = load_task(model_path, metrics_path, data_path, device)
    rows = compare_oneshot(model, data, methods=methods, sparsities=sparsities, seed=seed, task=task,
                           progress=progress, **fisher)
    rows = [{"task": task, "start": start, "seed": seed, **row} for row in rows]
    save_json({"task": task, "start": start, "seed": seed, "unpruned_test_acc": meta["test_acc"], "rows": rows},
              out_path)
    return rows
