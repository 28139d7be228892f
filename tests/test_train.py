"""Training loop: determinism, resume after a kill, NaN handling, schedules, masks, augmentation."""

import math

import numpy as np
import pytest
import torch

from prunelimit.data import TensorData, augment_batch, load_tensors, make_digits, make_mnist1d, prepare_dataset
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


def test_per_batch_loss_std_matches_manual(digits):
    model = _model()
    got = per_batch_loss_std(model, digits, batch_size=100, seed=3)
    order = torch.randperm(len(digits.x_train), generator=torch.Generator().manual_seed(3))
    losses = [torch.nn.functional.cross_entropy(model(digits.x_train[order[i:i + 100]]),
                                                digits.y_train[order[i:i + 100]]).item()
              for i in range(0, len(order) - 99, 100)]
    assert got == pytest.approx(float(np.std(losses, ddof=1)), rel=1e-5)


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


def test_mnist1d_is_seeded_balanced_and_learnable_but_not_trivial():
    a, b = make_mnist1d(500, 200, seed=4), make_mnist1d(500, 200, seed=4)
    assert np.array_equal(a["x_train"], b["x_train"])
    assert a["x_train"].shape == (500, 1, 1, 40) and a["x_train"].dtype == np.float32
    assert set(np.bincount(np.concatenate([a["y_train"], a["y_test"]]))) == {70}
    # a linear classifier is far from perfect (the task needs a nonlinear model), far above chance
    from sklearn.linear_model import LogisticRegression
    big = make_mnist1d(2000, 500, seed=0)
    clf = LogisticRegression(max_iter=2000).fit(big["x_train"].reshape(2000, -1), big["y_train"])
    acc = clf.score(big["x_test"].reshape(500, -1), big["y_test"])
    assert 0.2 < acc < 0.9
