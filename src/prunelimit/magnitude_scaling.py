"""The magnitude-scaling experiment: the predicted and the actual threshold when every prunable weight is scaled.

[paper, figure "pruning ratio prediction on different weight magnitude"] Scaling w* by c scales
R(s) by c and leaves the magnitude order, so every mask, unchanged: :func:`magnitude_scaling`
predicts the threshold per scale (:func:`prunelimit.gaussian_width.predict_from_spectrum` with
R scaled), :func:`scaled_actual_threshold` measures it on the scaled network by prune's sweep.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from .gaussian_width import predict_from_spectrum
from .io import PrunelimitError
from .models import prunable_parameters
from .prune import sweep_and_threshold
from .settings import ThresholdSettings
from .sparsity import MagnitudeRanking
from .spectrum import Quadrature


def scaled_model(model: nn.Module, scale: float) -> nn.Module:
    """A copy of ``model`` with every prunable weight multiplied by ``scale`` (biases, BN untouched).

    The magnitude-scaling experiment scales the weights pruning acts on; magnitude order, and so
    every mask, is the same for all scales.
    """
    scale = float(scale)
    if not (scale > 0 and math.isfinite(scale)):
        raise PrunelimitError(f"theory.scales must be positive finite numbers, got {scale}")
    scaled = copy.deepcopy(model).eval()
    with torch.no_grad():
        for _, p in prunable_parameters(scaled):
            p.mul_(scale)
    return scaled


def scaled_actual_threshold(model: nn.Module, data, scale: float, settings: ThresholdSettings) -> dict:
    """The actual threshold of the scaled model: prune's in-place sweep on ``scale``·w* (test set only).

    Reference accuracy is the scaled unpruned model's (the sweep's sparsity-0 point). ``settings``: the
    prune section's criteria on the experiment's grid (``theory.scaling_grid``; :func:`prunelimit.stages.scaling_task`).
    """
    curve, found = sweep_and_threshold(scaled_model(model, scale), data, settings)
    return {"actual_sparsity": found["actual_sparsity"], "actual_criterion": found["actual_criterion"],
            "dense_test_acc": found["dense_test_acc"],
            "curve": [{"sparsity": r["sparsity"], "test_acc": r["test_acc"]} for r in curve]}


def magnitude_scaling(ranking: MagnitudeRanking, spectrum: Quadrature, epsilon: float, scales: list[float], *,
                      zero_fraction: float, eta: float = 0.05, spectrum_dim: int | None = None,
                      actual_threshold: Callable[[float], float | dict] | None = None) -> dict:
    """Predicted threshold per weight scale c: the crossing of (c·R(s), s) with w²(R)/D.

    [paper, figure "pruning ratio prediction on different weight magnitude"] The figure draws
    one prediction curve w²(R)/D and the actual curves (c·R(s), s): the spectrum and ε are held
    at those of the trained model and only R is scaled (scaling the weights of a ReLU network
    changes its Hessian too; the paper derives no rule for that, so none is applied) [paper; ours
    for the choice]. ``actual_threshold(c)``, if given, supplies the measured threshold of the
    scaled model: a number, or a dict merged into the row (e.g. :func:`scaled_actual_threshold`).
    """
    out = []
    for c in scales:
        if not (float(c) > 0 and math.isfinite(float(c))):
            raise PrunelimitError(f"theory.scales must be positive finite numbers, got {c}")
        pred = predict_from_spectrum(ranking, spectrum, epsilon, zero_fraction=zero_fraction, eta=eta, scale=float(c),
                                     spectrum_dim=spectrum_dim)
        row = {"scale": float(c), **{k: pred[k] for k in ("predicted_sparsity", "predicted_density", "R_at_prediction",
                                                          "lower_sparsity", "upper_sparsity", "gap")}}
        if actual_threshold is not None:
            actual = actual_threshold(float(c))
            row.update(actual if isinstance(actual, dict) else {"actual_sparsity": float(actual)})
        out.append(row)
    return {"scales": out, "spectrum_held_fixed": True,
            "note": "predicted: R scaled by c, spectrum and epsilon of the unscaled model (paper figure; its "
                    "'actual curve' is (c R(s), s)). actual_sparsity, where present, is the accuracy threshold of "
                    "the scaled network itself, which scaling changes (logits ~ c^depth, biases and BN statistics "
                    "unscaled), so it need not follow the prediction"}
