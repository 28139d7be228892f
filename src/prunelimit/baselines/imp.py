"""IMP: iterative magnitude pruning with weight rewinding (lottery tickets; Frankle et al. 2019/2020).

Algorithm as in facebookresearch/open_lth (``lottery`` runner, ``pruning/sparse_global.py``):
train the dense network once, saving its state at the rewind point; then in every round (a
*level*) prune a fraction of the surviving prunable weights by global magnitude of the last
trained weights, rewind the whole model state (weights, biases, BN) to the rewind point, and
retrain under the mask for the rest of the schedule (``start_epoch`` = rewind epoch, the
learning-rate schedule continues from there, fresh optimiser). Rewind epoch 0 is the original
lottery ticket (reset to the initialisation).

Round schedule (our choice, stated): the paper prunes a fixed 20% of the remaining weights per
round, so density 0.8^j after j rounds, which meets a target like 50% only approximately. Here
one trajectory serves every target sparsity of the config: between consecutive target densities
d_prev > d_next the trajectory takes n = ⌈log(d_next/d_prev) / log(1 − f)⌉ rounds, each keeping
the same fraction (d_next/d_prev)^(1/n) ≥ 1 − f of the survivors. Per-round fractions therefore
never exceed f and compose exactly to each target (kept counts round((d·D)) at the targets).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, replace

import torch

from ..data import TensorData
from ..io import PrunelimitError
from ..models import count_prunable
from ..prune import count_kept, magnitude_masks, masked_weights_zero
from ..sparsity import check_sparsity, keep_count
from ..train import TrainConfig, apply_masks, evaluate, initial_model, steps_per_epoch, train

log = logging.getLogger("prunelimit")


def round_densities(targets: Sequence[float], fraction: float) -> list[tuple[float, float | None]]:
    """Per-round (density after the round, target sparsity reached in that round or None).

    ``targets`` are sparsities; densities decrease geometrically between consecutive targets
    with per-round pruning fraction ≤ ``fraction`` and hit each target exactly.
    """
    if not 0 < fraction < 1:
        raise PrunelimitError(f"baselines.imp.fraction_per_round must lie in (0, 1), got {fraction}")
    sparsities = sorted({check_sparsity(s, "IMP target sparsity") for s in targets})
    if not sparsities or sparsities[-1] >= 1.0 or sparsities[0] <= 0.0:
        raise PrunelimitError(f"IMP target sparsities must lie strictly between 0 and 1, got {list(targets)}")
    schedule: list[tuple[float, float | None]] = []
    d_prev = 1.0
    for s in sparsities:
        d_next = 1.0 - s
        n = max(1, math.ceil(math.log(d_next / d_prev) / math.log(1.0 - fraction) - 1e-9))
        step = (d_next / d_prev) ** (1.0 / n)
        for j in range(1, n + 1):
            schedule.append((d_next if j == n else d_prev * step**j, s if j == n else None))
        d_prev = d_next
    return schedule


def run_imp(spec: dict, data: TensorData, sparsities: Sequence[float], seed: int, *, fraction_per_round: float = 0.2,
            rewind_epoch: int = 0, trained_dense: tuple[dict, dict] | None = None,
            progress: bool = False) -> list[dict]:
    """Run one IMP trajectory for task ``spec`` (dense recipe, ``seed``); one result per target sparsity.

    ``trained_dense``: (state_dict, training config as metrics.json records it) of a dense model
    the pipeline already trained with this very recipe and seed (the train rule's dense variant).
    Its training is then not repeated: training is deterministic, so IMP's own dense run would give
    these weights bit for bit. Only the first ``rewind_epoch`` epochs run again, for the rewind
    point. A model trained with any other recipe or seed is refused.
    """
    cfg = replace(TrainConfig.from_dict({**spec["train"], "l1": 0.0}), seed=int(seed))
    if not 0 <= rewind_epoch < cfg.epochs:
        raise PrunelimitError(f"baselines.imp.rewind_epoch must lie in [0, {cfg.epochs}) (the task's epochs), "
                              f"got {rewind_epoch}")
    schedule = round_densities(sparsities, fraction_per_round)
    model = initial_model(spec, data, cfg, int(seed))
    rewind_state: dict[str, torch.Tensor] = {}

    def snapshot(epoch: int, _record: dict) -> None:
        if epoch + 1 == rewind_epoch:
            rewind_state.update(copy.deepcopy(model.state_dict()))

    if rewind_epoch == 0:
        rewind_state.update(copy.deepcopy(model.state_dict()))
    if trained_dense is None:
        train(model, data, cfg, progress=progress, desc="IMP dense", on_epoch=snapshot)
    else:
        state, trained_cfg = trained_dense
        if TrainConfig.from_dict(trained_cfg) != cfg:
            raise PrunelimitError(f"IMP of {spec.get('task')} (seed {seed}) cannot take over a dense model trained "
                                  f"with another recipe: {trained_cfg} is not {asdict(cfg)}")
        if rewind_epoch > 0:  # the same seeds give the same first epochs: run them again to the rewind point
            steps = rewind_epoch * steps_per_epoch(cfg, len(data.x_train))
            steps = steps if cfg.max_steps is None else min(cfg.max_steps, steps)
            to_rewind = replace(cfg, max_steps=steps, recalibrate_batchnorm=False)
            train(model, data, to_rewind, progress=progress, desc="IMP to the rewind point", on_epoch=snapshot)
        model.load_state_dict(state)
    dense_test_loss, dense_test_acc = evaluate(model, data.x_test, data.y_test)
    total = count_prunable(model)
    masks = None
    results, rounds = [], []
    retrain_cfg = replace(cfg, start_epoch=rewind_epoch)
    for j, (density, target) in enumerate(schedule, start=1):
        step_sparsity = target if target is not None else 1.0 - density  # targets exactly, no round-off
        masks = magnitude_masks(model, step_sparsity, alive=masks)  # prune the last trained weights
        model.load_state_dict(rewind_state)  # rewind every parameter and buffer
        apply_masks(model, masks)
        train(model, data, retrain_cfg, masks=masks, progress=progress, desc=f"IMP round {j}")
        test_loss, test_acc = evaluate(model, data.x_test, data.y_test)
        kept = count_kept(masks)
        rounds.append({"round": j, "density": kept / total, "test_acc": test_acc})
        log.info("IMP round %d: density %.4f, test acc %.4f", j, kept / total, test_acc)
        if target is not None:
            if kept != keep_count(total, target):
                raise PrunelimitError(f"IMP kept {kept} weights at target sparsity {target}, "
                                      f"expected {keep_count(total, target)}")
            train_loss, train_acc = evaluate(model, data.x_train, data.y_train)
            results.append({
                "sparsity": target, "kept": kept, "n_prunable": total, "density": kept / total,
                "test_acc": test_acc, "test_loss": test_loss, "train_acc": train_acc, "train_loss": train_loss,
                "rounds": j, "round_history": list(rounds), "dense_test_acc": dense_test_acc,
                "dense_test_loss": dense_test_loss, "masked_weights_zero": masked_weights_zero(model, masks),
            })
    return results

