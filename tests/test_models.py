"""Model registry: every model on every input shape, the paper's parameter counts, init, prunables."""

import math

import pytest
import torch
from torch import nn

from prunelimit.architectures import ARCHITECTURES
from prunelimit.models import build_model, count_parameters, count_prunable, mlp_linears, prunable_parameters

# (C, H, W) of digits, MNIST-1D, CIFAR, TinyImageNet
SHAPES = [(1, 8, 8), (1, 1, 40), (3, 32, 32), (3, 64, 64)]
SMALL = {"alexnet": {"width": 0.125, "resize": 64}, "vgg16": {"width": 0.125},
         "resnet18": {"width": 0.125}, "resnet50": {"width": 0.125}, "fc12": {"width": 0.25}}


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_every_model_every_shape(name, shape):
    model = build_model(name, shape, 7, seed=0, **SMALL.get(name, {})).eval()
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()


def _fc_param_count(sizes):
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def test_paper_parameter_counts_on_cifar_input():
    # Official code (model.py): FC = 3072-1000-600-300-100-10, FC12 = 3072-1000-900-…-100-10, with biases.
    assert count_parameters(build_model("fc5", (3, 32, 32), 10)) == _fc_param_count([3072, 1000, 600, 300, 100, 10])
    fc12 = [3072, 1000, 900, 800, 750, 700, 650, 600, 500, 400, 200, 100, 10]
    assert count_parameters(build_model("fc12", (3, 32, 32), 10)) == _fc_param_count(fc12)
    assert count_parameters(build_model("fc5", (3, 32, 32), 10)) == 3_885_010


def test_alexnet_at_paper_resolution_has_official_feature_size():
    model = build_model("alexnet", (3, 32, 32), 10)
    assert model.linear[0].in_features == 256 * 5 * 5  # official: nn.Linear(256*5*5, 4096)
    feats = model.conv(torch.randn(1, 3, 224, 224))
    assert feats.shape == (1, 256, 5, 5)


def test_resnet_parameter_counts_match_cifar_resnets():
    # kuangliu/pytorch-cifar ResNet18 on CIFAR-10 has 11,173,962 parameters; ResNet50 23,520,842.
    assert count_parameters(build_model("resnet18", (3, 32, 32), 10)) == 11_173_962
    assert count_parameters(build_model("resnet50", (3, 32, 32), 10)) == 23_520_842


def test_prunable_parameters_are_conv_and_linear_weights_only():
    model = build_model("vgg16", (3, 32, 32), 10, width=0.125)
    names = [n for n, _ in prunable_parameters(model)]
    assert all(n.endswith("weight") for n in names)
    modules = dict(model.named_modules())
    assert all(isinstance(modules[n.rsplit(".", 1)[0]], (nn.Conv2d, nn.Linear)) for n in names)
    n_conv_linear = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert len(names) == n_conv_linear  # first conv and last linear included
    expected = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert count_prunable(model) == expected < count_parameters(model)


def test_kaiming_normal_init_zero_bias():
    model = build_model("fc5", (3, 32, 32), 10, seed=3)
    first = model.linear[0]
    assert torch.all(first.bias == 0)
    std = first.weight.std().item()
    assert std == pytest.approx(math.sqrt(2.0 / 3072), rel=0.02)  # kaiming normal, ReLU gain, fan_in


def test_seeded_build_is_reproducible_and_seed_sensitive():
    a = build_model("mlp", (1, 8, 8), 10, seed=1)
    b = build_model("mlp", (1, 8, 8), 10, seed=1)
    c = build_model("mlp", (1, 8, 8), 10, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.linear[0].weight, c.linear[0].weight)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        build_model("resnet19", (3, 32, 32), 10)


# ---------------------------------------------------------------------------------------------
# The CHITA / WoodFisher / CBS benchmark nets: MLPNet (MNIST) and ResNet20 (CIFAR-10)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32)], ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ["mlpnet", "resnet20"])
def test_benchmark_nets_give_one_logit_per_class(name, shape):
    model = build_model(name, shape, 10, seed=0).eval()
    out = model(torch.randn(5, *shape))
    assert out.shape == (5, 10) and torch.isfinite(out).all()


def test_mlpnet_is_784_40_20_10_without_biases():
    model = build_model("mlpnet", (1, 28, 28), 10, seed=0)
    assert [n for n, _ in model.named_parameters() if "bias" in n] == []
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features, m.bias) for m in linears] == [(784, 40, None), (40, 20, None),
                                                                           (20, 10, None)]
    assert count_prunable(model) == count_parameters(model) == 784 * 40 + 40 * 20 + 20 * 10 == 32_360
    digits = build_model("mlpnet", (1, 8, 8), 10)
    assert count_prunable(digits) == count_parameters(digits) == 64 * 40 + 40 * 20 + 20 * 10 == 3_560


def test_resnet20_parameter_counts_on_cifar10():
    # He et al. 2016's CIFAR ResNet20 with 1x1 conv + BN shortcuts (option B), written out layer by layer:
    # convs (3x3 unless said), BatchNorms (weight and bias: 2 per channel), the classifier with its bias.
    convs = (3 * 16 * 9  # stem
             + 6 * 16 * 16 * 9  # stage 1: three blocks of two 16->16 convs
             + 16 * 32 * 9 + 32 * 32 * 9 + 16 * 32  # stage 2, block 1: stride 2, 1x1 shortcut 16->32
             + 4 * 32 * 32 * 9  # stage 2, blocks 2 and 3
             + 32 * 64 * 9 + 64 * 64 * 9 + 32 * 64  # stage 3, block 1: stride 2, 1x1 shortcut 32->64
             + 4 * 64 * 64 * 9)  # stage 3, blocks 2 and 3
    batchnorms = 2 * (16 + 6 * 16 + (7 * 32) + (7 * 64))  # stem; 6 in stage 1; 6 + shortcut's in stages 2, 3
    classifier_weights, classifier_bias = 64 * 10, 10
    assert convs + classifier_weights == 270_896
    assert convs + classifier_weights + batchnorms + classifier_bias == 272_474  # "about 272k"
    model = build_model("resnet20", (3, 32, 32), 10)
    assert count_prunable(model) == 270_896
    assert count_parameters(model) == 272_474
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model.linear.bias is not None


def test_resnet20_has_shortcut_convs_exactly_at_the_two_downsampling_blocks():
    model = build_model("resnet20", (3, 32, 32), 10)
    blocks = [(f"layers.{s}.{b}", block) for s, stage in enumerate(model.layers) for b, block in enumerate(stage)]
    assert len(blocks) == 9 and [len(stage) for stage in model.layers] == [3, 3, 3]
    with_conv = [name for name, block in blocks if any(isinstance(m, nn.Conv2d) for m in block.shortcut.modules())]
    assert with_conv == ["layers.1.0", "layers.2.0"]
    for name, block in blocks:
        assert block.conv1.stride == ((2, 2) if name in with_conv else (1, 1))
        assert isinstance(block.shortcut, nn.Identity) == (name not in with_conv)
    assert [stage[0].conv1.out_channels for stage in model.layers] == [16, 32, 64]
    feats = model.layers(torch.relu(model.bn1(model.conv1(torch.randn(2, 3, 32, 32)))))
    assert feats.shape == (2, 64, 8, 8)  # 32 -> 16 -> 8


def test_the_resnets_are_residual_for_smart_ratio():
    from prunelimit.baselines.smart_ratio import is_residual

    residual = {name: is_residual(build_model(name, (3, 8, 8), 10, **SMALL.get(name, {}))) for name in ARCHITECTURES}
    assert {name for name, yes in residual.items() if yes} == {"resnet18", "resnet20", "resnet50"}


@pytest.mark.parametrize(("name", "model_args", "is_mlp"), [("fc5", {"width": 0.05}, True), ("mlp", {}, True),
                                                            ("mlpnet", {}, True), ("vgg16", {"width": 0.125}, False),
                                                            ("resnet20", {"width": 0.25}, False)])
def test_mlp_linears_finds_the_plain_mlps_only(name, model_args, is_mlp):
    model = build_model(name, (1, 8, 8), 10, **model_args)
    linears = mlp_linears(model)
    assert (linears is not None) == is_mlp
    if is_mlp:
        assert linears == [m for m in model.modules() if isinstance(m, nn.Linear)]
        x = torch.randn(5, 1, 8, 8)
        h = x.flatten(1)
        for layer in linears[:-1]:
            h = torch.relu(layer(h))
        assert torch.equal(linears[-1](h), model(x))  # the layers are the whole forward
