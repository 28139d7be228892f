"""The curvature and theory stages' entry points: from a trained model, or from the files a rule reads, to
the files it writes.

- :func:`predict_from_model`: trained model → predicted pruning threshold, kinematic bounds and
  curves; the one code path of the pipeline's theory rule, ``prunelimit predict`` and iterative
  pruning.
- :func:`operator_of_trained`, :func:`spectrum_of_trained`, :func:`exact_spectrum_of_trained`:
  the training-loss Hessian of a trained model as ``hessian:`` configures it, its SLQ spectrum
  and its exact one.
- The rules' entries, files in and files out (the scripts in ``scripts/`` call these):
  :func:`rows_task`, :func:`slq_task`, :func:`exact_spectrum_task`, :func:`theory_task`,
  :func:`scaling_task`, :func:`prediction_chain_task` (the regime map's three in one job). Spectrum
  files are read through :func:`load_spectrum`, which checks them against the model. The training
  and pruning rules' entries are in :mod:`prunelimit.pruning_stages`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
from torch import nn

from .config import resolve_device
from .data import load_tensors
from .epsilon import epsilon_from_metrics, epsilon_spread, loss_tolerance
from .gaussian_width import (
    FORMULA_MARKS,
    epsilon_band,
    exact_comparison,
    prediction_report,
    slq_report,
    sparsity_predictor,
)
from .hessian import HessianOperator, exact_eigenvalues, spectrum_dimension
from .hessian_rows import HessianRows, hessian_rows
from .io import PrunelimitError, load_json, save_json
from .lanczos import slq
from .magnitude_scaling import magnitude_scaling, scaled_actual_threshold
from .prune import magnitude_ranking
from .settings import HessianSettings, TheorySettings, ThresholdSettings
from .spectrum import Quadrature, SLQResult, from_eigenvalues, load_exact, save_exact
from .train import epsilon_batch_size, load_trained

# ---------------------------------------------------------------------------------------------
# The Hessian of a trained model
# ---------------------------------------------------------------------------------------------


def _operator(model: nn.Module, data, hessian_settings: HessianSettings) -> HessianOperator:
    return HessianOperator(model, data.x_train, data.y_train, params=hessian_settings.params,
                           chunk_size=int(hessian_settings.chunk_size))


def operator_of_trained(model: nn.Module, data, hessian_settings: HessianSettings) -> HessianOperator:
    """The training-loss Hessian operator of a trained model, as ``hessian_settings`` (params, chunk_size) asks."""
    return _operator(model, data, hessian_settings)


def spectrum_of_trained(model: nn.Module, data, hessian_settings: HessianSettings, progress: bool = True,
                        predict: Callable[[Quadrature], float] | None = None,
                        operator: HessianOperator | None = None) -> SLQResult:
    """SLQ spectrum of the training-loss Hessian of a trained ``model`` on ``data.x_train``.

    ``hessian_settings``: the task's ``hessian`` section (used: params, n_runs, n_iter, max_iter, tol,
    stable_doublings, seed, chunk_size, basis_device). With ``predict``, the step count grows from n_iter until
    ``predict`` is stable to ``tol`` or max_iter is reached (:func:`slq`). ``operator`` reuses an
    operator already built on the same model and data.
    """
    op = operator if operator is not None else _operator(model, data, hessian_settings)
    n_iter = int(hessian_settings.n_iter)
    return slq(op, int(hessian_settings.n_runs), n_iter, seed=int(hessian_settings.seed), progress=progress,
               basis_device=hessian_settings.basis_device, max_iter=int(hessian_settings.max_iter), predict=predict,
               tol=float(hessian_settings.tol), stable_doublings=int(hessian_settings.stable_doublings))


def exact_spectrum_of_trained(model: nn.Module, data, hessian_settings: HessianSettings) -> tuple[np.ndarray, dict]:
    """All eigenvalues of the same Hessian as :func:`spectrum_of_trained` (small models only)."""
    op = _operator(model, data, hessian_settings)
    t0 = time.perf_counter()
    eigenvalues = exact_eigenvalues(op)
    settings = {"params": op.param_set, "dim": op.dim, "n_samples": op.n, "loss": op.loss,
                "dtype": str(op.dtype).removeprefix("torch."), "elapsed_s": time.perf_counter() - t0}
    return eigenvalues, settings


# ---------------------------------------------------------------------------------------------
# The one code path: trained model → prediction
# ---------------------------------------------------------------------------------------------


def predict_from_model(model: nn.Module, data, *, hessian_settings: HessianSettings, theory_settings: TheorySettings,
                       l1: float = 0.0, spectrum=None, rows: HessianRows | None = None, seed: int = 0,
                       epsilon: tuple[float, str] | None = None, progress: bool = False,
                       epsilon_band: bool = True) -> dict:
    """Trained model → predicted pruning threshold, kinematic bounds and curves (JSON-ready dict).

    The one code path of the pipeline's theory rule, ``prunelimit predict`` and iterative pruning.
    ε: ``epsilon`` (value, source) if given, else from the model (:func:`loss_tolerance`). f₀: from
    ``rows`` if given, else the Hessian rows. The spectrum: ``spectrum`` (an :class:`SLQResult`, or
    a :class:`Quadrature` of exact eigenvalues) if given, else converged SLQ
    (:func:`spectrum_of_trained` with this prediction as the functional). One Hessian operator
    serves the rows and the spectrum.

    ``epsilon_band``: also ε's spread over ``theory_settings.epsilon_partitions`` random batch
    partitions of the (un-augmented) training set, seeded by ``seed``, and the prediction at its
    10th and 90th percentiles, under ``"epsilon_band"`` (:func:`band_of_model`); None where it is off
    (this keyword, ``epsilon_partitions: 0``) or ε is the ``theory.epsilon`` override.
    """
    t0 = time.perf_counter()
    model = model.eval()
    ranking = magnitude_ranking(model)
    epsilon, eps_source = epsilon or loss_tolerance(model, data, l1=l1, override=theory_settings.epsilon, seed=seed)
    params = hessian_settings.params
    spectrum_dim = spectrum_dimension(model, params)
    operator = None
    if rows is None or spectrum is None:
        operator = operator_of_trained(model, data, hessian_settings)
    if rows is None:
        rows = hessian_rows(model, data, hessian_settings=hessian_settings, theory_settings=theory_settings,
                            ranking=ranking,
                            progress=progress, operator=operator)
    elif rows.dim != ranking.dim:
        raise PrunelimitError(f"Hessian rows are for {rows.dim} weights, the model has {ranking.dim}")
    f0 = rows.zero_fraction
    spectrum_source = "given"
    if spectrum is None:
        spectrum = spectrum_of_trained(model, data, hessian_settings, progress=progress, operator=operator,
                                       predict=sparsity_predictor(ranking, epsilon, f0, spectrum_dim))
        spectrum_source = "computed (hessian.spectrum_of_trained, converged on the prediction)"
    exact = isinstance(spectrum, Quadrature)
    quadrature = spectrum if exact else spectrum.quadrature()
    exact_null_mass = 0.0 if exact else spectrum.exact_null_mass  # the share at exactly 0 off the support
    report = prediction_report(ranking, quadrature, epsilon, zero_fraction=f0, hessian_settings=hessian_settings,
                               theory_settings=theory_settings, spectrum_dim=spectrum_dim,
                               exact_null_mass=exact_null_mass)
    band = (band_of_model(model, data, ranking, quadrature, zero_fraction=f0, theory_settings=theory_settings,
                          l1=l1, seed=seed, spectrum_dim=spectrum_dim, exact_null_mass=exact_null_mass)
            if epsilon_band and theory_settings.epsilon is None else None)
    # the largest eigenvalues: exact ones, or the k-th largest Ritz value averaged over runs
    top = (np.sort(quadrature.nodes)[::-1][:10] if exact
           else np.sort(spectrum.ritz_values, axis=1)[:, ::-1][:, :10].mean(axis=0))
    return {
        "epsilon": epsilon,
        "epsilon_source": eps_source,
        "D": ranking.dim,
        "weight_l2_norm": ranking.norm,
        "zero_fraction": f0,
        "zero_rows": {"n_rows": int(len(rows.l1_norms)), "n_zero": rows.zero_rows,
                      "threshold": rows.zero_threshold, "important_fraction": 1.0 - f0},
        **report,
        "epsilon_band": band,
        "slq": slq_report(spectrum, ranking, epsilon, f0, spectrum_dim),
        "top_eigenvalues": top.tolist(),
        "provenance": {"formulas": FORMULA_MARKS, "spectrum_source": spectrum_source,
                       "hessian": asdict(hessian_settings), "theory": asdict(theory_settings), "l1": l1,
                       "spectrum_settings": {} if exact else dict(spectrum.settings),
                       "bounds": "kinematic bounds", "seconds": time.perf_counter() - t0},
    }


def band_of_model(model: nn.Module, data, ranking, quadrature: Quadrature, *, zero_fraction: float,
                  theory_settings: TheorySettings, l1: float = 0.0, seed: int = 0,
                  spectrum_dim: int | None = None, **predict_kwargs) -> dict | None:
    """The ε band of a trained model (:func:`prunelimit.gaussian_width.epsilon_band`) over
    ``theory_settings.epsilon_partitions`` partitions of batch 128 (halved on tiny training sets);
    None with 0 partitions. ``predict_kwargs`` go to the prediction at each end, as for the prediction."""
    partitions = int(theory_settings.epsilon_partitions)
    if partitions == 0:
        return None
    batch = epsilon_batch_size(128, len(data.x_train))
    values = epsilon_spread(model, data, l1=l1, batch_size=batch, partitions=partitions, seed=seed)
    return epsilon_band(ranking, quadrature, values, zero_fraction=zero_fraction, eta=float(theory_settings.eta),
                        spectrum_dim=spectrum_dim, batch_size=batch, **predict_kwargs)


# ---------------------------------------------------------------------------------------------
# Pipeline entry points (files in, files out; the rule scripts call these)
# ---------------------------------------------------------------------------------------------


def check_spectrum(q: Quadrature, *, path, model: nn.Module, hessian_settings: HessianSettings,
                   made_with: str | None = None) -> None:
    """Stop with a message naming ``path`` if its spectrum is not of ``model``'s Hessian as configured."""
    params = hessian_settings.params
    if made_with is not None and made_with != params:
        raise PrunelimitError(f"spectrum file {path} was taken over params={made_with!r}, "
                              f"the config asks for {params!r}; rerun the hessian rule")
    dim = spectrum_dimension(model, params)
    if q.dim != dim:
        raise PrunelimitError(f"spectrum file {path} is over {q.dim} parameters, but the model has {dim} "
                              f"({params} parameters): it belongs to another model or setting")


def load_spectrum(path: str | os.PathLike, *, kind: str, model: nn.Module,
                  hessian_settings: HessianSettings) -> Quadrature:
    """The SLQ (``kind='slq'``) or exact (``'exact'``) spectrum file of ``model``, checked against it.

    A missing, unreadable or inconsistent file (another dimension, another parameter set) stops
    with a message naming it.
    """
    made_with = None
    if kind == "slq":
        result = SLQResult.load(path)
        made_with = result.settings.get("params")
        q = result.quadrature()
    elif kind == "exact":
        q = from_eigenvalues(load_exact(path))
    else:
        raise PrunelimitError(f"unknown spectrum kind {kind!r}; use 'slq' or 'exact'")
    check_spectrum(q, path=path, model=model, hessian_settings=hessian_settings, made_with=made_with)
    return q


def load_data(data_path, device):
    """A rule's data file as tensors on ``device`` (a config name such as "auto", or a torch device), and
    that device."""
    device = resolve_device(device) if isinstance(device, str) else device
    return load_tensors(data_path, device), device


def load_task(model_path, metrics_path, data_path, device):
    """A rule's trained model, its metrics.json and its data, on ``device`` (:func:`load_data`)."""
    data, device = load_data(data_path, device)
    model, meta = load_trained(model_path, metrics_path, device)
    return model, meta, data


def rows_task(*, model_path, metrics_path, data_path, out_path, hessian_settings: HessianSettings,
              theory_settings: TheorySettings,
              device: str = "cpu", progress: bool = False) -> HessianRows:
    """Rule ``hessian_rows``: the Hessian-row experiment of a trained task, saved as .npz."""
    model, _, data = load_task(model_path, metrics_path, data_path, device)
    rows = hessian_rows(model, data, hessian_settings=hessian_settings, theory_settings=theory_settings,
                        progress=progress)
    rows.save(out_path)
    return rows


def slq_task(*, model_path, metrics_path, data_path, rows_path, out_path, hessian_settings: HessianSettings,
             theory_settings: TheorySettings, plot_path=None, title: str = "",
             device: str = "cpu", progress: bool = False):
    """Rule ``slq``: the SLQ spectrum of a trained task, its step count grown until the predicted
    threshold is stable (ε from metrics.json, f₀ from the Hessian rows), saved as .npz; with
    ``plot_path``, its density drawn there too (titled ``title``)."""
    model, meta, data = load_task(model_path, metrics_path, data_path, device)
    ranking = magnitude_ranking(model)
    rows = HessianRows.load(rows_path, dim=ranking.dim)
    epsilon, _ = epsilon_from_metrics(meta, theory_settings, str(metrics_path))
    spectrum_dim = spectrum_dimension(model, hessian_settings.params)
    result = spectrum_of_trained(model, data, hessian_settings, progress=progress,
                                 predict=sparsity_predictor(ranking, epsilon, rows.zero_fraction, spectrum_dim))
    result.save(out_path, n_bins=int(hessian_settings.n_bins), sigma2=float(hessian_settings.sigma2))
    if plot_path is not None:
        from .figures.hessian import plot_hessian_spectrum  # here: matplotlib only for the rules that draw

        plot_hessian_spectrum(result, plot_path, title=title, n_bins=hessian_settings.n_bins,
                              sigma2=hessian_settings.sigma2)
    return result


def exact_spectrum_task(*, model_path, metrics_path, data_path, out_path, hessian_settings: HessianSettings,
                        device: str = "cpu") -> tuple[np.ndarray, dict]:
    """Rule ``exact_spectrum``: every eigenvalue of a small model's Hessian, saved as .npz."""
    model, _, data = load_task(model_path, metrics_path, data_path, device)
    eigenvalues, settings = exact_spectrum_of_trained(model, data, hessian_settings)
    save_exact(out_path, eigenvalues, settings)
    return eigenvalues, settings


def theory_task(*, model_path, metrics_path, data_path, slq_path, rows_path, out_path,
                hessian_settings: HessianSettings,
                theory_settings: TheorySettings, exact_path=None, device: str = "cpu") -> dict:
    """Rule ``theory``: prediction.json from the trained model, its SLQ spectrum and Hessian rows.

    ε is the one the train rule measured (metrics.json). With ``exact_path`` the same prediction
    from the exact eigenvalues goes under ``exact``, with the same f₀ (so the difference is the SLQ
    quadrature error) and without it (the quadratic model's own answer, every zero eigenvalue
    resolved).
    """
    model, meta, data = load_task(model_path, metrics_path, data_path, device)
    result = SLQResult.load(slq_path)
    check_spectrum(result.quadrature(), path=slq_path, model=model, hessian_settings=hessian_settings,
                   made_with=result.settings.get("params"))
    ranking = magnitude_ranking(model)
    rows = HessianRows.load(rows_path, dim=ranking.dim)
    train_cfg = meta.get("train", {})
    out = predict_from_model(model, data, hessian_settings=hessian_settings, theory_settings=theory_settings,
                             l1=float(train_cfg.get("l1", 0.0)), spectrum=result, rows=rows,
                             epsilon=epsilon_from_metrics(meta, theory_settings, str(metrics_path)))
    out["provenance"].update({"model": str(model_path), "metrics": str(metrics_path), "spectrum_file": str(slq_path),
                              "hessian_rows_file": str(rows_path)})
    if exact_path is not None:
        out["exact"] = exact_comparison(ranking, load_spectrum(exact_path, kind="exact", model=model,
                                                               hessian_settings=hessian_settings),
                                        out, theory_settings=theory_settings,
                                        spectrum_dim=spectrum_dimension(model, hessian_settings.params))
        out["exact"]["spectrum_file"] = str(exact_path)
    save_json(out, out_path)
    return out


def scaling_task(*, model_path, metrics_path, data_path, slq_path, prediction_path, out_path,
                 hessian_settings: HessianSettings, theory_settings: TheorySettings,
                 prune_settings: ThresholdSettings, device: str = "cpu") -> dict:
    """Rule ``magnitude_scaling``: predicted (and, by prune's sweep, actual) threshold per weight scale.

    The actual threshold is measured as the sweep rule measures it (``prune_settings``' criteria) on the
    experiment's own grid, ``theory.scaling_grid``."""
    model, _, data = load_task(model_path, metrics_path, data_path, device)
    pred = load_json(prediction_path)
    spectrum = load_spectrum(slq_path, kind="slq", model=model, hessian_settings=hessian_settings)
    ranking = magnitude_ranking(model)
    if pred.get("D") != ranking.dim:
        raise PrunelimitError(f"{prediction_path} is for D = {pred.get('D')} weights, the model has {ranking.dim}")

    threshold_settings = prune_settings.with_grid(theory_settings.scaling_grid)

    def actual(c: float) -> dict:
        return scaled_actual_threshold(model, data, c, threshold_settings)

    out = magnitude_scaling(ranking, spectrum, pred["epsilon"], list(theory_settings.scales),
                            zero_fraction=pred["zero_fraction"], eta=float(theory_settings.eta),
                            spectrum_dim=spectrum_dimension(model, hessian_settings.params),
                            actual_threshold=actual)
    out.update({"epsilon": pred["epsilon"], "zero_fraction": pred["zero_fraction"], "D": ranking.dim,
                "R_of_sparsity": pred["curves"]["R_of_sparsity"], "sparsity_grid": pred["curves"]["sparsity_grid"],
                "R_grid": pred["curves"]["R_grid"], "gw2_over_D": pred["curves"]["gw2_over_D"],
                "provenance": {"formulas": {k: FORMULA_MARKS[k] for k in ("gaussian_width", "prediction")},
                               "actual": "[code] official criterion on the scaled model's own sweep (test accuracy)",
                               "prediction_file": str(prediction_path), "spectrum_file": str(slq_path),
                               "scaling_grid": threshold_settings.grid}})
    save_json(out, out_path)
    return out


def prediction_chain_task(*, model_path, metrics_path, data_path, rows_path, slq_path, plot_path, prediction_path,
                          hessian_settings: HessianSettings, theory_settings: TheorySettings, exact_path=None,
                          title: str = "", device: str = "cpu", progress: bool = False):
    """Rule ``regime_prediction``: :func:`rows_task`, :func:`slq_task` and :func:`theory_task` in that order,
    with the same settings and to the same files as the main study's three rules. One job instead of
    three: at the mini preset's scale, starting a job (Python and torch, ~1.5 s) cost about as much as a
    point's rows and prediction. Returns the rows, the spectrum and the prediction."""
    trained = {"model_path": model_path, "metrics_path": metrics_path, "data_path": data_path,
               "hessian_settings": hessian_settings, "theory_settings": theory_settings, "device": device}
    rows = rows_task(out_path=rows_path, progress=progress, **trained)
    spectrum = slq_task(rows_path=rows_path, out_path=slq_path, plot_path=plot_path, title=title, progress=progress,
                        **trained)
    prediction = theory_task(slq_path=slq_path, rows_path=rows_path, exact_path=exact_path, out_path=prediction_path,
                             **trained)
    return rows, spectrum, prediction
