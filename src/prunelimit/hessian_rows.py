"""The Hessian-row experiment: L1 norms of the Hessian rows at the magnitude-threshold weights.

At each of ``theory.row_levels`` sparsities, the row of the full-training-set Hessian
(:class:`prunelimit.hessian.HessianOperator`) at the weight on the magnitude threshold; the share of
zero rows is the theory's zero-eigenvalue mass f₀ (:mod:`prunelimit.gaussian_width`) [code
``gradient.py``]. The threshold weights come from the ranking pruning uses
(:func:`prunelimit.prune.magnitude_ranking`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .hessian import HessianOperator, operator_positions
from .io import PrunelimitError, load_npz, save_npz
from .prune import magnitude_ranking
from .settings import HessianSettings, TheorySettings
from .sparsity import MagnitudeRanking

ROW_BATCH = 16  # basis vectors per batched HVP (HessianOperator.matmat) of the Hessian-row experiment


def row_sparsities(levels: int) -> np.ndarray:
    """Sparsities j/levels, j = 1 … levels.

    The official code takes j = 0 … levels − 1 [code ``gradient.py``: index i·10 of 1000, i < 100];
    its level 0 (nothing removed) repeats the smallest weight of level 1/levels, so a share d of
    zero rows is counted as (⌊d·levels⌋ + 1)/levels, up to one level too many. With j = 1 … levels
    the count is ⌊d·levels⌋/levels ≤ d [ours], which suits f₀'s role: topping up the null mass SLQ
    already finds (:func:`spectrum.top_up_zero_mass`), never inflating it.
    """
    if levels < 1:
        raise PrunelimitError(f"theory.row_levels must be ≥ 1, got {levels}")
    return np.arange(1, levels + 1, dtype=np.float64) / levels


def hessian_row_norms(operator, positions: np.ndarray, batch: int = ROW_BATCH,
                      progress: bool = False) -> np.ndarray:
    """‖H e_i‖₁ for each operator index i in ``positions`` (H symmetric: row = column).

    Columns go through ``operator.matmat`` in blocks of ``batch`` basis vectors. The official code
    accumulates Σ_batches ‖H_b e_i‖₁/N over minibatch Hessians H_b [code ``gradient.py``]; we take
    the row of the full-training-set Hessian (the operator the spectrum comes from) [ours].
    """
    positions = np.asarray(positions, np.int64)
    dim = int(operator.dim)
    if positions.size and (positions.min() < 0 or positions.max() >= dim):
        raise PrunelimitError(f"Hessian row index out of range [0, {dim})")
    ref = operator.flat_params()
    norms = np.zeros(positions.size)
    support = getattr(operator, "support", None)  # outside it, rows are exactly zero: no product needed
    computed = (np.arange(positions.size) if support is None
                else np.flatnonzero(np.isin(positions, support.cpu().numpy())))
    for start in tqdm(range(0, computed.size, batch), desc="hessian rows", disable=not progress, leave=False):
        entries = computed[start:start + batch]
        block = positions[entries]
        basis = torch.zeros(dim, block.size, dtype=ref.dtype, device=ref.device)
        basis[torch.as_tensor(block, device=ref.device), torch.arange(block.size, device=ref.device)] = 1.0
        columns = operator.matmat(basis)  # (D, k)
        norms[entries] = columns.abs().sum(dim=0).double().cpu().numpy()
    if not np.all(np.isfinite(norms)):
        raise PrunelimitError("a Hessian row has non-finite entries; the trained model's loss is not finite")
    return norms


@dataclass(frozen=True)
class HessianRows:
    """The Hessian-row experiment [code ``gradient.py``]: row L1 norms at the threshold weights."""

    sparsities: np.ndarray  # (k,) sparsity levels j/levels
    weight_indices: np.ndarray  # (k,) flat prunable index of the threshold weight at each level
    weight_values: np.ndarray  # (k,) w* at those indices
    l1_norms: np.ndarray  # (k,) ‖H e_i‖₁
    zero_threshold: float  # rows with a smaller L1 norm count as zero eigen-directions
    dim: int  # D of the prunable weights

    @property
    def zero_rows(self) -> int:
        return int(np.sum(self.l1_norms < self.zero_threshold))

    @property
    def zero_fraction(self) -> float:
        """f₀ = #zero rows / #levels [code ``gaussian_width.py``: num/100]."""
        return self.zero_rows / max(len(self.l1_norms), 1)

    def save(self, path: str | os.PathLike) -> None:
        save_npz(path, sparsities=self.sparsities, weight_indices=self.weight_indices,
                 weight_values=self.weight_values, l1_norms=self.l1_norms,
                 zero_threshold=np.float64(self.zero_threshold), dim=np.int64(self.dim),
                 zero_fraction=np.float64(self.zero_fraction))

    @classmethod
    def load(cls, path: str | os.PathLike, dim: int | None = None) -> HessianRows:
        arrays = load_npz(path, "Hessian-rows", ("sparsities", "weight_indices", "weight_values", "l1_norms",
                                                 "zero_threshold", "dim"))
        rows = cls(arrays["sparsities"], arrays["weight_indices"], arrays["weight_values"], arrays["l1_norms"],
                   float(arrays["zero_threshold"]), int(arrays["dim"]))
        if dim is not None and rows.dim != dim:
            raise PrunelimitError(f"Hessian-rows file {path} is for {rows.dim} weights, the model has {dim}")
        return rows


def hessian_rows(model: nn.Module, data, *, hessian_settings: HessianSettings, theory_settings: TheorySettings,
                 ranking: MagnitudeRanking | None = None, progress: bool = False,
                 operator=None) -> HessianRows:
    """Row L1 norms of the Hessian at the threshold weights of ``theory.row_levels`` sparsities.

    At each level j/levels take the weight at the magnitude threshold (the largest one removed),
    compute its full-training-set Hessian row H e_i (batched HVPs with basis vectors) and its L1
    norm [code ``gradient.py``]; f₀ = fraction of rows below ``theory.zero_row_threshold``.
    """
    ranking = ranking or magnitude_ranking(model)
    levels = row_sparsities(int(theory_settings.row_levels))
    indices = np.array([ranking.threshold_index(s) for s in levels], np.int64)
    params = hessian_settings.params
    positions = operator_positions(model, params)[indices]
    op = operator if operator is not None else HessianOperator(model, data.x_train, data.y_train, params=params,
                                                                chunk_size=int(hessian_settings.chunk_size))
    norms = hessian_row_norms(op, positions, progress=progress)
    return HessianRows(levels, indices, ranking.weights[indices], norms,
                       float(theory_settings.zero_row_threshold), ranking.dim)
