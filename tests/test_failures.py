"""Failure behaviour: bad input stops early in one line naming the culprit; a crash leaves its
traceback in the rule's log; a killed write leaves nothing behind for long.

(Hostile payloads: tests/test_security.py; downloads: tests/test_data_download.py; resume keys:
tests/test_resume.py; `prunelimit predict` inputs: tests/test_cli.py.)
"""

from __future__ import annotations

import copy
import io
import logging
import os
import pickle
import tarfile

import numpy as np
import pytest
import yaml

from pipeline_utils import ROOT, hessian_with, load_config
from prunelimit.checkpoint import save_torch
from prunelimit.config import SCHEMA, task_spec, validate_config
from prunelimit.data import load_tensors, prepare_dataset
from prunelimit.io import PrunelimitError, save_json, save_npz
from prunelimit.runlog import rule_context
from test_data_download import _tar_gz, make_cifar10, server  # noqa: F401 - server is a fixture

# ---------------------------------------------------------------------------------------------
# Labels and arrays: checked when an archive is parsed and when a dataset file is loaded
# ---------------------------------------------------------------------------------------------


def _cifar10_with_labels(labels_of_batch_2) -> bytes:
    body, _ = make_cifar10()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    batch = pickle.loads(members["cifar-10-batches-py/data_batch_2"])  # our own benign batch
    batch[b"labels"] = labels_of_batch_2
    members["cifar-10-batches-py/data_batch_2"] = pickle.dumps(batch, protocol=2)
    return _tar_gz(members)


@pytest.mark.parametrize(("labels", "message"), [
    ([3, 12], r"data_batch_2: label 12 is outside \[0, 10\)"),
    ([-1, 3], r"data_batch_2: label -1 is outside \[0, 10\)"),
    ([1.7, 3.0], r"data_batch_2: labels must be integers, got float64"),  # was truncated to 1 silently
], ids=["above", "negative", "float"])
def test_archive_with_bad_labels_never_becomes_a_dataset(server, tmp_path, labels, message):  # noqa: F811
    url, md5 = server.add("cifar-10-python.tar.gz", _cifar10_with_labels(labels))
    out = tmp_path / "cifar10.npz"
    with pytest.raises(PrunelimitError, match=r"corrupt archive .*cifar-10-batches-py/" + message):
        prepare_dataset("cifar10", out, {"url": url, "md5": md5}, progress=False)
    assert not out.exists()


def _digits_file(tmp_path, **changes):
    good = prepare_dataset("digits", tmp_path / "good.npz", progress=False)
    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, change in changes.items():
        arrays[key] = change(arrays[key].copy())
    save_npz(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


def _set(index, value, dtype=None):
    def change(a):
        a = a.astype(dtype) if dtype else a
        a[index] = value
        return a
    return change


@pytest.mark.parametrize(("changes", "message"), [
    ({"y_train": _set(5, 12)}, r"y_train: label 12 is outside \[0, 10\)"),
    ({"y_test": _set(0, -1)}, r"y_test: label -1 is outside \[0, 10\)"),
    ({"y_train": lambda y: y.astype(np.float32)}, "y_train: labels must be integers, got float32"),
    ({"x_train": _set((3, 0, 0, 0), np.inf, np.float32)}, "x_train holds 1 inf values"),
    ({"x_test": _set((0, 0, 1, 1), np.nan, np.float32)}, "x_test holds 1 NaN values"),
    ({"y_test": lambda y: y[:-1]}, r"y_test has shape \(\d+,\), need one label per sample"),
    ({"x_test": lambda x: x[:, :, :4]}, r"x_test samples are \(1, 4, 8\), x_train's \(1, 8, 8\)"),
    ({"mean": _set(0, np.nan)}, "mean must be one finite value per channel"),
], ids=["label-above", "label-negative", "float-labels", "inf", "nan", "label-count", "shape", "nan-mean"])
def test_dataset_file_with_bad_arrays_is_named_on_load(tmp_path, changes, message):
    bad = _digits_file(tmp_path, **changes)
    with pytest.raises(PrunelimitError, match=r"dataset file .*bad\.npz: " + message) as err:
        load_tensors(bad)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# A rule's log ends with the exception that failed it
# ---------------------------------------------------------------------------------------------


def test_unexpected_exception_is_written_to_the_rule_log_with_its_traceback(tmp_path):
    log = tmp_path / "rule.log"
    with pytest.raises(IndexError, match="index 12 is out of bounds"):
        with rule_context(log):
            print("training ...")
            np.zeros(10)[12]
    lines = log.read_text().rstrip().splitlines()
    assert "Traceback (most recent call last):" in lines
    assert lines[-1] == "IndexError: index 12 is out of bounds for axis 0 with size 10"
    logging.getLogger("prunelimit").info("after the rule")  # the closed log is no longer a handler


def test_every_rule_script_runs_inside_rule_context():
    """What makes the two tests around this one hold for every rule: its whole body is in rule_context."""
    import ast

    from pipeline_utils import workflow_rules

    scripts = {rule["script"] for rule in workflow_rules() if rule["script"]}
    # the compute rules' scripts, and the one script of every figure rule and of every table rule
    assert len(scripts) >= 12 and {str(ROOT / "scripts" / f"{s}.py") for s in ("figure", "table")} <= scripts
    for script in sorted(scripts):
        body = [node for node in ast.parse((ROOT / script).read_text()).body
                if not isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr, ast.FunctionDef))]  # Expr: docstring
        assert len(body) == 1 and isinstance(body[0], ast.With), script
        assert ast.unparse(body[0].items[0].context_expr).startswith("rule_context(snakemake.log[0]"), script


def test_user_error_stays_one_line_in_the_rule_log(tmp_path, capsys):
    log = tmp_path / "rule.log"
    with pytest.raises(SystemExit) as exit_:
        with rule_context(log):
            raise PrunelimitError("md5 mismatch for http://x: expected a, got b")
    assert exit_.value.code == 1
    text = log.read_text()
    assert text.rstrip().splitlines()[-1] == "error: md5 mismatch for http://x: expected a, got b"
    assert "Traceback" not in text


# ---------------------------------------------------------------------------------------------
# Config: missing sections, non-finite numbers, model_args typos, misspelt keys — in-process,
# through validate_config (what workflow/rules/common.smk runs) and Snakemake's own validate
# ---------------------------------------------------------------------------------------------


def _invalid(config) -> str:
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    with pytest.raises(WorkflowError):  # the schema itself rejects it, not only our wrapper
        validate(copy.deepcopy(config), schema=str(SCHEMA))
    with pytest.raises(PrunelimitError) as err:
        validate_config(config, SCHEMA)
    message = str(err.value)
    assert "\n" not in message and len(message) < 400, message
    return message


@pytest.mark.parametrize("section", ["hessian", "theory", "prune", "iterative", "baselines"])
def test_missing_section_is_named(section):
    config = load_config()
    del config[section]
    assert f"at the top level: '{section}' is a required property" in _invalid(config)


@pytest.mark.parametrize(("section", "key"), [
    ("hessian", "n_iter"), ("hessian", "exact_max_params"), ("theory", "eta"), ("prune", "grid"),
    ("iterative", "rounds"), ("baselines", "sparsities"), ("baselines", "methods"),
])
def test_missing_key_of_a_section_is_named(section, key):
    config = load_config()
    del config[section][key]
    assert f"at {section}: '{key}' is a required property" in _invalid(config)


def test_bad_value_in_a_nested_block_is_named():
    config = load_config()
    config["baselines"]["rare_gems"] = {"score_lr": -1}  # the other keys take the schema's defaults
    assert "at baselines.rare_gems.score_lr: -1 is less than or equal to the minimum of 0" in _invalid(config)


@pytest.mark.parametrize(("key", "yaml_value", "message"), [
    ("tasks.fc5_digits.l1", ".nan", "tasks.fc5_digits.l1 = nan: numbers must be finite"),
    ("train_defaults.lr", ".inf", "train_defaults.lr = inf: numbers must be finite"),
    ("theory.epsilon", ".inf", "theory.epsilon = inf: numbers must be finite"),
], ids=["l1-nan", "lr-inf", "epsilon-inf"])
def test_non_finite_numbers_are_refused_by_key(key, yaml_value, message):
    """YAML's .nan and .inf are floats that pass any minimum/maximum of the schema."""
    config = load_config()
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = yaml.safe_load(f"value: {yaml_value}")["value"]
    assert message in _invalid_ours(config)


def _invalid_ours(config) -> str:
    with pytest.raises(PrunelimitError) as err:
        validate_config(config, SCHEMA)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_task_spec_refuses_non_finite_training_options_naming_the_task():
    config = load_config()
    config["tasks"]["mlp_digits"]["train"]["lr"] = float("nan")
    with pytest.raises(PrunelimitError, match=r"task mlp_digits: training option lr = nan; numbers must be finite"):
        task_spec(config, "mlp_digits", "dense")


def test_model_args_typo_names_the_task_and_the_known_arguments():
    config = load_config()
    config["tasks"]["vgg_digits"]["model_args"] = {"widht": 0.125}
    message = _invalid_ours(config)
    assert message == ("invalid config at tasks.vgg_digits: model_args ['widht'] unknown to model vgg16; "
                       "it takes ['width', 'batch_norm']")


@pytest.mark.parametrize("task, model_args, expected", [
    ("mlp_digits", {"hidden": "abc"}, "model_args.hidden of model mlp must be a non-empty list of positive integers"),
    ("fc5_digits", {"width": "wide"}, "model_args.width of model fc5 must be a positive number, got 'wide'"),
    ("mlp_digits", {"hidden": [32, None]}, "model_args.hidden of model mlp must be"),
])
def test_model_args_of_the_wrong_type_are_one_config_line(task, model_args, expected):
    """Right names, wrong values: one line naming the task and the argument, checked against the types the
    architecture declares, not a TypeError from inside the model."""
    config = load_config()
    config["tasks"][task]["model_args"] = model_args
    message = _invalid_ours(config)
    assert message.startswith(f"invalid config at tasks.{task}: {expected}") and "\n" not in message


def test_misspelt_top_level_key_is_one_short_line():
    config = load_config()
    config["hesian"] = config.pop("hessian")
    message = _invalid_ours(config)
    assert "'hesian' was unexpected" in message and "'hessian' is a required property" in message
    assert len(message) < 250  # no schema dump


@pytest.mark.parametrize("preset", ["config.yaml", "workflow/presets/paper.yaml", "workflow/presets/smoke.yaml"])
def test_every_preset_is_valid(preset):
    validate_config(load_config(preset), SCHEMA)


def test_every_key_of_a_section_is_required_or_has_a_default():
    """A key added to (or renamed in) a section must join its `required` list or get a default, or its
    absence would again surface as a KeyError inside a rule."""
    schema = yaml.safe_load(SCHEMA.read_text())
    blocks = {name: schema["properties"][name]
              for name in ("hessian", "theory", "prune", "iterative", "baselines", "oneshot")}
    for section in ("baselines", "oneshot"):
        blocks.update({f"{section}.{m}": block for m, block in blocks[section]["properties"].items()
                       if block.get("type") == "object" and "properties" in block})
    for name, block in blocks.items():
        defaulted = {key for key, prop in block["properties"].items() if "default" in prop}
        assert set(block.get("required", [])) | defaulted == set(block["properties"]), name


# ---------------------------------------------------------------------------------------------
# Temporaries of a killed write are removed by the next write of the same target
# ---------------------------------------------------------------------------------------------


def test_next_write_removes_a_killed_writes_temporary(tmp_path):
    target = tmp_path / "model.pt"
    stale = tmp_path / ".model.pt.k1ll3d_x.tmp"  # what SIGKILL during save_torch leaves
    other = tmp_path / ".metrics.json.abcd1234.tmp"  # another target's: not ours to remove
    lookalike = tmp_path / ".model.pt.x.abcd1234.tmp"  # the temporary of a target named model.pt.x
    for path in (stale, other, lookalike):
        path.write_bytes(b"half")
    save_torch({"w": 1}, target)
    assert target.exists() and not stale.exists()
    assert other.exists() and lookalike.exists()
    save_json({"a": 1}, tmp_path / "metrics.json")
    assert not other.exists()
    assert sorted(os.listdir(tmp_path)) == [".model.pt.x.abcd1234.tmp", "metrics.json", "model.pt"]


# ---------------------------------------------------------------------------------------------
# Reproducibility and Snakemake's lock
# ---------------------------------------------------------------------------------------------


def test_two_runs_from_scratch_give_identical_weights_spectra_and_predictions(tmp_path, capsys):
    import json

    import torch

    from prunelimit.cli import main
    from prunelimit.data import TensorData
    from prunelimit.models import build_model
    from prunelimit.stages import spectrum_of_trained
    from prunelimit.train import TrainConfig, train

    data_file = prepare_dataset("digits", tmp_path / "digits.npz", progress=False)
    full = load_tensors(data_file)
    np.savez(tmp_path / "user.npz", x_train=full.x_train.numpy()[:300], y_train=full.y_train.numpy()[:300])
    runs = []
    for run in range(2):
        full = load_tensors(data_file)
        data = TensorData(full.x_train[:256], full.y_train[:256], full.x_test, full.y_test, 10)  # kept small
        model = build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[16])
        train(model, data, TrainConfig(epochs=2, lr=0.05, l1=1e-4, augment=True, crop_padding=1), progress=False)
        spectrum = spectrum_of_trained(model, data, hessian_with({"n_runs": 2, "n_iter": 8, "max_iter": 8, "seed": 0}),
                                           progress=False)
        torch.save(model.state_dict(), tmp_path / f"run{run}.pt")
        assert main(["predict", "--model", "mlp", "--model-args", '{"hidden": [16]}', "--checkpoint",
                     str(tmp_path / f"run{run}.pt"), "--data", str(tmp_path / "user.npz"), "--runs", "1",
                     "--iters", "8", "--row-levels", "3", "--bins", "100", "--l1", "1e-4", "--json",
                     "--no-progress"]) == 0
        prediction = json.loads(capsys.readouterr().out)
        prediction.pop("timings_s")
        runs.append((model.state_dict(), spectrum.ritz_values, prediction))
    (w0, s0, p0), (w1, s1, p1) = runs
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    np.testing.assert_array_equal(s0, s1)
    assert p0 == p1


@pytest.mark.slow  # two Snakemake processes: ~10 s of CPU
def test_snakemake_lock_stops_a_second_run(tmp_path, small_config):
    """The first run waits inside its dataset rule (a server that accepts and never answers) while
    holding the lock; a second run of the same target stops at once."""
    import signal
    import socket
    import subprocess

    from pipeline_utils import SNAKEMAKE, snakemake

    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/cifar-10-python.tar.gz"
    config = small_config(tmp_path / "lock.yaml", preset="lock", device="cpu", variants=["dense"],
                          datasets={"cifar10": {"url": url, "md5": "0" * 32}},
                          tasks={"fc5_cifar10": {"model": "fc5", "dataset": "cifar10"}})
    work, target = tmp_path / "work", "results/lock/data/cifar10.npz"
    first = subprocess.Popen([SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--configfile",
                              str(config), "--cores", "1", target], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    try:
        listener.settimeout(60)
        connection, _ = listener.accept()  # the first run is downloading: it holds the lock
        second = snakemake(work, "--cores", "1", target, configfile=config, check=False, timeout=120)
        assert second.returncode != 0
        assert "Directory cannot be locked" in second.stdout + second.stderr
        connection.close()
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the session we started for it, nothing else
        first.wait(timeout=30)
        listener.close()
