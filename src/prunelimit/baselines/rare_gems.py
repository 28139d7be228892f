"""Rare Gems (Sreenivasan et al. 2022, "Rare Gems: Finding Lottery Tickets at Initialization").

Source read: ksreenivasan/pruning_is_enough (algo ``hc_iter``): ``utils/conv_type.py``
(``SubnetConv``, ``GetSubnet``), ``utils/net_utils.py`` (``prune`` with ``BottomK``,
``get_prune_rate``, ``get_regularization_loss``), ``trainers/default.py``, ``main.py``,
``main_utils.py`` (``finetune``).

Phase 1 (score training; the weights never change):
- prunable weights frozen at signed constants ±√(2/fan_in) (``signed_constant`` init: the sign
  of the model's kaiming-normal draw times gain/√fan_in with the ReLU gain √2); biases and BN
  affine parameters frozen at their initial values (BN is then non-affine);
- one score s ∈ [0, 1] per prunable weight, s ~ U[0, 1]; scores are clamped to [0, 1] before
  every forward (``project_freq`` 1);
- forward weight w₀ ⊙ 1[s > 0.5] ⊙ alive, the 0.5 quantisation passed straight through in the
  backward pass (``GetSubnet.backward`` returns the incoming gradient);
- loss = cross-entropy + λ_s‖s‖² (``regularizer == 'L2'``), implemented as SGD weight decay
  2λ_s on the scores, which adds exactly the gradient 2λ_s·s of λ_s‖s‖²;
- after epoch e (0-based) with e % T == 0 and e ≠ 0, the alive weights of lowest score are
  frozen to 0 globally (``BottomK``); with n = ⌊(E − 1)/T⌋ pruning steps, the kept fraction after
  step j is d^(j/n) (the source's rate r = 1 − d^(1/n) of the survivors per step). Our change,
  required for an exact comparison: each step keeps exactly round(D·d^(j/n)) weights (the source
  prunes ⌈r·alive⌉, which drifts from the target), so the last step lands on round(d·D) exactly.
Phase 2 (fine-tuning): the network is reset to its initial values (signed-constant weights, zero
biases, fresh BN) and trained under the final alive mask for E epochs with the task's recipe. The
mask is the alive set (``unflag_before_finetune``: ``round_model(..., 'all_ones')``), so the
density is exactly the target.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import replace

import torch
from torch import nn
from torch.func import functional_call

from ..data import TensorData
from ..io import PrunelimitError
from ..models import build_model, prunable_parameters
from ..prune import count_kept, derived_seed, masked_weights_zero
from ..sparsity import check_sparsity, keep_count
from ..train import Masks, TrainConfig, evaluate, train

log = logging.getLogger("prunelimit")


@torch.no_grad()
def signed_constant_(model: nn.Module) -> None:
    """Set every prunable weight to sign(w)·√(2/fan_in) in place (fan_in = weight[0].numel())."""
    for _, p in prunable_parameters(model):
        fan_in = p[0].numel()
        sign = torch.where(p >= 0, torch.ones_like(p), -torch.ones_like(p))
        p.copy_(sign * math.sqrt(2.0 / fan_in))


class ScoredNetwork(nn.Module):
    """A frozen network whose prunable weights are w₀ ⊙ 1[s > 0.5] ⊙ alive, trainable scores s only.

    The base network is held but not registered as a submodule, so ``parameters()`` are the
    scores alone and nothing else can be updated by an optimiser built on them.
    """

    def __init__(self, base: nn.Module, generator: torch.Generator):
        super().__init__()
        object.__setattr__(self, "base", base)
        self.names = [name for name, _ in prunable_parameters(base)]
        self.keys = {name: name.replace(".", "__") for name in self.names}
        self.scores = nn.ParameterDict()
        for name, p in prunable_parameters(base):
            key = self.keys[name]
            self.scores[key] = nn.Parameter(torch.rand(p.shape, generator=generator).to(p.device))
            self.register_buffer(f"alive__{key}", torch.ones_like(p))
        for p in base.parameters():
            p.requires_grad_(False)

    def alive(self, name: str) -> torch.Tensor:
        return getattr(self, f"alive__{self.keys[name]}")

    def train(self, mode: bool = True) -> ScoredNetwork:
        super().train(mode)
        self.base.train(mode)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = {}
        params = dict(self.base.named_parameters())
        for name in self.names:
            s = self.scores[self.keys[name]]
            with torch.no_grad():
                s.clamp_(0.0, 1.0)  # [source] scores projected to [0, 1] before each forward
            hard = (s > 0.5).to(s.dtype)
            ste = hard + s - s.detach()  # value 1[s > 0.5], gradient straight through to s
            weights[name] = params[name] * ste * self.alive(name)
        return functional_call(self.base, weights, (x,))

    def masks(self) -> Masks:
        return {name: self.alive(name).clone() for name in self.names}

    @torch.no_grad()
    def freeze_lowest(self, keep: int) -> None:
        """Keep the ``keep`` alive weights of highest score (ties: lower flat index), freeze the rest."""
        flat_s = torch.cat([self.scores[self.keys[n]].detach().reshape(-1) for n in self.names]).double()
        flat_a = torch.cat([self.alive(n).reshape(-1) for n in self.names]).bool()
        if keep > int(flat_a.sum()):
            raise PrunelimitError(f"cannot keep {keep} weights: only {int(flat_a.sum())} are alive")
        ranked = torch.where(flat_a, flat_s, torch.full_like(flat_s, -1.0))
        order = torch.sort(ranked, descending=True, stable=True).indices
        new = torch.zeros_like(flat_a)
        new[order[:keep]] = True
        i = 0
        for n in self.names:
            a = self.alive(n)
            a.copy_(new[i:i + a.numel()].view_as(a).to(a.dtype))
            i += a.numel()


def prune_schedule(epochs: int, every: int) -> int:
    """Number of pruning steps n = ⌊(E − 1)/T⌋ [source: ``get_prune_rate``]."""
    n = (int(epochs) - 1) // int(every)
    if n < 1:
        raise PrunelimitError(f"baselines.rare_gems.prune_every ({every}) must be below the task's epochs - 1 "
                              f"({epochs - 1}) so that at least one pruning step happens")
    return n


def run_rare_gems(spec: dict, data: TensorData, sparsity: float, seed: int, *, prune_every: int = 5,
                  score_l2: float = 1e-5, score_lr: float = 0.1, progress: bool = False) -> dict:
    """Rare Gems on task ``spec`` at ``sparsity`` (fraction removed) with ``seed``."""
    s = check_sparsity(sparsity)
    if not 0 < s < 1:
        raise PrunelimitError(f"Rare Gems needs a sparsity strictly between 0 and 1, got {sparsity}")
    if score_l2 < 0 or score_lr <= 0:
        raise PrunelimitError(f"baselines.rare_gems needs score_l2 ≥ 0 and score_lr > 0, got {score_l2}, {score_lr}")
    task_cfg = replace(TrainConfig.from_dict({**spec["train"], "l1": 0.0}), seed=int(seed))
    n_steps = prune_schedule(task_cfg.epochs, prune_every)
    device = data.x_train.device
    model = build_model(spec["model"], data.in_shape, data.num_classes, seed=int(seed),
                        **spec.get("model_args", {})).to(device)
    signed_constant_(model)
    initial = copy.deepcopy(model)  # phase 2 starts from these values
    w0 = {n: p.detach().clone() for n, p in prunable_parameters(model)}
    total = sum(p.numel() for p in w0.values())
    density = 1.0 - s

    scored = ScoredNetwork(model, torch.Generator().manual_seed(derived_seed(seed, "rare_gems_scores")))
    steps_done = [0]

    def on_epoch(epoch: int, record: dict) -> None:
        if epoch % prune_every == 0 and epoch != 0 and steps_done[0] < n_steps:
            steps_done[0] += 1
            j = steps_done[0]
            keep = keep_count(total, s) if j == n_steps else keep_count(total, 1.0 - density ** (j / n_steps))
            scored.freeze_lowest(keep)
            record["alive"] = keep

    score_cfg = replace(task_cfg, lr=float(score_lr), weight_decay=2.0 * float(score_l2))
    train(scored, data, score_cfg, progress=progress, desc="Rare Gems scores", on_epoch=on_epoch)
    if steps_done[0] != n_steps:
        raise PrunelimitError(f"Rare Gems ran {steps_done[0]} of {n_steps} pruning steps")
    score_test_loss, score_test_acc = evaluate(scored, data.x_test, data.y_test)
    masks = scored.masks()
    kept = count_kept(masks)
    above_half = int(sum(((scored.scores[scored.keys[n]] > 0.5) & (masks[n] > 0)).sum().item() for n in masks))
    weights_untouched = all(torch.equal(p.detach(), w0[n]) for n, p in prunable_parameters(model))

    finetuned = initial
    train(finetuned, data, task_cfg, masks=masks, progress=progress, desc="Rare Gems fine-tune")
    test_loss, test_acc = evaluate(finetuned, data.x_test, data.y_test)
    train_loss, train_acc = evaluate(finetuned, data.x_train, data.y_train)
    zero_ok = masked_weights_zero(finetuned, masks)
    return {
        "sparsity": s, "kept": kept, "n_prunable": total, "density": kept / total,
        "test_acc": test_acc, "test_loss": test_loss, "train_acc": train_acc, "train_loss": train_loss,
        "score_phase": {"test_acc": score_test_acc, "test_loss": score_test_loss, "pruning_steps": n_steps,
                        "prune_every": prune_every, "alive_scores_above_half": above_half,
                        "weights_untouched": weights_untouched},
        "masked_weights_zero": zero_ok,
    }
