"""The pruning-method registry (prunelimit.methods) against what derives from it: the schema's method enums
and setting blocks, the typed settings, the dispatch, the table labels and the workflow's wildcard
constraint; and the one-shot comparison (prunelimit.baselines.oneshot_compare) end to end on a tiny model."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from prunelimit import methods
from prunelimit.baselines import run_baseline
from prunelimit.baselines.oneshot_compare import check_fisher_size, compare_oneshot, gradient_sample
from prunelimit.config import load_schema, validate_config
from prunelimit.data import TensorData
from prunelimit.io import PrunelimitError
from prunelimit.models import build_model, prunable_vector
from prunelimit.settings import Settings
from prunelimit.sparsity import keep_count
from prunelimit.tables import lomp_vs_sota_table

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("comparison", methods.COMPARISONS)
def test_schema_method_enum_is_the_registry(comparison):
    assert "enum" not in SCHEMA["properties"][comparison]["properties"]["methods"]["items"]  # one place: the registry
    enum = load_schema()["properties"][comparison]["properties"]["methods"]["items"]["enum"]
    assert enum == methods.names(comparison)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config[comparison]["methods"] = [*methods.names(comparison)[:1], "snip"]
    with pytest.raises(PrunelimitError, match=f"at {comparison}.methods.1: 'snip' is not one of"):
        validate_config(config)


def test_schema_model_enum_is_the_registry():
    from prunelimit.architectures import ARCHITECTURES

    assert "enum" not in SCHEMA["$defs"]["task"]["properties"]["model"]
    assert load_schema()["$defs"]["task"]["properties"]["model"]["enum"] == list(ARCHITECTURES)


@pytest.mark.parametrize("name", list(methods.REGISTRY))
def test_each_settings_block_matches_its_dataclass_and_has_defaults(name):
    entry = methods.method(name)
    assert entry.comparison in methods.COMPARISONS and entry.runs in methods.RUNS
    if entry.settings is None:
        assert name not in SCHEMA["properties"][entry.comparison]["properties"]
        return
    block = SCHEMA["properties"][entry.comparison]["properties"][name]
    fields = [f.name for f in dataclasses.fields(entry.settings)]
    assert sorted(block.get("properties", {})) == sorted(fields)
    assert block["default"] == {} and all("default" in p for p in block.get("properties", {}).values())
    if entry.entry is not None:
        assert callable(entry.run())


def test_a_preset_states_only_what_differs():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for name in ("imp", "rare_gems", "smart_ratio"):
        config["baselines"].pop(name, None)
    config["baselines"]["rare_gems"] = {"prune_every": 2}
    validate_config(config)
    typed = Settings.from_config(config)
    assert typed.baselines.of("rare_gems").prune_every == 2
    assert typed.baselines.of("rare_gems").score_lr == SCHEMA["properties"]["baselines"]["properties"]["rare_gems"][
        "properties"]["score_lr"]["default"]
    assert typed.baselines.of("lomp") is None
    assert set(typed.oneshot.options) == set(methods.names("oneshot"))


def test_unknown_method_is_one_error_naming_the_known():
    with pytest.raises(PrunelimitError, match="unknown pruning method 'snip'; known: lomp"):
        methods.method("snip")
    with pytest.raises(PrunelimitError, match="not a baseline method"):
        run_baseline("wf", {}, None, 0.5, 0)


def test_workflow_wildcard_constraint_comes_from_the_registry():
    text = (ROOT / "workflow/rules/baselines.smk").read_text()
    assert 'method_names("baselines", runs="per_sparsity")' in text and "rare_gems|smart_ratio" not in text
    assert methods.names("baselines", runs="per_sparsity") == ["rare_gems", "smart_ratio"]


# ---------------------------------------------------------------------------------------------
# The one-shot comparison on a tiny model
# ---------------------------------------------------------------------------------------------


def blobs(n_train=120, n_test=60, seed=0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    centres = 2.0 * torch.randn(3, 16, generator=g)

    def draw(n):
        y = torch.arange(n) % 3
        return (centres[y] + torch.randn(n, 16, generator=g)).view(n, 1, 4, 4), y

    return TensorData(*draw(n_train), *draw(n_test), 3)


def settings(**chosen):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["oneshot"] = chosen
    validate_config(config)
    return Settings.from_config(config).oneshot


def test_every_method_keeps_the_exact_count_and_leaves_the_model_alone():
    data, model = blobs(), build_model("mlp", (1, 4, 4), 3, seed=0, hidden=[12, 6])
    before = prunable_vector(model).clone()
    oneshot = settings(sparsities=[0.5, 0.9], samples=40, block_size=100, cbs={"swaps": 5, "candidates": 8},
                       chita={"iters": 10})
    rows = compare_oneshot(model, data, methods=oneshot.options, sparsities=list(oneshot.sparsities), samples=40,
                           block_size=100, seed=0)
    assert torch.equal(prunable_vector(model), before)  # each method pruned a copy
    assert [(r["method"], r["sparsity"]) for r in rows] == [(m, s) for m in ("mp", "wf", "cbs", "chita")
                                                          for s in (0.5, 0.9)]
    D = before.numel()
    assert D == 16 * 12 + 12 * 6 + 6 * 3
    for r in rows:
        assert r["kept"] == keep_count(D, r["sparsity"]) and r["n_prunable"] == D
        assert 0 <= r["test_acc"] <= 1 and math.isfinite(r["test_loss"])
        assert r["blocks"] == 4  # layers of 192 (two blocks of 96: over block_size 100), 72 and 18 weights
        assert (r["gradient_time_s"] == 0) == (r["method"] == "mp")


def test_gradient_sample_is_seeded_and_distinct():
    a, b = gradient_sample(100, 30, 0), gradient_sample(100, 30, 1)
    assert torch.equal(a, gradient_sample(100, 30, 0)) and not torch.equal(a, b)
    assert len(set(a.tolist())) == 30


@pytest.mark.parametrize("samples, block, memory, match", [
    (0, 10, None, r"oneshot.samples \(N\) must be at least 1"),
    (10, 0, None, "oneshot.block_size must be at least 1"),
    (500, 10, None, r"oneshot.samples \(N = 500\) for t exceeds its training set \(120\)"),
    (100, 1000, 2**20, "oneshot.samples = 100 and oneshot.block_size = 1000 do not fit t"),
])
def test_fisher_sizes_that_do_not_fit_are_one_error(samples, block, memory, match):
    with pytest.raises(PrunelimitError, match=match):
        check_fisher_size(samples, block, 120, 5000, "t", memory=memory)


def test_bad_sparsity_and_no_prunable_weights_are_errors():
    data, model = blobs(), build_model("mlp", (1, 4, 4), 3, seed=0, hidden=[4])
    with pytest.raises(PrunelimitError, match="sparsity"):
        compare_oneshot(model, data, methods={"mp": methods.MagnitudeSettings()}, sparsities=[1.0], samples=4,
                        block_size=10, seed=0)
    with pytest.raises(PrunelimitError, match="no prunable"):
        compare_oneshot(torch.nn.Sequential(torch.nn.Flatten()), data, methods={"mp": methods.MagnitudeSettings()},
                        sparsities=[0.5], samples=4, block_size=10, seed=0)


def test_lomp_vs_sota_table_cells_and_published_columns():
    rows = [{"task": "t", "start": start, "seed": seed, "method": m, "sparsity": s, "test_acc": acc,
             "wall_time_s": 0.5 + seed, "gradient_time_s": 0.0 if m == "mp" else 2.0}
            for start in ("dense", "l1") for seed in (0, 1) for m in ("mp", "wf") for s in (0.9, 0.95)
            for acc in [0.80 + 0.02 * seed + (0.05 if start == "l1" else 0)]]
    table = lomp_vs_sota_table(rows, {"t": {"dense": [0.97, 0.99], "l1": [0.96]}}, ["mp", "wf"], ["dense", "l1"],
                               tasks={"t": ("mlpnet", "mnist")})
    first = table.iloc[0]
    assert first["sparsity_%"] == "90" and first["dense"] == "98.00 ± 1.41 (2)" and first["L1 model"] == "96.00 (1)"
    assert first["MP (dense)"] == "81.00 ± 1.41 (2)" and first["LOMP (MP, L1)"] == "86.00 ± 1.41 (2)"
    assert first["MP published"] == "90.30" and first["WF published"] == "91.69"
    times = table.loc[table["sparsity_%"] == "prune time (s)"].iloc[0]
    assert times["WF (l1)"] == "1"  # median over sparsities per seed (0.5, 1.5), mean over seeds
    assert table.loc[table["sparsity_%"] == "gradients (s)"].iloc[0]["MP (dense)"] == "0"
    assert table["sparsity_%"].iloc[-1].startswith("published: CBS")
    with pytest.raises(PrunelimitError, match="lack keys"):
        lomp_vs_sota_table([{"task": "t"}], {}, ["mp"], ["l1"])
    assert isinstance(table, pd.DataFrame)


def test_chita_plus_plus_runs_from_the_config_with_its_gradients_recomputed():
    data, model = blobs(), build_model("mlp", (1, 4, 4), 3, seed=0, hidden=[12, 6])
    oneshot = settings(methods=["chita"], chita={"iters": 10, "stages": 2})
    assert oneshot.of("chita").stages == 2
    methods = {name: oneshot.of(name) for name in oneshot.methods}  # as the oneshot rule hands them over
    chita = compare_oneshot(model, data, methods=methods, sparsities=[0.8], samples=40, block_size=100, seed=0)
    assert len(chita) == 1 and chita[0]["kept"] == keep_count(chita[0]["n_prunable"], 0.8)
    assert chita[0]["options"]["stages"] == 2


def test_every_training_baseline_states_its_training_budget():
    """The baselines table's "training" column comes from each method's settings, not from its name."""
    from prunelimit.methods import REGISTRY, ImpSettings, RareGemsSettings, SmartRatioSettings, TrainingSettings

    for entry in REGISTRY.values():
        if entry.comparison == "baselines" and entry.runs != "sweep":  # LOMP's rows are read from the sweep
            assert issubclass(entry.settings, TrainingSettings), entry.name
    assert ImpSettings(0.2, 3).training_budget(40) == "40 dense, then 37 per round (rewound to epoch 3)"
    assert RareGemsSettings(1, 0.0, 0.1).training_budget(40) == "40 on scores + 40 on weights"
    assert SmartRatioSettings(0.3).training_budget(40) == "40"
