"""Which prunable weights the data loss ever moves during training: the never-updated shares of the train rule's
metrics (prunelimit.train.train_and_save)."""

from __future__ import annotations

import torch
from torch import nn

from .models import prunable_parameters


class DataGradientTracker:
    """Which prunable weights ever received a non-zero gradient of the data loss during training.

    A hook on each weight sees the gradient of the whole training loss; the L1 term's share
    λ·sign(w) is taken off, so what remains is the cross-entropy's. Weights whose share stays
    exactly zero (e.g. kernel taps that only ever see padding, weights of dead units) are never
    shaped by the data and keep what initialisation and the L1 pull give them. Its masks go into
    the resume file (``train(extra_state=...)``), so a resumed run counts the epochs before the
    kill too and reports what an uninterrupted run reports.
    """

    def __init__(self, model: nn.Module, l1: float):
        self.seen = {name: torch.zeros_like(p, dtype=torch.bool) for name, p in prunable_parameters(model)}
        self.handles = [p.register_hook(self._hook(name, p, l1)) for name, p in prunable_parameters(model)]

    def _hook(self, name: str, param: torch.Tensor, l1: float):
        def record(grad: torch.Tensor) -> None:
            data_grad = grad - l1 * torch.sign(param.detach()) if l1 else grad
            self.seen[name] |= data_grad != 0
        return record

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The masks (name → bool tensor), for the resume file."""
        return {name: m.clone() for name, m in self.seen.items()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from masks saved by :meth:`state_dict` (same weight names and shapes, bool)."""
        if not isinstance(state, dict) or set(state) != set(self.seen):
            names = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"data-gradient masks for {names}, expected {sorted(self.seen)}")
        for name, m in state.items():
            if not isinstance(m, torch.Tensor) or m.dtype != torch.bool or m.shape != self.seen[name].shape:
                raise ValueError(f"data-gradient mask {name} is not a bool tensor of shape "
                                 f"{tuple(self.seen[name].shape)}")
        for name, m in state.items():
            self.seen[name].copy_(m)

    def never_updated_share(self, model: nn.Module | None = None, at_least: float = 0.0) -> float:
        """Share of the prunable weights that never received a data gradient; with ``model``, only
        those that also end with |w| ≥ ``at_least`` count (the ones still at a size the data never
        gave them: under L1 the others were pulled to ~0 and are pruned first)."""
        total = sum(m.numel() for m in self.seen.values())
        if model is None:
            return float(sum(int((~m).sum()) for m in self.seen.values()) / total)
        weights = dict(prunable_parameters(model))
        kept = sum(int(((~m) & (weights[name].detach().abs() >= at_least)).sum()) for name, m in self.seen.items())
        return float(kept / total)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
