"""End to end: the whole default (mini) DAG once at test scale (session fixture `mini_run` in
conftest.py); slow (`make test-slow`): the default preset at its own scale (`default_run`) and the
smoke preset of every paper architecture."""

import json
import re

import pandas as pd
import pytest

from pipeline_utils import ROOT, load_benchmark, load_config, snakemake
from prunelimit.config import main_study_tasks, task_spec
from prunelimit.settings import HessianSettings
from prunelimit.sparsity import keep_count


def test_mini_pipeline_builds_every_final_target(mini_run):
    config = mini_run.config
    results = mini_run.workdir / "results" / "mini"
    for task in main_study_tasks(config):
        for variant in config["variants"]:
            metrics = json.loads((results / "train" / task / variant / "metrics.json").read_text())
            assert 0 <= metrics["test_acc"] <= 1
            assert metrics["epochs_run"] == task_spec(config, task, variant)["train"]["epochs"]
            assert metrics["loss_std"] > 0
            assert (results / "train" / task / variant / "model.pt").stat().st_size > 0
            assert (results / "logs" / "train" / f"{task}_{variant}.log").exists()
    table = pd.read_csv(results / "tables" / "training.csv")
    assert len(table) == len(main_study_tasks(config)) * len(config["variants"])
    assert {"task", "variant", "params", "epochs", "lr", "l1", "test_acc", "wall_time_s"} <= set(table.columns)
    assert (results / "tables" / "training.md").read_text().startswith("| task")
    assert "\\toprule" in (results / "tables" / "training.tex").read_text()


def test_quick_scale_runs_every_rule_of_the_default_dag(mini_run, tmp_path):
    """The test-scale config does less work per job and runs fewer instances of some rules (seeds,
    sparsities, regime points), but every rule of config.yaml's DAG on every task it runs on there,
    and each of its jobs is one of config.yaml's, to the same files (IMP's trajectory, to fewer)."""
    def planned_jobs(configfile):  # (rule, wildcards, outputs) of each job, read as benchmarks/pipeline.py does
        proc = snakemake(tmp_path, "-n", "--forceall", configfile=configfile, refuse_torch=True, timeout=300)
        jobs = load_benchmark("pipeline").parse_jobs(proc.stdout).values()
        return {(job.rule, job.wildcards, tuple(sorted(job.outputs))) for job in jobs}

    def rules_on_tasks(jobs):
        return {(rule, re.search(r"task=([^,]+)", wildcards)[1] if "task=" in wildcards else None)
                for rule, wildcards, _ in jobs}

    default_jobs, quick_jobs = planned_jobs(None), planned_jobs(mini_run.configfile)
    assert len(default_jobs) > 100 and all(outputs for rule, _, outputs in default_jobs if rule != "all")
    default_outputs = {(rule, wildcards): set(outputs) for rule, wildcards, outputs in default_jobs}
    assert len(quick_jobs) < len(default_jobs)
    assert all(set(outputs) <= default_outputs.get((rule, wildcards), set()) for rule, wildcards, outputs in quick_jobs)
    assert rules_on_tasks(quick_jobs) == rules_on_tasks(default_jobs)
    # every instance kept for its own code path (tests/quick_scale.yaml)
    assert {re.search(r"point=([^,]+)", w)[1] for _, w, _ in quick_jobs if "point=" in w} == {"l1x0", "l1x0.1", "l1x1"}
    assert {re.search(r"seed=(\d+)", w)[1] for rule, w, _ in quick_jobs if rule == "baseline_imp"} == {"0", "1"}


def test_theory_outputs_on_every_mini_task(mini_run):
    results = mini_run.workdir / "results" / "mini"
    for task in main_study_tasks(mini_run.config):
        p = json.loads((results / "theory" / task / "prediction.json").read_text())
        assert 0.0 <= p["lower_sparsity"] <= p["predicted_sparsity"] <= p["upper_sparsity"] <= 1.0, task
        assert p["epsilon"] > 0 and p["bounds"] == "kinematic bounds"
        assert ("exact" in p) == (results / "hessian" / task / "exact.npz").exists(), task


def test_theory_vs_actual_carries_every_criterion_and_the_slq_record(mini_run):
    results = mini_run.workdir / "results" / "mini"
    config = mini_run.config
    grid = config["prune"]["grid"]
    table = pd.read_csv(results / "tables" / "theory_vs_actual.csv", dtype={"seed": str})
    own_seed = str(config["train_defaults"]["seed"])
    for _, row in table[table.seed == own_seed].iterrows():  # the main study's models
        task = row.task
        p = json.loads((results / "theory" / task / "prediction.json").read_text())
        a = json.loads((results / "prune" / task / "actual.json").read_text())
        assert a["grid_points"] == grid and a["grid_step"] == pytest.approx(1 / grid)
        tolerances = [row[f"actual_tol_{t}"] for t in ("0", "0.005", "0.01", "0.02")]
        assert tolerances == sorted(tolerances)
        runs = p["slq"]["per_run_predicted_sparsity"]
        assert len(runs) == HessianSettings.for_task(config, task).n_runs
        for tried in p["slq"]["predictions_by_steps"]:  # the prediction at every step count tried, doubling
            steps = [m for m, _ in tried]
            assert all(b == 2 * a or b < 2 * a for a, b in zip(steps, steps[1:])), steps
        assert row.slq_converged == ("yes" if p["slq"]["converged"] else "no (step cap)")
        assert row.slq_steps == "/".join(str(m) for m in p["slq"]["steps"])


def test_regime_map_covers_every_point_through_the_train_rule(mini_run):
    """One row per regime task and L1 multiplier; each model trained by the train rule (its log and
    benchmark are the train rule's), its λ the multiple of the task's own and its shrinkage in
    proportion; the actual thresholds are those of the point's own sweep."""
    results = mini_run.workdir / "results" / "mini"
    config = mini_run.config
    regime = config["regime"]
    table = pd.read_csv(results / "tables" / "regime_map.csv")
    assert len(table) == len(regime["tasks"]) * len(regime["l1_multipliers"])
    assert (results / "figures" / "regime_map.png").stat().st_size > 5000
    for row in table.itertuples():
        variant = f"l1x{row.l1_multiplier:g}"
        # m = 0 and m = 1 are the main study's dense and L1 models, trained once under those names
        trained_as = {0.0: "dense", 1.0: "l1"}.get(row.l1_multiplier, variant)
        assert (results / "logs" / "train" / f"{row.task}_{trained_as}.log").exists()
        own = json.loads((results / "train" / row.task / "l1" / "metrics.json").read_text())["train"]["l1"]
        assert row.l1 == pytest.approx(row.l1_multiplier * own, rel=1e-9)  # the same Σ lr: λ scales with m
        assert row.l1_shrinkage == pytest.approx(row.l1_multiplier * 0.0391, rel=1e-9, abs=1e-12)  # the target, met
        # the main study's own sweep where the point's model is a main-study model (not swept twice)
        shared = {"dense": "actual_dense.json", "l1": "actual.json"}.get(trained_as)
        in_main_study = row.task in main_study_tasks(config) and shared
        actual = results / "prune" / row.task / shared if in_main_study else results / "regime" / row.task / variant
        a = json.loads((actual if in_main_study else actual / "actual.json").read_text())
        assert (results / "regime" / row.task / variant / "actual.json").exists() != bool(in_main_study)
        assert row.actual_sparsity == a["actual_sparsity"] and row.actual_tol_0 == a["tolerance_sparsity"]["0"]
        assert row.lower_sparsity <= row.predicted_sparsity <= row.upper_sparsity
        assert row.spectrum == ("exact" if row.D <= config["hessian"]["exact_max_params"] else "SLQ")


def test_second_run_has_nothing_to_do(mini_run):
    proc = snakemake(mini_run.workdir, "-n", configfile=mini_run.configfile, timeout=300)
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_no_temporary_or_resume_files_are_left(mini_run):
    leftovers = [p for p in (mini_run.workdir / "results").rglob("*")
                 if p.name.endswith((".tmp", ".part", ".resume.pt"))]
    assert leftovers == []


# ---------------------------------------------------------------------------------------------
# The default preset at its own scale (make test-slow): what holds only with full training and
# converged spectra
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # the default DAG cold, as `make reproduce` runs it: ~10 min on 2 cores
def test_default_run_trains_every_l1_model_into_the_paper_regime(default_run):
    """Every L1 model reached the L1 shrinkage of its family's official recipe (0.0391 for FC nets,
    0.0782 for CNNs, within the rounding of λ in the config) and learned (test accuracy over 0.5); at
    most 1% of weights (dead ReLU units) went without a data gradient, and L1 pulled nearly every one
    of those to ~0: only an initial weight beyond the L1 pull (about 10 × the shrinkage with momentum
    0.9) keeps part of its size, a few in 10^5 (docs/method.md)."""
    results = default_run.workdir / "results" / "mini"
    config = default_run.config
    for task in main_study_tasks(config):
        entry = config["tasks"][task]
        for variant in config["variants"]:
            metrics = json.loads((results / "train" / task / variant / "metrics.json").read_text())
            assert metrics["test_acc"] > 0.5, (task, variant, metrics["test_acc"])
        l1 = json.loads((results / "train" / task / "l1" / "metrics.json").read_text())
        target = 0.0782 if entry["model"] in ("vgg16", "alexnet", "resnet18", "resnet50") else 0.0391
        assert abs(l1["l1_shrinkage"] - target) / target < 0.02, (task, l1["l1_shrinkage"])
        assert l1["never_updated_share"] < 0.01, (task, l1["never_updated_share"])
        assert l1["never_updated_kept_share"] < 1e-4, (task, l1["never_updated_kept_share"])
        assert len(l1["history"]) == l1["epochs_run"] and "small_weight_share" in l1["history"][-1]


@pytest.mark.slow
def test_default_run_slq_matches_the_exact_spectrum_and_says_where_it_stopped(default_run):
    """Where the exact spectrum exists, the converged SLQ's prediction is within 0.005 of the exact
    one (same ε, R(s), f0); every SLQ run either converged or is flagged as stopped at the cap."""
    results = default_run.workdir / "results" / "mini"
    table = pd.read_csv(results / "tables" / "theory_vs_actual.csv", dtype={"seed": str})
    main_seed = table[table.seed == str(default_run.config["train_defaults"]["seed"])].set_index("task")
    for task in main_study_tasks(default_run.config):
        p = json.loads((results / "theory" / task / "prediction.json").read_text())
        if "exact" in p:
            assert abs(p["exact"]["slq_minus_exact"]) <= 0.005, (task, p["exact"]["slq_minus_exact"])
        assert main_seed.loc[task, "slq_converged"] == ("yes" if not p["slq"]["capped"] else "no (step cap)")
    proc = snakemake(default_run.workdir, "-n", timeout=300)
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow  # every paper architecture through every stage: minutes (make test-slow)
def test_smoke_preset_runs_every_paper_architecture(tmp_path):
    smoke = ROOT / "workflow" / "presets" / "smoke.yaml"
    snakemake(tmp_path, "--cores", "all", configfile=smoke)
    config, paper = load_config("workflow/presets/smoke.yaml"), load_config("workflow/presets/paper.yaml")
    assert {t["model"] for t in config["tasks"].values()} == {t["model"] for t in paper["tasks"].values()}
    assert {t["dataset"] for t in config["tasks"].values()} == {"synth_cifar10", "synth_cifar100", "synth_tinyimagenet"}
    table = pd.read_csv(tmp_path / "results" / "smoke" / "tables" / "training.csv")
    assert len(table) == 2 * len(main_study_tasks(config))  # the training table is the main study's
    sota = pd.read_csv(tmp_path / "results" / "smoke" / "tables" / "lomp_vs_sota.csv", dtype=str)
    assert set(sota["task"]) == set(config["oneshot"]["tasks"])  # the one-shot comparison's architectures too


def test_lomp_vs_sota_table_has_every_method_start_and_sparsity(mini_run):
    """The one-shot comparison end to end: every configured method from both starting models at every sparsity
    of every one-shot task, each pruned model at exactly its sparsity."""
    results = mini_run.workdir / "results" / "mini"
    table = pd.read_csv(results / "tables" / "lomp_vs_sota.csv", dtype=str)
    oneshot = mini_run.config["oneshot"]
    columns = [c for c in table.columns if c.endswith("(dense)") or c.endswith("(l1)") or c.startswith("LOMP")]
    assert len(columns) == len(oneshot["methods"]) * len(oneshot["starts"]) and "LOMP (MP, L1)" in columns
    for task in oneshot["tasks"]:
        rows = table.loc[table["task"] == task]
        assert list(rows["sparsity_%"])[:len(oneshot["sparsities"])] == [f"{100 * s:g}" for s in oneshot["sparsities"]]
        assert rows.iloc[0][columns].str.endswith(f"({len(oneshot['seeds'])})").all()
        for start in oneshot["starts"]:
            for seed in oneshot["seeds"]:
                run = json.loads((results / "oneshot" / task / f"{start}_seed{seed}.json").read_text())
                assert {(r["method"], r["sparsity"]) for r in run["rows"]} == {
                    (m, s) for m in oneshot["methods"] for s in oneshot["sparsities"]}
                assert all(r["kept"] == keep_count(r["n_prunable"], r["sparsity"]) for r in run["rows"])
    assert (results / "figures" / "lomp_vs_sota.png").stat().st_size > 0


def test_quick_scale_caps_every_tasks_lanczos_steps():
    """A task's own hessian.max_iter in config.yaml outranks the quick scale's global cap, so each such task
    needs its own cap in tests/quick_scale.yaml (resnet20_digits' 256 steps once took 110 s of make test)."""
    from conftest import quick_scale_config
    from prunelimit.settings import Settings

    config = quick_scale_config()
    settings = Settings.from_config(config)
    cap = config["hessian"]["max_iter"]
    assert {task: settings.hessian(task).max_iter for task in config["tasks"]} == dict.fromkeys(config["tasks"], cap)
