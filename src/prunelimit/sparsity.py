"""Global magnitude pruning without torch: how many weights a sparsity keeps, and which.

One rounding rule (:func:`keep_count`) and one ranking (:class:`MagnitudeRanking`) serve every
stage: pruning's masks and sweeps (:mod:`prunelimit.prune`), the theory's R(s) and threshold
weights, and the figures' magnitude cuts. They live apart from :mod:`prunelimit.prune` because
that needs torch, and figure jobs run without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import PrunelimitError


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    s = float(sparsity)
    if not (0.0 <= s <= 1.0) or math.isnan(s):
        raise PrunelimitError(f"{what} must lie in [0, 1] (fraction of weights removed), got {sparsity!r}")
    return s


def keep_count(n: int, sparsity: float) -> int:
    """Weights kept at ``sparsity`` out of ``n``: round((1 − s)·n), half-way cases rounded up."""
    return int(math.floor((1.0 - check_sparsity(sparsity)) * n + 0.5))


@dataclass(frozen=True)
class MagnitudeRanking:
    """The flat prunable weights ranked once by decreasing |w|, and all global magnitude pruning needs.

    ``order[i]`` is the flat index of the i-th largest |w|; of equal |w| the earlier flat index
    ranks first (is kept). At sparsity s the first kept(s) = ``keep_count(D, s)`` are kept, the
    rest removed. ``cumsq[k]`` is the sum of the k smallest squares (float64, summed in removal
    order, smallest first): R(s)² = cumsq[D − kept(s)], and the weight at the threshold (the
    largest removed one) is ``order[kept(s)]``.
    """

    weights: np.ndarray  # (D,) float64, the flat prunable weights in models.prunable_parameters order
    order: np.ndarray  # (D,) int64 flat indices, largest |w| first, ties by lower index
    cumsq: np.ndarray  # (D + 1,) cumulative sums of the squares in removal order, cumsq[0] = 0

    @classmethod
    def of(cls, weights: np.ndarray, alive: np.ndarray | None = None) -> MagnitudeRanking:
        """Rank ``weights`` (any shape, flattened); weights outside boolean ``alive`` (if given) rank last."""
        w = np.asarray(weights, np.float64).ravel()
        if w.size == 0:
            raise PrunelimitError("no prunable weights: the model has no conv or linear layer")
        if not np.all(np.isfinite(w)):
            raise PrunelimitError(f"the prunable weights contain {int(np.sum(~np.isfinite(w)))} non-finite values; "
                                  "cannot rank them by magnitude")
        magnitudes = np.abs(w)
        if alive is not None:
            magnitudes = np.where(np.asarray(alive, bool).ravel(), magnitudes, -1.0)
        order = np.argsort(-magnitudes, kind="stable")  # stable: equal |w| keep their flat order
        cumsq = np.concatenate([[0.0], np.cumsum(w[order[::-1]] ** 2)])
        return cls(w, order, cumsq)

    @property
    def dim(self) -> int:
        return int(self.weights.size)

    @property
    def norm(self) -> float:
        return float(math.sqrt(self.cumsq[-1]))

    def kept(self, sparsity: float) -> int:
        return keep_count(self.dim, sparsity)

    def removed(self, sparsity: float) -> int:
        return self.dim - self.kept(sparsity)

    def keep_mask(self, sparsity: float) -> np.ndarray:
        """Boolean (D,) vector of the weights kept at ``sparsity`` (exactly ``keep_count(D, s)`` of them)."""
        keep = np.zeros(self.dim, bool)
        keep[self.order[:self.kept(sparsity)]] = True
        return keep

    def distance(self, sparsity: float | np.ndarray) -> float | np.ndarray:
        """R(s) = ‖w* − w_s‖₂ = √(sum of the removed squares) [paper]; scalar or array ``sparsity``."""
        if np.ndim(sparsity) == 0:
            return float(math.sqrt(self.cumsq[self.removed(float(sparsity))]))
        return np.sqrt(self.cumsq[[self.removed(float(s)) for s in np.ravel(sparsity)]])

    def threshold_index(self, sparsity: float) -> int:
        """Flat index of the weight at the magnitude threshold: the largest removed one [code
        ``get_sparse_threshold``], or the smallest weight when nothing is removed."""
        return int(self.order[self.dim - max(self.removed(sparsity), 1)])

    def threshold_magnitude(self, sparsity: float) -> float:
        """|w| at the magnitude threshold: the cut global magnitude pruning makes at ``sparsity``."""
        return float(abs(self.weights[self.threshold_index(sparsity)]))
