"""The config schema stops a bad config at start, naming the culprit; presets build their DAG."""

import copy

import pytest

from pipeline_utils import ROOT, load_config, snakemake, write_config


def _dry_run_error(tmp_path, mutate):
    config = copy.deepcopy(load_config())
    mutate(config)
    cfg = write_config(tmp_path / "bad.yaml", config)
    proc = snakemake(tmp_path, "-n", configfile=cfg, check=False, timeout=120)
    assert proc.returncode != 0, "a bad config must stop the run"
    return proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["train_defaults"].update(epoch=3), "'epoch' was unexpected"),
        (lambda c: c["tasks"]["fc5_digits"]["train"].update(lr="fast"), "'fast' is not of type 'number'"),
        (lambda c: c["tasks"]["fc5_digits"].update(model="resnet19"), "'resnet19' is not one of"),
        (lambda c: c["tasks"]["fc5_digits"].update(dataset="mnist"), "'mnist' is not one of"),
        (lambda c: c.update(hesian={}), "'hesian' was unexpected"),
        (lambda c: c["prune"].update(tolerances=[2]), "2 is greater than the maximum of 1"),
        (lambda c: c["baselines"].update(tasks=["no_such_task"]), "baselines.tasks names unknown task(s) ['no_such_task']"),
    ],
    ids=["misspelt-key", "wrong-type", "unknown-model", "unknown-dataset", "unknown-section", "out-of-range",
         "unknown-task-reference"],
)
def test_bad_config_stops_with_a_message_naming_it(tmp_path, mutate, expected):
    out = _dry_run_error(tmp_path, mutate)
    assert expected in out
    assert len(out.strip().splitlines()) <= 5, out  # the line naming the key, not a 560-line schema dump


def test_paper_preset_builds_the_full_dag(tmp_path):
    proc = snakemake(tmp_path, "-n", "--quiet", "rules", configfile=ROOT / "workflow/presets/paper.yaml", timeout=300)
    out = proc.stdout + proc.stderr
    paper = load_config("workflow/presets/paper.yaml")
    assert len(paper["tasks"]) == 8
    # every task is trained dense and with L1 and no mini task leaks into the paper DAG
    train_jobs = [line for line in out.splitlines() if line.strip().startswith("train ")]
    assert train_jobs and int(train_jobs[0].split()[-1]) == 16
    assert "fc5_digits" not in out


def test_presets_are_valid_and_config_is_the_mini_preset():
    mini = load_config()
    assert mini["preset"] == "mini"
    assert {t["dataset"] for t in mini["tasks"].values()} <= {"digits", "mnist1d"}  # no network needed
    models = {t["model"] for t in mini["tasks"].values()}
    assert {"fc5", "fc12"} <= models and models & {"vgg16", "alexnet"}
