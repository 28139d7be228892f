"""Tests of prunelimit.prune: exact global magnitude masks, the in-place sweep, the actual thresholds
on the official grid, iterative pruning. Each checks against an independent computation (numpy brute force,
torch.nn.utils.prune, explicit deep copies, a dense grid)."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunelimit.data import TensorData
from prunelimit.io import PrunelimitError
from prunelimit.models import build_model, prunable_parameters
from prunelimit.prune import (
    count_kept,
    derived_seed,
    iterative_prune,
    keep_count,
    magnitude_masks,
    magnitude_ranking,
    official_threshold,
    one_shot_sweep,
    retrain_config,
    sweep_and_threshold,
    threshold_grid,
    thresholds_from_curve,
    tolerance_threshold,
)
from prunelimit.settings import PruneSettings, ThresholdSettings
from prunelimit.train import TrainConfig, evaluate, train


def blobs(n_train: int = 240, n_test: int = 120, classes: int = 3, seed: int = 0) -> TensorData:
    """Gaussian class blobs as 1×4×4 images: learnable in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    centres = 1.5 * torch.randn(classes, 16, generator=g)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        x = centres[y] + torch.randn(n, 16, generator=g)
        return x.view(n, 1, 4, 4), y

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return TensorData(x_tr, y_tr, x_te, y_te, classes)


class TinyConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc1 = nn.Linear(64, 12)
        self.fc2 = nn.Linear(12, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(torch.relu(self.bn(self.conv(x))).flatten(1))))


def flat_weights(model: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for _, p in prunable_parameters(model)]).numpy()


def flat_masks(masks: dict, model: nn.Module) -> np.ndarray:
    return torch.cat([masks[n].reshape(-1) for n, _ in prunable_parameters(model)]).numpy()


@pytest.mark.parametrize("sparsity", [0.0, 0.1, 1 / 3, 0.5, 0.77, 0.9, 0.999, 1.0])
def test_mask_keeps_exact_count_of_largest_weights(sparsity):
    model = build_model("mlp", (1, 4, 4), 3, seed=1, hidden=[7, 5])
    w = np.abs(flat_weights(model))
    d = w.size
    expected = int(np.floor((1 - sparsity) * d + 0.5))
    mask = flat_masks(magnitude_masks(model, sparsity), model)
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert int(mask.sum()) == expected
    top = np.argsort(-w, kind="stable")[:expected]  # brute force: the `expected` largest |w|
    assert set(np.flatnonzero(mask)) == set(top)
    if 0 < expected < d:
        assert w[mask == 1].min() >= w[mask == 0].max()


def test_keep_count_rounds_half_up_and_rejects_bad_sparsity():
    assert keep_count(10, 0.25) == 8  # 7.5 → 8
    assert keep_count(10, 0.35) == 7  # 6.5 → 7 (not banker's 6)
    assert keep_count(7, 1.0) == 0 and keep_count(7, 0.0) == 7
    with pytest.raises(PrunelimitError, match="sparsity"):
        keep_count(10, 1.5)


def test_ties_are_broken_by_lower_flat_index_deterministically():
    model = build_model("mlp", (1, 2, 2), 2, seed=0, hidden=[3])
    with torch.no_grad():
        for _, p in prunable_parameters(model):
            p.copy_(torch.tensor([1.0, -1.0, 0.5]).repeat(p.numel())[: p.numel()].view_as(p))
    w = np.abs(flat_weights(model))
    for s in (0.3, 0.5, 0.8):
        mask = flat_masks(magnitude_masks(model, s), model)
        k = keep_count(w.size, s)
        # independent rule: sort by (-|w|, index) and keep the first k
        expected = sorted(range(w.size), key=lambda i: (-w[i], i))[:k]
        assert set(np.flatnonzero(mask)) == set(expected)
        assert np.array_equal(mask, flat_masks(magnitude_masks(model, s), model))


@pytest.mark.parametrize("sparsity", [0.2, 0.55, 0.9])
def test_agrees_with_torch_global_unstructured_l1(sparsity):
    torch.manual_seed(3)
    model = TinyConvNet()
    ours = magnitude_masks(model, sparsity)
    reference = copy.deepcopy(model)
    params = [(m, "weight") for m in reference.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    d = sum(m.weight.numel() for m, _ in params)
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured,
                                    amount=d - keep_count(d, sparsity))  # an int amount: exact count
    ref_masks = {f"{name}.weight": m.weight_mask for name, m in reference.named_modules() if hasattr(m, "weight_mask")}
    assert set(ref_masks) == set(ours)
    for name in ours:
        assert torch.equal(ours[name], ref_masks[name]), name


def test_alive_restricts_ranking_to_survivors():
    model = build_model("mlp", (1, 4, 4), 3, seed=2, hidden=[6])
    first = magnitude_masks(model, 0.5)
    with torch.no_grad():  # make pruned weights huge: they must still not come back
        for n, p in prunable_parameters(model):
            p.add_(100.0 * (1 - first[n]))
    second = magnitude_masks(model, 0.75, alive=first)
    assert count_kept(second) == keep_count(sum(m.numel() for m in first.values()), 0.75)
    for n in first:
        assert torch.all(second[n] <= first[n])


def test_in_place_sweep_matches_pruned_copies_and_restores_weights():
    data = blobs()
    model = build_model("mlp", (1, 4, 4), 3, seed=0, hidden=[16, 8])
    train(model, data, TrainConfig(epochs=3, batch_size=32, lr=0.05), progress=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grid = [0.0, 0.3, 0.6, 0.9, 1.0]
    rows = one_shot_sweep(model, data, grid, train_every=1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for s, row in zip(grid, rows):
        pruned = copy.deepcopy(model)
        masks = magnitude_masks(pruned, s)
        with torch.no_grad():
            for n, p in prunable_parameters(pruned):
                p.mul_(masks[n])
        test_loss, test_acc = evaluate(pruned, data.x_test, data.y_test)
        train_loss, train_acc = evaluate(pruned, data.x_train, data.y_train)
        assert row["test_acc"] == test_acc and row["train_acc"] == train_acc
        assert row["test_loss"] == pytest.approx(test_loss, rel=1e-6)
        assert row["train_loss"] == pytest.approx(train_loss, rel=1e-6)
        assert row["kept"] == count_kept(masks)


def test_threshold_grid_is_the_official_tenth_of_a_percent_grid():
    grid = threshold_grid(1000)
    assert len(grid) == 1000 and grid[0] == 0.0 and grid[-1] == 0.999
    assert grid[150] == 0.15  # i/1000 exactly, no 0.15000000000000002
    with pytest.raises(PrunelimitError, match="grid"):
        threshold_grid(1)


def brute_force_official(sparsities, accuracies):
    """The official loop, transcribed: scan down from the last grid point, stop at the first
    accuracy strictly above the unpruned one."""
    for i in range(len(sparsities) - 1, -1, -1):
        if accuracies[i] > accuracies[0]:
            return sparsities[i]
    return None


def brute_force_tolerance(sparsities, accuracies, tol):
    best = None
    for s, a in zip(sparsities, accuracies):
        if a >= accuracies[0] - tol - 1e-12:
            best = s
    return best


@pytest.mark.parametrize("seed", range(6))
def test_thresholds_equal_a_brute_force_scan_on_non_monotone_curves(seed):
    rng = np.random.default_rng(seed)
    grid = threshold_grid(1000)
    # a cliff at a random sparsity, noise of a few samples before it, and recoveries after it
    cliff = rng.uniform(0.3, 0.95)
    correct = np.where(grid < cliff, 300 + rng.integers(-3, 4, grid.size), rng.integers(30, 310, grid.size))
    acc = correct / 360.0
    acc[0] = 300 / 360.0
    non_monotone = np.any(np.diff(acc[grid < cliff]) > 0) and np.any(acc[grid >= cliff] >= acc[0])
    assert non_monotone, "the test curve must recover after dropping"
    assert official_threshold(grid, acc) == brute_force_official(list(grid), list(acc))
    for tol in (0.0, 0.005, 0.01, 0.02):
        assert tolerance_threshold(grid, acc, tol) == brute_force_tolerance(list(grid), list(acc), tol)
    out = thresholds_from_curve([{"sparsity": s, "test_acc": a} for s, a in zip(grid, acc)])
    assert out["official_sparsity"] == brute_force_official(list(grid), list(acc))
    assert out["tolerance_sparsity"]["0.02"] >= out["tolerance_sparsity"]["0"]


def test_official_threshold_is_undefined_when_nothing_beats_the_unpruned_model():
    grid, acc = [0.0, 0.25, 0.5, 0.75], [0.9, 0.9, 0.9, 0.1]
    assert official_threshold(grid, acc) is None
    out = thresholds_from_curve([{"sparsity": s, "test_acc": a} for s, a in zip(grid, acc)])
    assert out["actual_sparsity"] == 0.5 and out["actual_criterion"].startswith("tolerance 0")
    assert thresholds_from_curve([{"sparsity": s, "test_acc": a} for s, a in
                                  zip(grid, [0.9, 0.95, 0.9, 0.1])])["actual_sparsity"] == 0.25


def test_threshold_scan_needs_the_unpruned_point_first():
    with pytest.raises(PrunelimitError, match="sparsity 0"):
        official_threshold([0.5, 0.6], [1.0, 1.0])
    with pytest.raises(PrunelimitError, match="tolerance"):
        tolerance_threshold([0.0, 0.5], [1.0, 1.0], -0.1)


def test_sweep_and_threshold_matches_pruned_copies_on_every_grid_point():
    data = blobs(seed=1)
    model = build_model("mlp", (1, 4, 4), 3, seed=1, hidden=[16, 8])
    train(model, data, TrainConfig(epochs=4, batch_size=32, lr=0.05), progress=False)
    curve, actual = sweep_and_threshold(model, data, ThresholdSettings(grid=50, tolerances=(0.0, 0.01)),
                                        train_every=10)
    assert len(curve) == 50 and curve[-1]["sparsity"] == 0.98
    assert list(actual["tolerance_sparsity"]) == ["0", "0.01"]  # the settings' tolerances, none of their own
    for row in curve[::7]:
        pruned = copy.deepcopy(model)
        apply = magnitude_masks(pruned, row["sparsity"])
        with torch.no_grad():
            for n, p in prunable_parameters(pruned):
                p.mul_(apply[n])
        assert row["test_acc"] == evaluate(pruned, data.x_test, data.y_test)[1]
    assert all(math.isnan(r["train_acc"]) == (i % 10 != 0) for i, r in enumerate(curve))
    accs = [r["test_acc"] for r in curve]
    assert actual["official_sparsity"] == brute_force_official([r["sparsity"] for r in curve], accs)
    assert actual["dense_test_acc"] == evaluate(model, data.x_test, data.y_test)[1]


def test_threshold_settings_on_another_grid_keep_the_criteria():
    """The magnitude-scaling experiment's settings: the prune section's tolerances on theory.scaling_grid."""
    prune = PruneSettings.from_section({"grid": 1000, "tolerances": [0, 0.005], "train_every": 5})
    assert isinstance(prune, ThresholdSettings)  # the sweep rule hands the prune section over as it is
    assert prune.with_grid(200) == ThresholdSettings(grid=200, tolerances=(0, 0.005))


def test_iterative_prune_follows_predictions_and_keeps_pruned_weights_zero():
    data = blobs(seed=5)
    model = build_model("mlp", (1, 4, 4), 3, seed=5, hidden=[16, 8])
    train(model, data, TrainConfig(epochs=3, batch_size=32, lr=0.05), progress=False)
    d = sum(p.numel() for _, p in prunable_parameters(model))
    seen = []

    def predict(m):  # stand-in for the theory: half of the remaining weights are prunable
        zero = sum(int((p == 0).sum()) for _, p in prunable_parameters(m))
        seen.append(zero)
        s = zero / d
        return {"predicted_sparsity": s + 0.5 * (1 - s), "lower_sparsity": s, "upper_sparsity": 1.0}

    cfg = retrain_config({"epochs": 99, "batch_size": 32, "lr": 0.05, "warmup_epochs": 3}, epochs=2, weight_decay=0.0)
    assert cfg.epochs == 2 and cfg.warmup_epochs == 0
    rows = iterative_prune(model, data, predict, rounds=3, retrain=cfg)
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    for prev, row in zip(rows, rows[1:]):
        expected_kept = keep_count(d, prev["theoretical_sparsity"])
        assert row["sparsity"] == pytest.approx(1 - expected_kept / d)
        assert row["theoretical_sparsity"] >= row["sparsity"]
    # the predictor saw exactly the pruned weights as zeros after retraining (they stayed zero)
    assert seen[1:] == [keep_count(d, 0) - keep_count(d, r["theoretical_sparsity"]) for r in rows[:-1]]
    assert rows[-1]["sparsity"] == pytest.approx(1 - keep_count(d, 0.875) / d)


def test_l2_arm_shrinks_weights():
    data = blobs(seed=6)
    base = build_model("mlp", (1, 4, 4), 3, seed=6, hidden=[16, 8])
    train(base, data, TrainConfig(epochs=3, batch_size=32, lr=0.05), progress=False)

    def run(weight_decay):
        model = copy.deepcopy(base)
        cfg = replace(TrainConfig(epochs=4, batch_size=32, lr=0.05), weight_decay=weight_decay)
        return iterative_prune(model, data, lambda m: {"predicted_sparsity": 0.3}, rounds=1, retrain=cfg)[-1]

    assert run(0.05)["weight_l2"] < run(0.0)["weight_l2"]


def test_derived_seeds_are_stable_and_distinct():
    assert derived_seed(0, "a") == derived_seed(0, "a")
    assert len({derived_seed(0, "a"), derived_seed(0, "b"), derived_seed(1, "a")}) == 3
    # the reason they exist: a generator seeded like the model's init replays the init stream, so
    # uniforms drawn from it line up with the signs of the initial weights
    w = build_model("fc5", (1, 8, 8), 10, seed=0).linear[0].weight.detach()  # first draws of the stream
    same = torch.rand(w.shape, generator=torch.Generator().manual_seed(0)) > 0.5
    fresh = torch.rand(w.shape, generator=torch.Generator().manual_seed(derived_seed(0, "scores"))) > 0.5
    agree = lambda u: ((w > 0) == u).float().mean().item()  # noqa: E731
    assert abs(agree(same) - 0.5) > 0.2
    assert abs(agree(fresh) - 0.5) < 0.01


def test_ranking_rejects_models_without_prunable_weights():
    with pytest.raises(PrunelimitError, match="no prunable"):
        magnitude_ranking(nn.Sequential(nn.ReLU()))
