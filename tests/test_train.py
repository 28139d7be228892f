"""Training loop: determinism, resume after a kill, NaN handling, schedules, masks, augmentation."""

import math

import numpy as np
import pytest
import torch

from prunelimit.data import TensorData, augment_batch, load_tensors, make_digits, prepare_dataset
from prunelimit.models import build_model, prunable_parameters
from prunelimit.train import TrainConfig, evaluate, lr_at, per_batch_loss_std, train, training_loss


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = prepare_dataset("digits", tmp_path_factory.mktemp("data") / "digits.npz", progress=False)
    return load_tensors(path)


def _model(seed=0):
    return build_model("mlp", (1, 8, 8), 10, seed=seed, hidden=[32, 16])


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_same_seed_same_weights_different_seed_differs(digits):
    cfg = TrainConfig(epochs=3, lr=0.05, l1=1e-4, seed=5, augment=True, crop_padding=1)
    a, b, c = _model(), _model(), _model()
    train(a, digits, cfg, progress=False)
    train(b, digits, cfg, progress=False)
    train(c, digits, TrainConfig(**{**cfg.__dict__, "seed": 6}), progress=False)
    assert torch.equal(_weights(a), _weights(b))
    assert not torch.equal(_weights(a), _weights(c))


class Killed(Exception):
    pass


def test_resume_after_kill_gives_identical_weights(digits, tmp_path):
    cfg = TrainConfig(epochs=5, lr=0.05, l1=5e-5, seed=1, augment=True, crop_padding=1, schedule="cosine",
                      warmup_epochs=1)
    reference = _model()
    train(reference, digits, cfg, progress=False)

    ckpt = tmp_path / "resume.pt"

    def kill_at_third_epoch(epoch, record):
        if epoch == 2:
            raise Killed

    interrupted = _model()
    with pytest.raises(Killed):
        train(interrupted, digits, cfg, checkpoint=ckpt, progress=False, on_epoch=kill_at_third_epoch)
    assert ckpt.exists()  # state after two complete epochs
    assert torch.load(ckpt, weights_only=False)["epoch"] == 2

    resumed = _model(seed=99)  # a fresh process would rebuild the model; its init must not matter
    result = train(resumed, digits, cfg, checkpoint=ckpt, progress=False)
    assert torch.equal(_weights(resumed), _weights(reference))
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4, 5]
    assert not ckpt.exists()  # removed once training completes


def test_nan_loss_stops_with_a_clear_error(digits):
    bad = TensorData(digits.x_train.clone(), digits.y_train, digits.x_test, digits.y_test, 10)
    bad.x_train[5, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="training loss is nan at epoch 1"):
        train(_model(), bad, TrainConfig(epochs=1, batch_size=2000), progress=False, desc="mlp")


def test_masks_keep_pruned_weights_zero(digits):
    model = _model()
    masks = {name: (torch.rand_like(p) > 0.7).float() for name, p in prunable_parameters(model)}
    train(model, digits, TrainConfig(epochs=2, lr=0.05, momentum=0.9, weight_decay=1e-3), masks=masks, progress=False)
    for name, p in prunable_parameters(model):
        assert torch.all(p[masks[name] == 0] == 0)
        assert torch.count_nonzero(p[masks[name] == 1]) > 0.9 * masks[name].sum()


def test_training_learns_digits(digits):
    model = _model()
    before = evaluate(model, digits.x_test, digits.y_test)[1]
    train(model, digits, TrainConfig(epochs=15, lr=0.05), progress=False)
    after = evaluate(model, digits.x_test, digits.y_test)[1]
    assert before < 0.3 and after > 0.9


def test_l1_term_is_added_over_prunable_weights_only(digits):
    model = _model()
    x, y = digits.x_train[:64], digits.y_train[:64]
    plain = training_loss(model, x, y, 0.0)
    l1 = sum(p.abs().sum() for n, p in model.named_parameters() if n.endswith("weight"))
    assert training_loss(model, x, y, 0.01).item() == pytest.approx(plain.item() + 0.01 * l1.item(), rel=1e-6)


def test_lr_schedules():
    cos = TrainConfig(epochs=10, lr=1.0, schedule="cosine", warmup_epochs=2)
    assert [lr_at(cos, e) for e in (0, 1)] == [0.5, 1.0]
    assert lr_at(cos, 2) == pytest.approx(1.0)
    assert lr_at(cos, 6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    step = TrainConfig(epochs=200, lr=0.01, schedule="multistep", milestones=[60, 120, 160], gamma=0.5)
    assert [lr_at(step, e) for e in (59, 60, 120, 199)] == pytest.approx([0.01, 0.005, 0.0025, 0.00125])


def test_epsilon_is_the_official_population_std_over_every_batch_of_the_loader():
    # A tiny loader by hand: 10 samples in batches of 4 → 4, 4 and a partial 2, all counted;
    # numpy's population std (ddof 0), the L1 term added to every batch loss [code cal_loss].
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 1, 2, 2, generator=gen), torch.randint(0, 3, (10,), generator=gen)
    data = TensorData(x, y, x[:2], y[:2], 3)
    model = build_model("mlp", (1, 2, 2), 3, seed=0, hidden=[5]).eval()
    order = torch.randperm(10, generator=torch.Generator().manual_seed(7))
    l1, penalty = 1e-2, sum(p.abs().sum() for _, p in prunable_parameters(model)).item()
    with torch.no_grad():
        losses = [torch.nn.functional.cross_entropy(model(x[order[i:i + 4]]), y[order[i:i + 4]]).item() + l1 * penalty
                  for i in (0, 4, 8)]
    mean = sum(losses) / 3
    by_hand = math.sqrt(sum((v - mean) ** 2 for v in losses) / 3)
    assert per_batch_loss_std(model, data, batch_size=4, l1=l1, seed=7) == pytest.approx(by_hand, rel=1e-12)
    # over the augmented loader: the same batches, each cropped and flipped by the pass's generator
    gen = torch.Generator().manual_seed(7)
    order = torch.randperm(10, generator=gen)
    with torch.no_grad():
        aug = [torch.nn.functional.cross_entropy(model(augment_batch(x[order[i:i + 4]], 1, gen)),
                                                 y[order[i:i + 4]]).item() for i in (0, 4, 8)]
    got = per_batch_loss_std(model, data, batch_size=4, seed=7, augment=True, crop_padding=1)
    assert got == pytest.approx(float(np.std(aug)), rel=1e-12)
    assert got != pytest.approx(per_batch_loss_std(model, data, batch_size=4, seed=7), rel=1e-6)


def test_train_task_records_the_l1_regime(digits, tmp_path):
    from prunelimit.io import load_json
    from prunelimit.train import initial_model, l1_shrinkage, lr_at, resolve_l1, train_and_save

    spec = {"task": "t", "variant": "l1", "model": "mlp", "dataset": "digits", "model_args": {"hidden": [8]},
            "train": {"epochs": 20, "lr": 0.05, "l1": 1e-3, "warmup_epochs": 2}}
    x_train = digits.x_train.clone()
    x_train[:, :, 0, :] = 0.0  # the top row of pixels blank: its 8 × 8 first-layer weights never get a data gradient
    data = TensorData(x_train, digits.y_train, digits.x_test, digits.y_test, digits.num_classes)
    train_and_save(spec, data, tmp_path / "m.pt", tmp_path / "m.json", progress=False)
    m = load_json(tmp_path / "m.json")
    per_epoch = len(digits.x_train) // 128
    assert m["l1_shrinkage"] == pytest.approx(1e-3 * per_epoch * (0.025 + 0.05 * 19))
    assert m["l1_shrinkage"] == pytest.approx(l1_shrinkage(TrainConfig(epochs=20, lr=0.05, l1=1e-3, warmup_epochs=2),
                                                           len(digits.x_train), m["steps"]))
    shares = [h["small_weight_share"] for h in m["history"]]
    assert shares[-1] == m["small_weight_share"]
    assert m["small_weight_share_drift_last_tenth"] == shares[-1] - shares[-3]  # 20 epochs: the last tenth is two
    assert m["never_updated_share"] == pytest.approx(8 * 8 / m["n_prunable"])
    # Those 64 weights see only the L1 term: SGD with momentum on λ·sign(w), simulated here from their
    # initial values; the ones it leaves at |w| ≥ 1e-3 are the kept ones (momentum makes the pull ~10 × S).
    cfg = resolve_l1(TrainConfig.from_dict(spec["train"]), len(x_train))
    w = initial_model(spec, data, cfg, cfg.seed).linear[0].weight.detach()[:, :8].clone()  # pixels of row 0
    buf = torch.zeros_like(w)
    for epoch in range(cfg.epochs):
        for _ in range(per_epoch):
            buf = cfg.momentum * buf + cfg.l1 * torch.sign(w)
            w = w - lr_at(cfg, epoch) * buf
    kept = int((w.abs() >= 1e-3).sum())
    assert 0 < kept < 64
    assert m["never_updated_kept_share"] == pytest.approx(kept / m["n_prunable"])
    assert m["loss_std"] == m["loss_std_clean"] > 0  # no augmentation: the loader is the clean data


def test_augment_batch_crops_are_shifted_windows_and_flips_mirror():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    gen = torch.Generator().manual_seed(0)
    out = augment_batch(x, padding=1, generator=gen, flip=False)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for i in range(2):  # each output equals one 4x4 window of its own padded image
        windows = [padded[i, :, a:a + 4, b:b + 4] for a in range(3) for b in range(3)]
        assert any(torch.equal(out[i], w) for w in windows)
    flipped = augment_batch(x, padding=0, generator=torch.Generator().manual_seed(1), flip=True)
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    many = augment_batch(torch.arange(64.0).view(64, 1, 1, 1).expand(64, 1, 2, 2).contiguous(), 0,
                         torch.Generator().manual_seed(2))
    assert many.shape == (64, 1, 2, 2)


def test_digits_split_is_seeded_and_stratified():
    a, b, c = make_digits(seed=0), make_digits(seed=0), make_digits(seed=1)
    assert np.array_equal(a["x_train"], b["x_train"]) and not np.array_equal(a["x_train"], c["x_train"])
    assert a["x_train"].dtype == np.uint8 and a["x_train"].shape[1:] == (1, 8, 8)
    assert len(a["x_train"]) + len(a["x_test"]) == 1797
    counts = np.bincount(a["y_test"], minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: 20% of ~180 per class


def test_l1_shrinkage_target_sets_lambda_so_the_run_reaches_it(digits, tmp_path):
    from prunelimit.io import load_json
    from prunelimit.train import lr_sum, resolve_l1, train_and_save

    cfg = TrainConfig(epochs=7, lr=0.05, warmup_epochs=2, l1_shrinkage=0.02)
    per_epoch = len(digits.x_train) // 128
    by_hand = per_epoch * (0.025 + 0.05 + 0.05 * 5)  # two warm-up epochs at lr/2 and lr, then five at lr
    assert lr_sum(cfg, len(digits.x_train)) == pytest.approx(by_hand)
    assert resolve_l1(cfg, len(digits.x_train)).l1 == pytest.approx(0.02 / by_hand)
    assert resolve_l1(TrainConfig(epochs=7, l1=1e-3), 100).l1 == 1e-3  # no target: λ as given
    with pytest.raises(Exception, match="not both"):
        resolve_l1(TrainConfig(epochs=7, l1=1e-3, l1_shrinkage=0.02), 100)
    spec = {"task": "t", "variant": "l1", "model": "mlp", "dataset": "digits", "model_args": {"hidden": [8]},
            "train": {"epochs": 7, "lr": 0.05, "warmup_epochs": 2, "l1_shrinkage": 0.02}}
    m = train_and_save(spec, digits, tmp_path / "m.pt", tmp_path / "m.json", progress=False)
    assert m["l1_shrinkage"] == pytest.approx(0.02, rel=1e-9)  # the run's own bookkeeping agrees
    # the regime rule's drift: the |w| < 1e-3 share now against a tenth of the epochs earlier (7 // 10 → 1 epoch)
    shares = [h["small_weight_share"] for h in m["history"]]
    assert m["small_weight_share_drift_last_tenth"] == shares[-1] - shares[-2]
    assert load_json(tmp_path / "m.json")["train"]["l1"] == pytest.approx(0.02 / by_hand)


def test_revive_dead_units_leaves_no_unit_silent_on_the_training_set(digits):
    from prunelimit.models import revive_dead_units

    x = digits.x_train
    model = build_model("fc5", (1, 8, 8), 10, seed=0, width=0.25)

    def silent_units(m):
        h, silent = x.flatten(1), []
        for layer in m.linear:
            h = layer(h)
            if isinstance(layer, torch.nn.ReLU):
                silent.append(int(((h > 0).sum(0) == 0).sum()))
        return silent

    with torch.no_grad():
        before = silent_units(model)
        assert sum(before) > 0  # zero biases + Kaiming normal: some units never fire on digits (seed 0)
        untouched = {n: p.clone() for n, p in model.named_parameters()}
        redrawn = revive_dead_units(model, x, seed=0)
        assert silent_units(model) == [0] * len(before)
    changed_rows = sum(int((p != untouched[n]).any(dim=1).sum()) for n, p in model.named_parameters() if p.dim() == 2)
    assert 0 < changed_rows <= redrawn  # only rows of silent units were drawn (some twice); the rest is untouched
    assert all(torch.equal(p, untouched[n]) for n, p in model.named_parameters() if p.dim() == 1)  # biases stay 0
    again = build_model("fc5", (1, 8, 8), 10, seed=0, width=0.25)
    revive_dead_units(again, x, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))  # deterministic


def test_revived_units_are_fresh_draws_not_copies_of_the_initial_weights(digits):
    # build_model(seed=k) initialises from torch's global stream seeded with k; a revival generator
    # seeded with the same k replays that stream: a revived row was the first initial draws again
    # (the first layer's first weights, rescaled to its own layer's Kaiming std), not a fresh draw.
    from prunelimit.models import revive_dead_units

    x = digits.x_train
    model = build_model("fc5", (1, 8, 8), 10, seed=0, width=0.25)
    initial = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() == 2}
    with torch.no_grad():
        assert revive_dead_units(model, x, seed=0) > 0  # the construction of the test above: dead units at init
    # Every initial weight over its layer's Kaiming std: the standard-normal stream init_weights drew, in order.
    stream = torch.cat([w.flatten() / math.sqrt(2.0 / w[0].numel()) for w in initial.values()])
    windows = stream.unfold(0, 8, 1)
    revived_rows = 0
    for name, start in initial.items():
        now = dict(model.named_parameters())[name].detach()
        for row in now[(now != start).any(dim=1)]:
            revived_rows += 1
            assert not (start == row).all(dim=1).any(), f"{name}: a revived row equals a row of the initial weights"
            # nor, rescaled, any stretch of the initial draws (what the old revival's generator replayed)
            stretches = (row / math.sqrt(2.0 / row.numel()))[: row.numel() // 8 * 8].reshape(-1, 8)
            closest = torch.cdist(stretches, windows, p=float("inf")).min()
            assert closest > 1e-4, f"{name}: a revived row repeats 8 initial draws (max |diff| {closest:.1e})"
    assert revived_rows > 0
    again = build_model("fc5", (1, 8, 8), 10, seed=0, width=0.25)
    with torch.no_grad():
        revive_dead_units(again, x, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters()))  # deterministic given seed


def test_revive_dead_units_finds_silent_conv_channels_and_skips_batchnorm_nets(digits):
    from prunelimit.models import revive_dead_units

    plain = build_model("vgg16", (1, 8, 8), 10, seed=0, width=0.125, batch_norm=False)
    first = plain.conv[0]
    with torch.no_grad():
        first.weight[:3] = -first.weight[:3].abs()  # three channels that only ever see ≤ 0 (inputs shifted > 0)
        first.bias.zero_()
    shifted = digits.x_train - digits.x_train.min()
    assert revive_dead_units(plain, shifted, seed=0) >= 3
    with torch.no_grad():
        assert ((first(shifted) > 0).flatten(2).any(-1).any(0)).all()
    normed = build_model("vgg16", (1, 8, 8), 10, seed=0, width=0.125)
    assert revive_dead_units(normed, shifted, seed=0) == 0  # conv → BatchNorm → ReLU: no pair to check


def test_recalibrate_batchnorm_sets_the_statistics_of_the_current_weights():
    from prunelimit.train import recalibrate_batchnorm

    torch.manual_seed(0)
    conv, norm = torch.nn.Conv2d(1, 3, 3, padding=1), torch.nn.BatchNorm2d(3)
    model = torch.nn.Sequential(conv, norm, torch.nn.ReLU()).eval()
    x = torch.randn(64, 1, 5, 5) * 2 + 1
    with torch.no_grad():
        norm.running_mean.fill_(7.0)  # stale statistics of some earlier weights
        norm.running_var.fill_(0.01)
        z = conv(x)
    assert recalibrate_batchnorm(model, x, batch_size=16)
    assert not model.training and norm.momentum == 0.1  # mode and momentum restored
    # equal batches: the cumulative average of the batch means is the mean over x; the variance
    # is the average of the four batches' unbiased variances, as BatchNorm accumulates it
    assert torch.allclose(norm.running_mean, z.mean(dim=(0, 2, 3)), atol=1e-5)
    batch_vars = torch.stack([z[i:i + 16].transpose(0, 1).flatten(1).var(dim=1) for i in range(0, 64, 16)])
    assert torch.allclose(norm.running_var, batch_vars.mean(0), rtol=1e-4)
    assert not recalibrate_batchnorm(torch.nn.Linear(3, 2), x, 16)  # no BatchNorm: nothing to do


def test_train_config_has_no_epochs_of_its_own():
    """Every preset sets its own epochs; the library has none to contradict them: a recipe without them stops."""
    from prunelimit.io import PrunelimitError

    with pytest.raises(PrunelimitError, match="lack epochs"):
        TrainConfig.from_dict({"lr": 0.05})
    with pytest.raises(TypeError, match="epochs"):
        TrainConfig(lr=0.05)
