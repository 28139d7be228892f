"""Independent random streams derived from a run's seed (torch-free).

``build_model(seed=k)`` seeds torch's global stream with k, and ``torch.Generator().manual_seed(k)``
replays that very stream: anything else drawn "with seed k" (masks, scores, revived units) would
repeat the initial weights. Every such draw takes its own stream, ``derived_seed(k, purpose)``.
"""

from __future__ import annotations

import zlib

import numpy as np


def derived_seed(seed: int, purpose: str) -> int:
    """An independent seed for the random stream ``purpose`` (e.g. "smart_ratio_masks") of run ``seed``.

    Built from ``numpy.random.SeedSequence([seed, crc32(purpose)])``: stable across processes,
    Python versions and machines (unlike ``hash``), distinct for distinct purposes, and never
    the stream ``build_model(seed=seed)`` initialised the weights from. A non-negative int < 2**63
    (what ``torch.Generator.manual_seed`` accepts).
    """
    entropy = [int(seed), zlib.crc32(purpose.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)
