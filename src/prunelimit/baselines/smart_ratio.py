"""Smart-Ratio (Su et al. 2020, "Sanity-checking pruning methods: random tickets can win the jackpot").

Data-free layer-wise keep ratios, random masks with those ratios, training from scratch.

Source read: JingtongSu/sanity-checking-pruning ``pruner/SmartRatio.py`` and the Rare Gems
re-implementation ksreenivasan/pruning_is_enough ``SmartRatio.py``. For layer l of L (1-based, in
module order, classifier last):

    p_l ∝ (L − l + 1)² + (L − l + 1)          residual networks (ResNets)
    p_l ∝ ((L − l + 1)² + (L − l + 1)) / l²    plain feed-forward nets (VGG, FC, AlexNet)

and the classifier keeps a fixed ratio (``linear_keep_ratio`` = 0.3 in both sources). The other
ratios are scaled by one γ so the kept count meets the budget. Our choices, stated:
- Only the last layer (the classifier) takes the fixed ratio. Su's code gives it to every
  nn.Linear (meant for conv nets with one linear layer); on an all-linear FC net that would fix
  every layer at 0.3, so the Rare Gems version's reading ("the last linear layer") is used.
- Layers whose scaled ratio exceeds 1 are set to 1 and the overflow is redistributed by
  re-solving γ over the remaining layers (water-filling), so unclamped layers keep the formula's
  proportions exactly; both sources instead pour the overflow greedily into the next layers.
- The classifier's fixed ratio is clamped when the budget cannot carry it: if c·m_L alone
  exceeds the kept budget K, the classifier keeps the overall density (1 − s) instead; if the
  other layers cannot absorb K − c·m_L even fully dense, the classifier takes the remainder.
- Per-layer counts are integers by largest-remainder rounding, so they sum to exactly
  K = round((1 − s)·D); each layer's mask is a uniformly random set of exactly that many weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..io import PrunelimitError
from ..models import Residual, prunable_parameters
from ..prune import derived_seed
from ..sparsity import check_sparsity, keep_count
from ..train import Masks


def formula(num_layers: int, residual: bool) -> np.ndarray:
    """Unscaled p_l for l = 1..L−1 (the classifier, layer L, is fixed separately)."""
    L = int(num_layers)
    layer = np.arange(1, L, dtype=np.float64)
    p = (L - layer + 1) ** 2 + (L - layer + 1)
    return p if residual else p / layer**2


def layer_densities(sizes: Sequence[int], sparsity: float, *, classifier_ratio: float = 0.3,
                    residual: bool = False) -> np.ndarray:
    """Keep ratio of each layer (sizes in module order, classifier last); Σ p_l m_l = (1 − s)·D."""
    sizes_a = np.asarray(sizes, dtype=np.float64)
    if sizes_a.ndim != 1 or len(sizes_a) < 2 or np.any(sizes_a < 1):
        raise PrunelimitError(f"Smart-Ratio needs at least two layers with weights, got sizes {list(sizes)}")
    if not 0 < classifier_ratio <= 1:
        raise PrunelimitError(f"smart_ratio.classifier_ratio must lie in (0, 1], got {classifier_ratio}")
    density = 1.0 - check_sparsity(sparsity)
    total = sizes_a.sum()
    budget = density * total
    body, head = sizes_a[:-1], sizes_a[-1]
    c = classifier_ratio
    if c * head > budget:  # the classifier alone would exceed the budget: keep it at the overall density
        c = density
    rest = budget - c * head
    if rest > body.sum():  # the body cannot absorb the rest even when dense: the classifier takes it
        c = (budget - body.sum()) / head
        rest = body.sum()
    p = formula(len(sizes_a), residual)
    ratios = np.zeros_like(body)
    free = np.ones_like(body, dtype=bool)
    for _ in range(len(body) + 1):  # water-filling: each pass fixes at least one layer at 1
        remaining = rest - body[~free].sum()
        weight = (p[free] * body[free]).sum()
        gamma = remaining / weight if weight > 0 else 0.0
        ratios[free] = gamma * p[free]
        over = free & (ratios > 1.0)
        if not over.any():
            break
        ratios[over] = 1.0
        free &= ~over
    return np.append(np.clip(ratios, 0.0, 1.0), c)


def layer_counts(sizes: Sequence[int], sparsity: float, **kwargs) -> np.ndarray:
    """Integer kept counts per layer summing to exactly round((1 − s)·D) (largest remainder)."""
    sizes_i = np.asarray(sizes, dtype=np.int64)
    target = keep_count(int(sizes_i.sum()), sparsity)
    exact = layer_densities(sizes, sparsity, **kwargs) * sizes_i
    counts = np.minimum(np.floor(exact + 1e-9).astype(np.int64), sizes_i)
    short = target - int(counts.sum())
    if short > 0:  # hand out the missing units by largest fractional part, where there is room
        frac = np.where(counts < sizes_i, exact - counts, -np.inf)
        for i in np.argsort(-frac, kind="stable")[:short]:
            counts[i] += 1
    elif short < 0:
        frac = np.where(counts > 0, exact - counts, np.inf)
        for i in np.argsort(frac, kind="stable")[:-short]:
            counts[i] -= 1
    if int(counts.sum()) != target:
        raise PrunelimitError(f"Smart-Ratio could not place {target} weights in layers of sizes {list(sizes)}")
    return counts


def smart_ratio_masks(model: nn.Module, sparsity: float, seed: int, *, classifier_ratio: float = 0.3,
                      residual: bool = False) -> Masks:
    """Random masks with Smart-Ratio's per-layer counts (one seeded generator, layers in order)."""
    params = prunable_parameters(model)
    counts = layer_counts([p.numel() for _, p in params], sparsity, classifier_ratio=classifier_ratio,
                          residual=residual)
    generator = torch.Generator().manual_seed(derived_seed(seed, "smart_ratio_masks"))
    masks = {}
    for (name, p), k in zip(params, counts):
        flat = torch.zeros(p.numel())
        flat[torch.randperm(p.numel(), generator=generator)[:int(k)]] = 1.0
        masks[name] = flat.view_as(p).to(p.device)
    return masks


def is_residual(model: nn.Module) -> bool:
    """Whether the model has residual blocks: those get no 1/l² division [Su's code: args.arch == 'resnet'],
    here every model whose description holds a Residual node (the registry's ResNets)."""
    return any(isinstance(m, Residual) for m in model.modules())


def describe(sizes: Sequence[int], sparsity: float, **kwargs) -> dict:
    counts = layer_counts(sizes, sparsity, **kwargs)
    return {"layer_sizes": [int(s) for s in sizes], "layer_kept": [int(k) for k in counts],
            "layer_density": [float(k) / s for k, s in zip(counts, sizes)],
            "kept": int(counts.sum()), "n_prunable": int(sum(sizes)),
            "formula": "p_l ∝ (L-l+1)^2 + (L-l+1)" + ("" if kwargs.get("residual") else " / l^2")}

