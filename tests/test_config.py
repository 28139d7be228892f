"""The config schema stops a bad config at start, naming the culprit; presets build their DAG; parsing
the workflow imports no torch.

Each bad config is checked in-process against the two checks the workflow runs at parse time
(workflow/rules/common.smk: the schema through snakemake.utils.validate, then
prunelimit.config.check_task_references); one `snakemake -n` per check shows the workflow runs them.
"""

import copy

import pytest

from pipeline_utils import ROOT, TORCH_REFUSED, load_config, snakemake, write_config
from prunelimit.config import check_task_references, validate_config
from prunelimit.errors import PrunelimitError

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
PAPER = ROOT / "workflow" / "presets" / "paper.yaml"


def _mutated(mutate):
    config = copy.deepcopy(load_config())
    mutate(config)
    return config


def _validation_error(config):
    """The message the workflow's start-up checks (common.smk) stop ``config`` with (None: it passes)."""
    try:
        validate_config(copy.deepcopy(config), SCHEMA)
        check_task_references(config)
    except (PrunelimitError, ValueError) as err:
        return str(err)
    return None


BAD_CONFIGS = [
    (lambda c: c["train_defaults"].update(epoch=3), "'epoch' was unexpected"),
    (lambda c: c["tasks"]["fc5_digits"]["train"].update(lr="fast"), "'fast' is not of type 'number'"),
    (lambda c: c["tasks"]["fc5_digits"].update(model="resnet19"), "'resnet19' is not one of"),
    (lambda c: c["tasks"]["fc5_digits"].update(dataset="svhn"), "'svhn' is not one of"),
    (lambda c: c.update(hesian={}), "'hesian' was unexpected"),
    (lambda c: c["prune"].update(tolerances=[2]), "2 is greater than the maximum of 1"),
    (lambda c: c["regime"].update(l1_multipliers=[0.1, 1, 3]), "regime.l1_multipliers: [0.1, 1, 3] does not contain"),
    (lambda c: c.pop("regime"), "'regime' is a required property"),
    (lambda c: c["regime"].update(tasks=["fc5_digits", "fc5_digits"]), "has non-unique elements"),
    (lambda c: c["tasks"]["mlp_digits"].pop("l1_shrinkage"),
     "regime.tasks names task(s) ['mlp_digits'] without a positive"),
    (lambda c: c["baselines"].update(tasks=["no_such_task"]), "baselines.tasks names unknown task(s) ['no_such_task']"),
]
BAD_IDS = ["misspelt-key", "wrong-type", "unknown-model", "unknown-dataset", "unknown-section", "out-of-range",
           "regime-without-dense-point", "no-regime-section", "regime-task-twice", "regime-task-without-l1",
           "unknown-task-reference"]


@pytest.mark.parametrize(("mutate", "expected"), BAD_CONFIGS, ids=BAD_IDS)
def test_bad_config_stops_with_a_message_naming_it(mutate, expected):
    message = _validation_error(_mutated(mutate))
    assert message is not None, "a bad config must stop the run"
    assert expected in message


@pytest.mark.parametrize("preset", ["config.yaml", "workflow/presets/paper.yaml", "workflow/presets/smoke.yaml"])
def test_presets_pass_the_start_up_checks(preset):
    assert _validation_error(load_config(preset)) is None


@pytest.mark.parametrize(("mutate", "expected"), [BAD_CONFIGS[0], BAD_CONFIGS[-1]], ids=["schema", "task-reference"])
def test_the_workflow_runs_both_checks_at_start(tmp_path, mutate, expected):
    cfg = write_config(tmp_path / "bad.yaml", _mutated(mutate))
    proc = snakemake(tmp_path, "-n", configfile=cfg, check=False, timeout=120)
    assert proc.returncode != 0, "a bad config must stop the run"
    out = proc.stdout + proc.stderr
    assert expected in out
    assert len(out.strip().splitlines()) <= 5, out  # the line naming the key, not a 560-line schema dump


# ---------------------------------------------------------------------------------------------
# Dry runs of the presets, each once per module, in a process that cannot import torch
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_dry_run(tmp_path_factory):
    return snakemake(tmp_path_factory.mktemp("paper"), "-n", "--quiet", "rules", configfile=PAPER, timeout=300,
                     check=False, refuse_torch=True)


@pytest.fixture(scope="module")
def mini_dry_run(tmp_path_factory):
    return snakemake(tmp_path_factory.mktemp("mini_dry"), "-n", timeout=300, check=False, refuse_torch=True)


def test_paper_preset_builds_the_full_dag(paper_dry_run):
    out = paper_dry_run.stdout + paper_dry_run.stderr
    assert paper_dry_run.returncode == 0, out[-4000:]
    paper = load_config("workflow/presets/paper.yaml")
    main_study = [t for t, spec in paper["tasks"].items() if spec.get("in_main_study", True)]
    assert len(main_study) == 8 and len(paper["tasks"]) == 10  # + the one-shot comparison's MLPNet and ResNet20
    # every task is trained dense and with L1 and no mini task leaks into the paper DAG
    # ... plus the regime map's FC5 retrained at each L1 multiplier, through the same train rule,
    # except m = 0 and m = 1: the dense and L1 models already trained
    train_jobs = [line for line in out.splitlines() if line.strip().startswith("train ")]
    regime = paper["regime"]
    assert regime["tasks"] == ["fc5_cifar10"] and len(regime["l1_multipliers"]) >= 6
    assert train_jobs and int(train_jobs[0].split()[-1]) == 2 * 10 + len(set(regime["l1_multipliers"]) - {0, 1})
    # the one-shot comparison plans its three paper tasks: 2 starting models x 3 seeds each
    oneshot_jobs = [line for line in out.splitlines() if line.strip().startswith("oneshot ")]
    assert paper["oneshot"]["tasks"] == ["mlpnet_mnist", "resnet20_cifar10", "resnet50_cifar100"]
    assert oneshot_jobs and int(oneshot_jobs[0].split()[-1]) == 3 * 2 * 3 and "table_lomp_vs_sota" in out
    assert "table_regime_map" in out and "regime_prediction" in out  # job counts by rule (--quiet rules)
    assert "fc5_digits" not in out


@pytest.mark.parametrize("preset", ["mini", "paper"])
def test_parsing_the_workflow_imports_no_torch(preset, mini_dry_run, paper_dry_run):
    """torch costs seconds per snakemake call; the parse needs only prunelimit.architectures' counts."""
    proc = {"mini": mini_dry_run, "paper": paper_dry_run}[preset]
    out = proc.stdout + proc.stderr
    assert TORCH_REFUSED not in out, out[-4000:]
    assert proc.returncode == 0, out[-4000:]
    if preset == "mini":  # the exact-spectrum choice, made from those counts, is in the DAG
        assert "exact_spectrum" in out and "This was a dry-run" in out


def test_presets_are_valid_and_config_is_the_mini_preset():
    mini = load_config()
    assert mini["preset"] == "mini"
    assert {t["dataset"] for t in mini["tasks"].values()} <= {"digits", "mnist1d"}  # no network needed
    models = {t["model"] for t in mini["tasks"].values()}
    assert {"fc5", "fc12"} <= models and models & {"vgg16", "alexnet"}


# ---------------------------------------------------------------------------------------------
# The regime map's training variants
# ---------------------------------------------------------------------------------------------


def test_regime_variants_scale_the_tasks_own_l1_strength_and_nothing_else():
    from prunelimit.config import regime_multiplier, regime_variant, task_spec

    config = load_config()
    own = config["tasks"]["mlp_digits"]["l1_shrinkage"]  # a shrinkage target: λ is resolved at train time
    l1 = task_spec(config, "mlp_digits", "l1")
    strength = ("l1", "l1_shrinkage")
    for m in config["regime"]["l1_multipliers"]:
        spec = task_spec(config, "mlp_digits", regime_variant(m))
        assert spec["variant"] == regime_variant(m) and regime_multiplier(spec["variant"]) == m
        assert spec["train"]["l1"] == 0.0
        assert spec["train"].get("l1_shrinkage", 0.0) == pytest.approx(m * own, rel=1e-12)
        assert {k: v for k, v in spec["train"].items() if k not in strength} == {
            k: v for k, v in l1["train"].items() if k not in strength}  # the recipe: epochs, lr, seed, ...
    with_lambda = {**config, "tasks": {"t": {**config["tasks"]["mlp_digits"], "l1": 2e-3}}}
    with_lambda["tasks"]["t"].pop("l1_shrinkage")
    assert task_spec(with_lambda, "t", "l1x0.3")["train"]["l1"] == pytest.approx(0.3 * 2e-3)  # or λ itself
    assert task_spec(config, "mlp_digits", "l1x1")["train"] == l1["train"]
    assert task_spec(config, "mlp_digits", "l1x0")["train"] == task_spec(config, "mlp_digits", "dense")["train"]
    assert [regime_variant(m) for m in (0, 0.03, 1, 3.0)] == ["l1x0", "l1x0.03", "l1x1", "l1x3"]


@pytest.mark.parametrize("variant", ["l1x0.30", "l1x-1", "l1xnan", "l1x", "l2", "l1_x1"])
def test_non_canonical_or_unknown_variants_are_refused(variant):
    from prunelimit.config import task_spec

    with pytest.raises(PrunelimitError, match="unknown variant"):
        task_spec(load_config(), "mlp_digits", variant)


def test_a_regime_only_task_stays_out_of_the_main_study():
    from prunelimit.config import main_study_tasks

    config = load_config()
    main = main_study_tasks(config)
    assert "mlp_wide_digits" not in main and "mlp_wide_digits" in config["regime"]["tasks"]
    oneshot_only = {"mlpnet_digits", "resnet20_digits"}
    assert oneshot_only <= set(config["oneshot"]["tasks"]) and not oneshot_only & set(main)
    assert main == [t for t in config["tasks"] if t not in {"mlp_wide_digits", *oneshot_only}]


def test_validation_fills_the_schema_defaults_and_no_more():
    """The schema is the one place for defaults: a config without the optional keys comes out of
    validation with them set to the schema's values, while what it gives is kept, and a task's train
    block gets no default that would override train_defaults."""
    import yaml

    config = _mutated(lambda c: (c.pop("device"), c.pop("tv_distance"), c["tasks"]["fc5_digits"].pop("model_args"),
                                 c["train_defaults"].update(max_steps=7)))
    validate_config(config, SCHEMA)
    schema = yaml.safe_load(SCHEMA.read_text())
    assert config["device"] == schema["properties"]["device"]["default"]
    assert config["tv_distance"] == {**schema["properties"]["tv_distance"]["default"], "bins": 200}
    assert config["tasks"]["fc5_digits"]["model_args"] == {}
    assert config["tasks"]["fc5_digits"]["train"] == {"epochs": 160}  # nothing added to an override
    assert config["train_defaults"]["max_steps"] == 7  # given: kept
    assert config["tasks"]["mlp_digits"]["in_main_study"] is True
    again = copy.deepcopy(config)
    validate_config(again, SCHEMA)  # a filled config is valid and a fixed point
    assert again == config


def test_typed_settings_cover_exactly_the_schema_keys():
    """Each settings dataclass has one field per key of its schema section, so a key added to the
    schema cannot be silently dropped on its way to the library; an unvalidated section is refused."""
    import dataclasses

    import yaml

    from prunelimit import methods, settings

    props = yaml.safe_load(SCHEMA.read_text())["properties"]
    sections = {"hessian": settings.HessianSettings, "theory": settings.TheorySettings,
                "prune": settings.PruneSettings, "iterative": settings.IterativeSettings,
                "baselines": settings.BaselineSettings, "oneshot": settings.OneShotSettings,
                "regime": settings.RegimeSettings, "tv_distance": settings.TvDistanceSettings}
    for name, cls in sections.items():
        # a method's block is typed by the method registry (tests/test_methods.py), gathered in `options`
        blocks = {m for m in methods.REGISTRY if m in props[name]["properties"]}
        expected = set(props[name]["properties"]) - blocks | ({"options"} if blocks else set())
        assert {f.name for f in dataclasses.fields(cls)} == expected, name
    config = load_config()
    validate_config(config, SCHEMA)
    typed = settings.Settings.from_config(config)
    assert typed.baselines.of("imp").fraction_per_round == config["baselines"]["imp"]["fraction_per_round"]
    assert typed.hessian("vgg_digits").max_iter == config["tasks"]["vgg_digits"]["hessian"]["max_iter"]
    assert typed.hessian("fc5_digits").max_iter == config["hessian"]["max_iter"]
    with pytest.raises(ValueError, match="lacks \\['eta'\\]"):
        settings.TheorySettings.from_section({k: v for k, v in config["theory"].items() if k != "eta"})
