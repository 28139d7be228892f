"""One-shot OBS-family pruning on a local quadratic model of the loss: magnitude (MP), WoodFisher, CBS, CHITA.

A block of p weights w (flat, float64) comes with N per-sample (or per-mini-batch) loss gradients, the rows of G.
WoodFisher and CBS take F = damp·I + GᵀG/N (damped empirical Fisher) as the Hessian and use F⁻¹ only through its
diagonal, products and sub-blocks (:class:`.fisher.WoodburyInverse`: no p×p matrix when N < p); CHITA uses
X = G/√N. Each method keeps exactly round((1 − s)·p) weights (``keep_count``), ties to the earlier index (as
:mod:`..prune`). The methods on one block, each module with its paper: :mod:`.fisher` (the Fisher inverse, the OBS
updates, MP and WoodFisher), :mod:`.cbs` and :mod:`.chita`. Here: a model's per-sample gradients, its blocks and
:func:`prune_model`, the four methods' entry point (prunelimit.methods).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from ..io import PrunelimitError
from ..models import prunable_parameters
from ..sparsity import keep_count
from .cbs import DEFAULT_CANDIDATES, DEFAULT_SWAPS, _check_start, cbs_search
from .chita import DEFAULT_ITERS, DEFAULT_RIDGE, _chita_block, lipschitz_constant
from .fisher import (
    DEFAULT_DAMP,
    DTYPE,
    _apply,
    _count,
    _gradients,
    _positive,
    _top,
    check_open_sparsity,
    empirical_fisher_inverse,
    obs_saliency,
    obs_update_exact,
    woodfisher_update,
)

METHODS = ("mp", "wf", "cbs", "chita")  # the names of the method registry (prunelimit.methods)
DEFAULTS = {"block_size": 4096, "damp": DEFAULT_DAMP, "joint": False, "swaps": DEFAULT_SWAPS,
            "candidates": DEFAULT_CANDIDATES, "start": "magnitude", "ridge": DEFAULT_RIDGE, "iters": DEFAULT_ITERS,
            "stages": 1}
SETTINGS = {"mp": ("block_size",), "wf": ("block_size", "damp", "joint"),
            "cbs": ("block_size", "damp", "swaps", "candidates", "start"),
            "chita": ("block_size", "ridge", "iters", "stages")}


# Models
def per_sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n: int, batch: int = 1,
                         chunk: int = 64) -> torch.Tensor:
    """G (n × D, float64): the gradient of the mean cross-entropy over each of ``n`` consecutive mini-batches of
    ``batch`` samples (the first n·batch of x) w.r.t. the prunable weights, in :func:`prunable_parameters` order;
    by ``torch.func`` vmap over grad, the model in eval mode (BatchNorm uses its running statistics)."""
    n, batch, chunk = _count(n, "n (gradients)", 1), _count(batch, "batch", 1), _count(chunk, "chunk", 1)
    params = prunable_parameters(model)
    if not params:
        raise PrunelimitError(f"model {type(model).__name__} has no prunable (conv or linear) weights")
    if n * batch > len(x) or len(x) != len(y):
        raise PrunelimitError(f"n={n} gradients of batch={batch} need {n * batch} samples, got {len(x)}/{len(y)}")
    xs = x[:n * batch].to(params[0][1].device).reshape(n, batch, *x.shape[1:])
    ys = y[:n * batch].to(params[0][1].device).reshape(n, batch)

    def loss(weights: dict, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, weights, (xb,)), yb)

    # chunk by chunk into one host matrix: the device holds one chunk's gradients, never N × D of them
    per_sample, weights = vmap(grad(loss), in_dims=(None, 0, 0)), {k: p.detach() for k, p in params}
    out = torch.empty(n, sum(p.numel() for _, p in params), dtype=DTYPE)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, chunk):
            g = per_sample(weights, xs[start:start + chunk], ys[start:start + chunk])
            rows = len(xs[start:start + chunk])
            out[start:start + rows] = torch.cat([g[name].reshape(rows, -1) for name, _ in params], 1).to("cpu",
                                                                                                            DTYPE)
    finally:
        model.train(was_training)
    return out


def make_blocks(sizes: list[int], block_size: int) -> list[tuple[int, int]]:
    """Flat (start, stop) ranges: one block of everything when it fits ``block_size``, else one per layer, a layer
    larger than ``block_size`` cut into ceil(n/block_size) near-equal contiguous chunks."""
    block_size = _count(block_size, "block_size", 1)
    if sum(sizes) <= block_size:
        return [(0, sum(sizes))]
    blocks, start = [], 0
    for n in sizes:
        edges = [start + n * i // -(-n // block_size) for i in range(-(-n // block_size) + 1)]
        blocks, start = blocks + list(zip(edges[:-1], edges[1:])), start + n
    return blocks


@dataclass
class OneShotResult:
    model: nn.Module  # pruned in place
    masks: dict[str, torch.Tensor]  # name → 0/1 float mask, as prunelimit.prune's
    kept: int
    n_prunable: int
    blocks: list[tuple[int, int]]
    history: dict[int, list[float]] = field(default_factory=dict)  # block → CBS's Q per swap / CHITA's objective


def _settings(method: str, settings: dict) -> dict:
    if method not in METHODS:
        raise PrunelimitError(f"unknown one-shot method {method!r}; known: {', '.join(METHODS)}")
    unknown = sorted(set(settings) - set(SETTINGS[method]))
    if unknown:
        raise PrunelimitError(f"unknown settings for {method}: {unknown}; known: {list(SETTINGS[method])}")
    checks = {"damp": lambda v: _positive(v, "damp (Fisher dampening)"), "joint": bool, "start": _check_start,
              "ridge": lambda v: _positive(v, "ridge (CHITA λ₂)", zero_ok=True),
              "swaps": lambda v: _count(v, "swaps", 0), "iters": lambda v: _count(v, "iters", 1),
              "block_size": lambda v: _count(v, "block_size", 1), "stages": lambda v: _count(v, "stages", 1),
              "candidates": lambda v: None if v is None else _count(v, "candidates", 1)}
    return {k: checks[k](settings.get(k, DEFAULTS[k])) for k in SETTINGS[method]}


def prune_model(model: nn.Module, method: str, sparsity: float, grads=None, cache: dict | None = None,
                regrad=None, **settings) -> OneShotResult:
    """Prune ``model``'s prunable weights in place with ``method`` (:data:`METHODS`) at ``sparsity``, ``grads``
    being its per-sample gradients (:func:`per_sample_gradients`; magnitude needs none). Settings: :data:`SETTINGS`.

    One global selection of the round((1 − s)·D) kept weights: by |w| (magnitude; CBS's and CHITA's start) or by
    the saliency under the block-diagonal Fisher inverse (WoodFisher, as WF prunes globally; CBS with
    ``start="woodfisher"``). CBS's swaps and CHITA's IHT then work within each block at its share of that count
    [ours: the per-block budgets], and each block gets its update. ``cache``: a dict shared by calls on the same
    model and ``grads`` (e.g. one per sparsity) keeps the block inverses and Lipschitz constants between them.
    CHITA with ``stages`` > 1 is CHITA++ (:func:`_chita_stages`), which needs ``regrad``."""
    s, opts = check_open_sparsity(sparsity), _settings(method, settings)
    if method == "chita" and opts["stages"] > 1:
        return _chita_stages(model, s, grads, regrad, opts)
    params = prunable_parameters(model)
    if not params:
        raise PrunelimitError(f"model {type(model).__name__} has no prunable (conv or linear) weights")
    w = torch.cat([p.detach().reshape(-1) for _, p in params]).to(DTYPE).cpu()
    D, blocks = w.numel(), make_blocks([p.numel() for _, p in params], opts["block_size"])
    if method != "mp" and grads is None:
        raise PrunelimitError(f"{method} needs grads (per-sample gradients, N × {D})")
    G = None if method == "mp" else _gradients(grads, D)
    cache = {} if cache is None else cache  # one model and one G: what does not depend on the sparsity, kept

    def cached(key, make):
        if key not in cache:
            cache[key] = make()
        return cache[key]

    inverses = [cached(("inverse", a, b, opts["damp"]),
                       lambda a=a, b=b: empirical_fisher_inverse(G[:, a:b], opts["damp"]))
                for a, b in blocks] if "damp" in opts else []
    by_saliency = method == "wf" or opts.get("start") == "woodfisher"
    keep = _top(torch.cat([obs_saliency(w[a:b], inv) for (a, b), inv in zip(blocks, inverses)]) if by_saliency
                else w.abs(), keep_count(D, s))
    new_w, history = torch.where(keep, w, torch.zeros_like(w)), {}
    for n, (a, b) in enumerate(blocks):
        wb, kb = w[a:b], keep[a:b]
        if method == "wf":
            new_w[a:b] = _apply(wb, (obs_update_exact if opts["joint"] else woodfisher_update)(wb, inverses[n], ~kb),
                                kb)
        elif method == "cbs":
            kb, history[n] = cbs_search(wb, inverses[n], kb, opts["swaps"], opts["candidates"])
            keep[a:b], new_w[a:b] = kb, _apply(wb, obs_update_exact(wb, inverses[n], ~kb), kb)
        elif method == "chita" and 0 < int(kb.sum()) < b - a:  # a block kept whole or pruned whole: nothing to solve
            X = G[:, a:b] / math.sqrt(G.shape[0])
            lipschitz = cached(("lipschitz", a, b, opts["ridge"]), lambda X=X: lipschitz_constant(X, opts["ridge"]))
            new_w[a:b], keep[a:b], history[n] = _chita_block(wb, X, int(kb.sum()), opts["ridge"], opts["iters"],
                                                             lipschitz)
    new_w, masks, i = torch.where(keep, new_w, torch.zeros_like(new_w)), {}, 0
    with torch.no_grad():
        for name, p in params:
            m = p.numel()
            p.copy_(new_w[i:i + m].view_as(p).to(p.dtype))
            masks[name] = keep[i:i + m].view_as(p).to(device=p.device, dtype=torch.float32)
            i += m
    return OneShotResult(model, masks, int(keep.sum()), D, blocks, history)


def _chita_stages(model: nn.Module, sparsity: float, grads, regrad, opts: dict) -> OneShotResult:
    """CHITA++ (CHITA Sec. 4, the multi-stage version): the density lowered over ``stages`` stages, geometrically
    [ours: the schedule], 1 − (1 − s)^(k/stages) at stage k; before every stage but the first the per-sample
    gradients are recomputed on the pruned model (``regrad(model)`` → N × D), and each stage is one CHITA prune
    from the current weights. Returns the last stage's result (its masks are the final ones)."""
    if regrad is None:
        raise PrunelimitError("CHITA++ (chita.stages > 1) recomputes the gradients at each stage: pass regrad")
    stages, single = opts["stages"], {**opts, "stages": 1}
    result, history = None, {}
    for k in range(1, stages + 1):
        target = sparsity if k == stages else 1.0 - (1.0 - sparsity) ** (k / stages)
        result = prune_model(model, "chita", target, grads if k == 1 else regrad(model), **single)
        history[k] = result.history
    result.history = history
    return result

