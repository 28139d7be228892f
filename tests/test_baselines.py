"""Tests of prunelimit.baselines (IMP, Rare Gems, Smart-Ratio, LOMP) and the comparison table, each
against an independent computation (hand-derived ratios, autograd on a plain model,
torch.nn.utils.prune, numpy)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch.nn.utils import prune as torch_prune

from prunelimit.baselines import imp, lomp, rare_gems, run_baseline, smart_ratio
from prunelimit.data import TensorData
from prunelimit.io import PrunelimitError
from prunelimit.models import build_model, prunable_parameters
from prunelimit.sparsity import keep_count
from prunelimit.tables import lomp_vs_baselines_table
from prunelimit.train import TrainConfig, evaluate, train


def blobs(n_train: int = 192, n_test: int = 96, classes: int = 3, seed: int = 0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    centres = 1.5 * torch.randn(classes, 16, generator=g)

    def draw(n):
        y = torch.arange(n) % classes
        return (centres[y] + torch.randn(n, 16, generator=g)).view(n, 1, 4, 4), y

    return TensorData(*draw(n_train), *draw(n_test), classes)


def tiny_spec(epochs: int = 6, **train) -> dict:
    return {"task": "tiny", "variant": "dense", "model": "mlp", "dataset": "blobs",
            "model_args": {"hidden": [16, 8]},
            "train": {"epochs": epochs, "batch_size": 32, "lr": 0.05, "l1": 0.0, "seed": 0, **train}}


def zeros_where_masked(model, masks) -> bool:
    return all(bool((p.detach()[masks[n] == 0] == 0).all()) for n, p in prunable_parameters(model))


# ---------------------------------------------------------------------------------------------
# Smart-Ratio
# ---------------------------------------------------------------------------------------------


def test_smart_ratio_matches_hand_computed_ratios():
    # L = 3, sizes [100, 50, 10], s = 0.5: p1 ∝ (3² + 3)/1² = 12, p2 ∝ (2² + 2)/2² = 1.5, classifier 0.3
    # budget 80 = 0.3·10 + γ(12·100 + 1.5·50)  →  γ = 77 / 1275
    p = smart_ratio.layer_densities([100, 50, 10], 0.5, classifier_ratio=0.3)
    gamma = 77 / 1275
    assert p == pytest.approx([12 * gamma, 1.5 * gamma, 0.3])
    residual = smart_ratio.layer_densities([100, 50, 10], 0.5, classifier_ratio=0.3, residual=True)
    gamma_r = 77 / (12 * 100 + 6 * 50)  # no 1/l² division
    assert residual == pytest.approx([12 * gamma_r, 6 * gamma_r, 0.3])


@pytest.mark.parametrize("sparsity", [0.05, 0.3, 0.5, 0.8, 0.9, 0.99])
@pytest.mark.parametrize("residual", [False, True])
def test_smart_ratio_sums_to_budget_and_follows_formula(sparsity, residual):
    sizes = [432, 2304, 4608, 9216, 18432, 640]
    p = smart_ratio.layer_densities(sizes, sparsity, classifier_ratio=0.3, residual=residual)
    assert np.all((p >= 0) & (p <= 1))
    assert np.dot(p, sizes) == pytest.approx((1 - sparsity) * sum(sizes))
    L = len(sizes)
    formula = np.array([((L - k + 1) ** 2 + (L - k + 1)) / (1 if residual else k**2) for k in range(1, L)])
    body = p[:-1]
    free = body < 1 - 1e-12
    ratio = body[free] / formula[free]  # unclamped layers keep the formula's proportions
    assert np.allclose(ratio, ratio[0])
    assert np.all(formula[~free] >= formula[free].max())  # only the largest-formula layers clamp at 1
    counts = smart_ratio.layer_counts(sizes, sparsity, classifier_ratio=0.3, residual=residual)
    assert counts.sum() == keep_count(sum(sizes), sparsity)
    assert np.all(np.abs(counts - p * np.array(sizes)) < 1.0 + 1e-9)


def test_smart_ratio_clamps_classifier_when_over_budget():
    # classifier of 1000 weights at 0.3 would need 300 > budget 110 (s = 0.9 of 1100)
    p = smart_ratio.layer_densities([100, 1000], 0.9, classifier_ratio=0.3)
    assert p[-1] == pytest.approx(0.1) and p[0] == pytest.approx(0.1)
    # at low sparsity the body saturates and the classifier takes the rest
    q = smart_ratio.layer_densities([100, 100, 10], 0.01, classifier_ratio=0.3)
    assert q[:2] == pytest.approx([1.0, 1.0]) and q[2] == pytest.approx((0.99 * 210 - 200) / 10)
    with pytest.raises(PrunelimitError, match="classifier_ratio"):
        smart_ratio.layer_densities([10, 10], 0.5, classifier_ratio=1.5)


def test_smart_ratio_masks_are_exact_random_and_seeded():
    model = build_model("mlp", (1, 4, 4), 3, seed=0, hidden=[16, 8])
    sizes = [p.numel() for _, p in prunable_parameters(model)]
    counts = smart_ratio.layer_counts(sizes, 0.7)
    a = smart_ratio.smart_ratio_masks(model, 0.7, seed=0)
    b = smart_ratio.smart_ratio_masks(model, 0.7, seed=0)
    c = smart_ratio.smart_ratio_masks(model, 0.7, seed=1)
    assert [int(m.sum()) for m in a.values()] == list(counts)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_smart_ratio_run_trains_under_mask():
    data = blobs()
    result = run_baseline("smart_ratio", tiny_spec(epochs=3), data, 0.6, seed=0, options={"classifier_ratio": 0.3})
    assert result["kept"] == keep_count(result["n_prunable"], 0.6)
    assert result["masked_weights_zero"] is True
    assert result["method"] == "smart_ratio" and result["task"] == "tiny" and result["test_acc"] > 0.5


# ---------------------------------------------------------------------------------------------
# IMP
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("targets, fraction", [([0.5], 0.2), ([0.5, 0.8, 0.9], 0.2), ([0.3, 0.95], 0.5),
                                               ([0.9], 0.2), ([1 - 0.8**3], 0.2)])  # an exact power: 3 rounds
def test_imp_rounds_compose_exactly_to_each_target(targets, fraction):
    schedule = imp.round_densities(targets, fraction)
    densities = [1.0] + [d for d, _ in schedule]
    per_round_kept = [b / a for a, b in zip(densities, densities[1:])]
    assert min(per_round_kept) >= 1 - fraction - 1e-12  # never prunes more than f of the survivors
    reached = [t for _, t in schedule if t is not None]
    assert reached == sorted(targets)
    for t in targets:  # product of per-round kept fractions up to the round reaching t is 1 − t
        j = [i for i, (_, r) in enumerate(schedule) if r == t][0]
        assert math.prod(per_round_kept[: j + 1]) == pytest.approx(1 - t, rel=1e-12)
    # round counts: ⌈log(d_next/d_prev)/log(1 − f)⌉ per segment, computed independently
    bounds = [1.0] + [1 - t for t in sorted(targets)]
    assert len(schedule) == sum(math.ceil(math.log(b / a) / math.log(1 - fraction) - 1e-9)
                                for a, b in zip(bounds, bounds[1:]))


def test_train_start_epoch_continues_the_schedule():
    data = blobs()
    model = build_model("mlp", (1, 4, 4), 3, seed=0, hidden=[4])
    cfg = TrainConfig(epochs=4, batch_size=32, lr=0.1, schedule="cosine", start_epoch=2)
    result = train(model, data, cfg, progress=False)
    assert [h["epoch"] for h in result.history] == [3, 4]
    assert result.history[0]["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * 2 / 4)))


def test_imp_hits_targets_with_shrinking_density_and_zero_pruned_weights():
    data = blobs(seed=1)
    results = imp.run_imp(tiny_spec(epochs=3), data, [0.8, 0.5], seed=0, fraction_per_round=0.5, rewind_epoch=1)
    assert [r["sparsity"] for r in results] == [0.5, 0.8]
    for r in results:
        assert r["kept"] == keep_count(r["n_prunable"], r["sparsity"])
        assert r["masked_weights_zero"] is True
    history = results[-1]["round_history"]
    assert [h["round"] for h in history] == [1, 2, 3]
    assert all(a["density"] > b["density"] for a, b in zip(history, history[1:]))
    with pytest.raises(PrunelimitError, match="rewind_epoch"):
        imp.run_imp(tiny_spec(epochs=3), data, [0.5], seed=0, rewind_epoch=3)


@pytest.mark.parametrize("model, rewind_epoch", [("mlp", 1), ("mlp", 0), ("vgg16", 2)])
def test_imp_takes_over_the_pipelines_dense_model_bit_for_bit(tmp_path, model, rewind_epoch):
    """IMP's seed-0 dense run is the train rule's dense model when the recipes match: taking that
    model over (and rerunning only the epochs before the rewind point) gives IMP's results to the
    last digit, BatchNorm buffers of the rewind point included (vgg16)."""
    from prunelimit.checkpoint import read_state_dict
    from prunelimit.train import train_and_save

    spec = tiny_spec(epochs=4)
    data = blobs(seed=2)
    if model == "vgg16":
        g = torch.Generator().manual_seed(2)
        spec.update(model="vgg16", model_args={"width": 0.0625})
        data = TensorData(torch.randn(96, 1, 8, 8, generator=g), torch.arange(96) % 3,
                          torch.randn(48, 1, 8, 8, generator=g), torch.arange(48) % 3, 3)
    metrics = train_and_save(spec, data, tmp_path / "model.pt", tmp_path / "metrics.json", progress=False)
    state = read_state_dict(tmp_path / "model.pt")
    options = {"fraction_per_round": 0.5, "rewind_epoch": rewind_epoch}
    own = imp.run_imp(spec, data, [0.5, 0.8], seed=0, **options)
    shared = imp.run_imp(spec, data, [0.5, 0.8], seed=0, trained_dense=(state, metrics["train"]), **options)
    assert shared == own
    with pytest.raises(PrunelimitError, match="another recipe"):  # seed 1's dense run is not that model
        imp.run_imp(spec, data, [0.5], seed=1, trained_dense=(state, metrics["train"]), **options)


# ---------------------------------------------------------------------------------------------
# Rare Gems
# ---------------------------------------------------------------------------------------------


def test_signed_constants():
    model = build_model("mlp", (1, 4, 4), 3, seed=0, hidden=[16, 8])
    signs = {n: torch.sign(p.detach()) for n, p in prunable_parameters(model)}
    rare_gems.signed_constant_(model)
    for n, p in prunable_parameters(model):
        fan_in = p.shape[1]
        assert torch.allclose(p.abs(), torch.full_like(p, math.sqrt(2 / fan_in)))
        assert torch.equal(torch.sign(p.detach()), signs[n])


def test_scored_network_forward_and_straight_through_gradient():
    torch.manual_seed(0)
    base = build_model("mlp", (1, 4, 4), 3, seed=0, hidden=[6])
    rare_gems.signed_constant_(base)
    net = rare_gems.ScoredNetwork(base, torch.Generator().manual_seed(7))
    first = net.names[0]
    with torch.no_grad():
        net.alive(first)[0, :3] = 0.0
    x, y = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    # independent: a plain copy whose weights are w0·1[s>0.5]·alive, gradient taken w.r.t. those weights
    plain = copy.deepcopy(base)
    for n, p in prunable_parameters(plain):
        s = net.scores[net.keys[n]].detach()
        p.data = p.data * (s > 0.5).float() * net.alive(n)
        p.requires_grad_(True)
    ref = torch.nn.functional.cross_entropy(plain(x), y)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    ref.backward()
    for (n, p), (_, w0) in zip(prunable_parameters(plain), prunable_parameters(base)):
        expected = p.grad * w0.detach() * net.alive(n)  # d loss/d s = d loss/d w_eff · w0 · alive (STE)
        assert torch.allclose(net.scores[net.keys[n]].grad, expected, atol=1e-7)
    assert list(net.parameters()) == list(net.scores.values())  # only scores can be trained


def test_freeze_lowest_keeps_highest_alive_scores():
    base = build_model("mlp", (1, 2, 2), 2, seed=0, hidden=[3])
    net = rare_gems.ScoredNetwork(base, torch.Generator().manual_seed(0))
    flat = torch.cat([net.scores[net.keys[n]].detach().reshape(-1) for n in net.names])
    net.freeze_lowest(10)
    alive = torch.cat([net.alive(n).reshape(-1) for n in net.names]).bool()
    assert int(alive.sum()) == 10
    assert set(torch.argsort(-flat)[:10].tolist()) == set(torch.nonzero(alive).flatten().tolist())
    net.freeze_lowest(4)  # only among survivors
    alive2 = torch.cat([net.alive(n).reshape(-1) for n in net.names]).bool()
    assert int(alive2.sum()) == 4 and bool((alive2 <= alive).all())
    with pytest.raises(PrunelimitError, match="alive"):
        net.freeze_lowest(5)


@pytest.mark.parametrize("sparsity", [0.5, 0.93])
def test_rare_gems_exact_density_untouched_weights_and_masked_finetune(sparsity):
    data = blobs(seed=2)
    result = rare_gems.run_rare_gems(tiny_spec(epochs=6), data, sparsity, seed=0, prune_every=2,
                                     score_l2=1e-4, score_lr=0.1)
    assert result["kept"] == keep_count(result["n_prunable"], sparsity)
    assert result["score_phase"]["pruning_steps"] == 2  # ⌊(6 − 1)/2⌋
    assert result["score_phase"]["weights_untouched"] is True
    assert result["masked_weights_zero"] is True
    with pytest.raises(PrunelimitError, match="prune_every"):
        rare_gems.run_rare_gems(tiny_spec(epochs=2), data, sparsity, seed=0, prune_every=2)


# ---------------------------------------------------------------------------------------------
# LOMP and the table
# ---------------------------------------------------------------------------------------------


def test_lomp_equals_torch_pruned_copy():
    data = blobs(seed=3)
    model = build_model("mlp", (1, 4, 4), 3, seed=3, hidden=[16, 8])
    train(model, data, TrainConfig(epochs=3, batch_size=32, lr=0.05, l1=1e-4), progress=False)
    reference = copy.deepcopy(model)
    params = [(m, "weight") for m in reference.modules() if isinstance(m, torch.nn.Linear)]
    d = sum(m.weight.numel() for m, _ in params)
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured,
                                    amount=d - keep_count(d, 0.7))
    result = lomp(model, data, 0.7)
    assert result["kept"] == keep_count(d, 0.7)
    assert result["test_acc"] == evaluate(reference, data.x_test, data.y_test)[1]
    assert result["train_acc"] == evaluate(reference, data.x_train, data.y_train)[1]


def test_lomp_rows_read_from_the_sweep_equal_lomp_itself(tmp_path):
    """The LOMP table rows come from the one-shot sweep's CSV, not from running LOMP: the two must
    be the same pruning and evaluation, to the last digit."""
    from prunelimit.io import load_csv
    from prunelimit.prune import CURVE_COLUMNS, one_shot_sweep, save_rows_csv, threshold_grid
    from prunelimit.tables import lomp_rows_from_sweep

    data = blobs(seed=5)
    model = build_model("mlp", (1, 4, 4), 3, seed=5, hidden=[16, 8])
    train(model, data, TrainConfig(epochs=3, batch_size=32, lr=0.05, l1=1e-3), progress=False)
    save_rows_csv(one_shot_sweep(copy.deepcopy(model), data, threshold_grid(20), train_every=2),
                  tmp_path / "curve.csv", CURVE_COLUMNS)
    rows = lomp_rows_from_sweep("t", load_csv(tmp_path / "curve.csv"), [0.5, 0.8, 0.9], seed=7)
    for row in rows:
        direct = lomp(copy.deepcopy(model), data, row["sparsity"])
        assert (row["method"], row["task"], row["seed"]) == ("lomp", "t", 7)
        for key in ("kept", "density", "test_acc", "test_loss", "train_acc", "train_loss"):
            assert row[key] == direct[key], (row["sparsity"], key)
    with pytest.raises(PrunelimitError, match="no grid point"):
        lomp_rows_from_sweep("t", load_csv(tmp_path / "curve.csv"), [0.33], seed=0)


def test_table_cells_are_mean_sd_over_seeds_and_state_the_training():
    results = [
        {"method": "lomp", "task": "t", "sparsity": 0.5, "seed": 0, "test_acc": 0.9, "training": "160 (the L1 model)"},
        {"method": "imp", "task": "t", "sparsity": 0.5, "seed": 0, "test_acc": 0.8, "training": "160 per round",
         "rounds": 4},
        {"method": "imp", "task": "t", "sparsity": 0.5, "seed": 1, "test_acc": 0.9, "training": "160 per round",
         "rounds": 4},
        {"method": "smart_ratio", "task": "t", "sparsity": 0.9, "seed": 0, "test_acc": 0.5, "training": "160"},
    ]
    table = lomp_vs_baselines_table(results, {"t": 0.95}, methods=["imp", "lomp", "smart_ratio", "rare_gems"])
    assert list(table.columns) == ["task", "sparsity_%", "density_%", "dense", "LOMP", "Rare Gems", "IMP",
                                   "Smart-Ratio"]
    row = table.iloc[0]
    assert row["dense"] == "95.00" and row["LOMP"] == "90.00 (1)" and row["Rare Gems"] == ""
    assert row["IMP"] == f"{85.0:.2f} ± {np.std([80.0, 90.0], ddof=1):.2f} (2)"  # sample sd
    assert table.iloc[1]["Smart-Ratio"] == "50.00 (1)" and table.iloc[1]["sparsity_%"] == "90"
    budget = table.iloc[2]
    assert budget["sparsity_%"] == "training epochs" and budget["IMP"] == "160 per round, rounds 4 to 50%"
    assert budget["LOMP"] == "160 (the L1 model)" and budget["Rare Gems"] == ""
    with pytest.raises(PrunelimitError, match="no baseline"):
        lomp_vs_baselines_table([], None)


def test_unknown_method_is_named():
    with pytest.raises(PrunelimitError, match="unknown pruning method 'snip'; known: lomp, rare_gems, imp"):
        run_baseline("snip", tiny_spec(), blobs(), 0.5, 0)
