"""How many weights a sparsity keeps: the one rounding rule every stage uses.

Apart from :mod:`prunelimit.prune` (which re-exports both) because that needs torch, and the
figures mark magnitude cuts with :func:`keep_count` in jobs that run without torch.
"""

from __future__ import annotations

import math

from .errors import PrunelimitError


def check_sparsity(sparsity: float, what: str = "sparsity") -> float:
    s = float(sparsity)
    if not (0.0 <= s <= 1.0) or math.isnan(s):
        raise PrunelimitError(f"{what} must lie in [0, 1] (fraction of weights removed), got {sparsity!r}")
    return s


def keep_count(n: int, sparsity: float) -> int:
    """Weights kept at ``sparsity`` out of ``n``: round((1 − s)·n), half-way cases rounded up."""
    return int(math.floor((1.0 - check_sparsity(sparsity)) * n + 0.5))
