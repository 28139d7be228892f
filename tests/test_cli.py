"""`prunelimit predict`: a user's own model gets the pipeline's prediction; bad input is one line, exit 2."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

PRUNELIMIT = str(Path(sys.executable).with_name("prunelimit"))

USER_MODULE = textwrap.dedent("""
    import torch
    from torch import nn


    class TinyNet(nn.Module):  # a user's own network (same layout as the registry's mlp [32, 16])
        def __init__(self, hidden=32):
            super().__init__()
            self.linear = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 16), nn.ReLU(),
                                        nn.Linear(16, 10))

        def forward(self, x):
            return self.linear(x.flatten(1))


    def make(hidden=32):
        return TinyNet(hidden)


    def not_a_model():
        return 42
""")


@pytest.fixture(scope="module")
def pipeline(mini_run, tmp_path_factory):
    """A directory whose results/mini is the session's mini run (the theory rule's prediction of the
    trained mlp_digits is what the CLI must reproduce), with the user's module beside it."""
    workdir = tmp_path_factory.mktemp("cli")
    (workdir / "results").mkdir()
    (workdir / "results" / "mini").symlink_to(mini_run[0] / "results" / "mini", target_is_directory=True)
    (workdir / "user_net.py").write_text(USER_MODULE)
    return workdir, mini_run.config


def run_cli(workdir, *args):
    return subprocess.run([PRUNELIMIT, "predict", *args], capture_output=True, text=True, cwd=workdir, timeout=600)


def _common_args(config, workdir):
    h, t = {**config["hessian"], **config["tasks"]["mlp_digits"].get("hessian", {})}, config["theory"]
    # λ as the run resolved it (the task gives an L1 shrinkage target; metrics.json holds λ)
    l1 = json.loads((workdir / "results/mini/train/mlp_digits/l1/metrics.json").read_text())["train"]["l1"]
    return ["--runs", str(h["n_runs"]), "--iters", str(h["n_iter"]), "--max-iters", str(h["max_iter"]),
            "--tol", str(h["tol"]), "--row-levels", str(t["row_levels"]),
            "--bins", str(h["n_bins"]), "--sigma2", str(h["sigma2"]), "--eta", str(t["eta"]),
            "--l1", repr(l1), "--seed", "0", "--no-progress"]


# A user's module is a plain nn.Module: the Hessian operator cannot see which units are zero on every
# sample (it does for the registry's MLP), so Lanczos runs on all D coordinates and meets the null
# share through a Ritz node instead of placing it at exactly 0: the same prediction within the SLQ
# tolerance, not to the digit (docs/method.md, "zero eigenvalues counted once").
USER_MODULE_TOL = 0.005


@pytest.mark.parametrize("model", [["--model", "mlp", "--model-args", '{"hidden": [32, 16]}'],
                                   ["--model", "user_net.py:make"]], ids=["registry-mlp", "user-module"])
def test_user_model_gets_the_pipelines_prediction(pipeline, model):
    workdir, config = pipeline
    proc = run_cli(workdir, *model, "--checkpoint", "results/mini/train/mlp_digits/l1/model.pt",
                   "--data", "digits", "--data-dir", "results/mini/data", "--json", *_common_args(config, workdir))
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    expected = json.loads((workdir / "results/mini/theory/mlp_digits/prediction.json").read_text())
    # Same code path and seeds; float32 HVP reductions differ in order with the thread count
    # (the rule runs 1 thread, the CLI all cores), so equal to ~1e-6 rather than bitwise.
    registry = model[1] == "mlp"
    for key in ("predicted_sparsity", "lower_sparsity", "upper_sparsity", "epsilon", "zero_fraction"):
        near = registry or key in ("epsilon", "zero_fraction")
        assert got[key] == pytest.approx(expected[key], rel=1e-5 if near else 0, abs=1e-9 if near else USER_MODULE_TOL)
    assert (got["null_mass"]["exact_off_support"] > 0) is registry
    assert got["D"] == expected["D"] == 64 * 32 + 32 * 16 + 16 * 10
    assert set(got) >= {"predicted_sparsity", "predicted_density", "lower_sparsity", "upper_sparsity", "gap",
                        "epsilon", "epsilon_source", "D", "zero_fraction", "top_eigenvalues", "timings_s"}
    assert got["top_eigenvalues"] == sorted(got["top_eigenvalues"], reverse=True)
    assert set(got["timings_s"]) >= {"load_data", "load_model", "theory"}
    # the same doubling schedule; where a run exhausts its Krylov space the exact breakdown step can
    # move by a step or two with the float32 reduction order
    assert len(got["slq_steps"]) == len(expected["slq"]["steps"])
    for cli_steps, rule_steps in zip(got["slq_steps"], expected["slq"]["steps"]):
        assert abs(cli_steps - rule_steps) <= 4


def test_text_output_and_verify_from_a_data_file(pipeline):
    workdir, config = pipeline
    from prunelimit.data import load_tensors

    data = load_tensors(workdir / "results/mini/data/digits.npz")
    np.savez(workdir / "digits_user.npz", x_train=data.x_train.numpy(), y_train=data.y_train.numpy(),
             x_test=data.x_test.numpy(), y_test=data.y_test.numpy())
    proc = run_cli(workdir, "--model", "user_net.py:make", "--checkpoint", "results/mini/train/mlp_digits/l1/model.pt",
                   "--data", "digits_user.npz", "--verify", *_common_args(config, workdir))
    assert proc.returncode == 0, proc.stderr
    assert "predicted pruning limit: sparsity" in proc.stdout
    assert "kinematic bounds" in proc.stdout
    assert "actual (one-shot sweep): sparsity" in proc.stdout
    expected = json.loads((workdir / "results/mini/theory/mlp_digits/prediction.json").read_text())
    shown = float(re.search(r"predicted pruning limit: sparsity ([0-9.]+)", proc.stdout).group(1))
    assert shown == pytest.approx(expected["predicted_sparsity"], abs=USER_MODULE_TOL)  # same data, as a user file


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "user_net.py:make", "--model-args", '{"hidden": 20}'], "does not fit the model"),
        (["--model", "resnet19"], "unknown model 'resnet19'"),
        (["--model", "no_such_module_xyz:make"], "cannot import module 'no_such_module_xyz'"),
        (["--model", "user_net.py:not_a_model"], "not a torch.nn.Module"),
        (["--model", "user_net.py:make", "--data", "bad_shapes.npz"], "do not fit the model"),
        (["--model", "user_net.py:make", "--data", "bad_labels.npz"], "one label per sample"),
    ],
    ids=["checkpoint-mismatch", "unknown-model", "unimportable-module", "not-a-module", "data-shape", "label-count"],
)
def test_bad_input_is_one_line_exit_2(pipeline, args, message):
    workdir, _ = pipeline
    np.savez(workdir / "bad_shapes.npz", x_train=np.zeros((10, 1, 5, 5), np.float32), y_train=np.zeros(10, np.int64))
    np.savez(workdir / "bad_labels.npz", x_train=np.zeros((10, 1, 8, 8), np.float32), y_train=np.zeros(7, np.int64))
    base = {"--checkpoint": "results/mini/train/mlp_digits/l1/model.pt", "--data": "digits",
            "--data-dir": "results/mini/data"}
    extra = [x for k, v in base.items() if k not in args for x in (k, v)]
    proc = run_cli(workdir, *args, *extra, "--runs", "1", "--iters", "4", "--no-progress")
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_describes_every_option():
    top = subprocess.run([PRUNELIMIT, "--help"], capture_output=True, text=True)
    assert top.returncode == 0 and "predict" in top.stdout
    sub = subprocess.run([PRUNELIMIT, "predict", "--help"], capture_output=True, text=True)
    from prunelimit.cli import build_parser

    predict_parser = build_parser()._subparsers._group_actions[0].choices["predict"]
    for action in predict_parser._actions:
        for flag in action.option_strings:
            assert flag in sub.stdout
        assert action.help, f"{action.option_strings} has no help"
    assert "x_train" in sub.stdout  # the data format is documented


# ---------------------------------------------------------------------------------------------
# Bad input without a trained pipeline: in-process, a registry model with an untrained checkpoint
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def registry_files(tmp_path):
    """An mlp [8] checkpoint for 10 classes of 8x8 inputs, and a writer of --data files."""
    import torch

    from prunelimit.models import build_model

    torch.save(build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[8]).state_dict(), tmp_path / "mlp.pt")
    rng = np.random.default_rng(0)

    def data(name="d.npz", n=40, labels=None, x=None):
        x = rng.normal(size=(n, 1, 8, 8)).astype(np.float32) if x is None else x
        y = np.arange(n) % 10 if labels is None else labels
        np.savez(tmp_path / name, x_train=x, y_train=y)
        return str(tmp_path / name)

    return tmp_path, data


def _predict(capsys, tmp_path, data, *extra, model_args='{"hidden": [8]}', checkpoint="mlp.pt"):
    from prunelimit.cli import main

    args = ["predict", "--model", "mlp", "--checkpoint", str(tmp_path / checkpoint), "--data", data,
            "--runs", "1", "--iters", "4", "--row-levels", "2", "--bins", "50", "--no-progress", *extra]
    if model_args is not None:
        args += ["--model-args", model_args]
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rejected(result, message):
    code, _, err = result
    assert code == 2, err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


BAD_DATA = {  # case: (data file, expected message)
    "label-negative": (lambda data: data(labels=np.r_[-1, np.arange(39) % 10]),
                       "--data: y_train: label -1 is outside [0, 10)"),  # the classes as the labels give them
    "no-samples": (lambda data: data(n=0, labels=np.zeros(0, np.int64)), "holds no samples"),
    "float-labels": (lambda data: data(labels=(np.arange(40) % 10) + 0.7),
                     "--data: y_train: labels must be integers, got float64"),
    "inf-inputs": (lambda data: data(x=np.where(np.arange(40 * 64).reshape(40, 1, 8, 8) == 7, np.inf, 0.0)),
                   "--data: x_train holds 1 inf values"),
    "label-above-classifier": (lambda data: data(labels=np.r_[12, np.arange(39) % 10]),
                               "--data: labels go up to 12, but the checkpoint's classifier linear.2.weight has 10 "
                               "outputs (classes 0..9)"),
    "one-sample": (lambda data: data(n=1, labels=np.zeros(1, np.int64)), "x_train holds 1 sample; pass --epsilon"),
}


@pytest.mark.parametrize("case", list(BAD_DATA))
def test_bad_data_is_one_line_exit_2(registry_files, capsys, case):
    tmp_path, data = registry_files
    make, message = BAD_DATA[case]
    _rejected(_predict(capsys, tmp_path, make(data)), message)


def test_data_file_inputs_of_any_rank_checked_as_the_pipelines(tmp_path):
    """A user's file may hold flat (N, F) inputs; prunelimit.data.check_arrays checks them all the same."""
    import torch

    from prunelimit.cli_inputs import load_data
    from prunelimit.io import PrunelimitError

    x, y = np.arange(40 * 64, dtype=np.float32).reshape(40, 64), np.arange(40) % 10
    files = {"flat": {"x_test": x[:8], "y_test": y[:8]}, "half": {"x_test": x[:8]},
             "shapes": {"x_test": x[:8, :32], "y_test": y[:8]}}
    for name, test in files.items():
        np.savez(tmp_path / f"{name}.npz", x_train=x, y_train=y, **test)
    data = load_data(str(tmp_path / "flat.npz"), str(tmp_path), torch.device("cpu"))
    assert data.x_train.shape == (40, 64) and data.x_test.shape == (8, 64) and data.num_classes == 10
    with pytest.raises(PrunelimitError, match="only one of x_test and y_test"):
        load_data(str(tmp_path / "half.npz"), str(tmp_path), torch.device("cpu"))
    with pytest.raises(PrunelimitError, match="--data: x_test samples are"):
        load_data(str(tmp_path / "shapes.npz"), str(tmp_path), torch.device("cpu"))


def test_verify_measures_as_the_config_prune_section_with_grid_over_it(tmp_path):
    from pipeline_utils import load_config, write_config
    from prunelimit.cli import build_parser, verify_settings
    from prunelimit.settings import ThresholdSettings

    base = ["predict", "--model", "mlp", "--checkpoint", "m.pt", "--data", "d.npz"]
    parse = build_parser().parse_args
    assert verify_settings(parse(base)) == ThresholdSettings(grid=1000, tolerances=(0.0, 0.005, 0.01, 0.02))
    config = load_config()
    config["prune"] = {**config["prune"], "grid": 50, "tolerances": [0, 0.03]}
    path = str(write_config(tmp_path / "config.yaml", config))
    assert verify_settings(parse([*base, "--config", path])) == ThresholdSettings(grid=50, tolerances=(0, 0.03))
    assert verify_settings(parse([*base, "--config", path, "--grid", "20"])) == ThresholdSettings(20, (0, 0.03))


@pytest.mark.parametrize(("model_args", "message"), [
    ('{"hiden": [8]}', "--model-args: model_args ['hiden'] unknown to model mlp; it takes ['hidden']"),
    ("[8]", "--model-args must be a JSON object of keyword arguments"),
    ('{"hidden": [8]', "--model-args is not valid JSON"),
    ('{"hidden": "wide"}', "--model-args: "),
], ids=["unknown-key", "not-an-object", "bad-json", "bad-value"])
def test_bad_model_args_are_one_line_exit_2(registry_files, capsys, model_args, message):
    tmp_path, data = registry_files
    _rejected(_predict(capsys, tmp_path, data(), model_args=model_args), message)


def test_empty_checkpoint_says_so(registry_files, capsys):
    tmp_path, data = registry_files
    (tmp_path / "empty.pt").write_bytes(b"")
    _rejected(_predict(capsys, tmp_path, data(), checkpoint="empty.pt"), "empty.pt: the file is empty")


def test_fewer_samples_than_two_batches_warns_about_epsilon(registry_files, capsys):
    """40 samples: ε comes from batches of 20, not the paper's 128; said on stderr and in the JSON. The labels use
    5 of the checkpoint's 10 classes: the registry model takes its class count from the checkpoint."""
    tmp_path, data = registry_files
    code, out, err = _predict(capsys, tmp_path, data(labels=np.arange(40) % 5), "--json")
    assert code == 0, err
    warnings = json.loads(out)["warnings"]
    assert len(warnings) == 1 and "only 40 training samples" in warnings[0] and "(batch 20" in warnings[0]
    assert err.strip() == f"prunelimit: warning: {warnings[0]}"
    code, out, err = _predict(capsys, tmp_path, data(labels=np.arange(40) % 5), "--json", "--epsilon", "0.1")
    assert code == 0 and json.loads(out)["warnings"] == [] and err == ""


def test_epsilon_band_in_json_and_text(registry_files, capsys):
    """ε's spread over --epsilon-partitions batch partitions and the prediction at its 10th and 90th
    percentiles: in the JSON and the text summary; none with --epsilon; 1 partition is refused."""
    tmp_path, data = registry_files
    path = data(n=300)
    code, out, err = _predict(capsys, tmp_path, path, "--json", "--epsilon-partitions", "4")
    assert code == 0, err
    band = json.loads(out)["epsilon_band"]
    assert band["partitions"] == len(band["values"]) == 4 and band["batch_size"] == 128
    assert band["p10"] == pytest.approx(np.percentile(band["values"], 10))
    assert band["p90"] == pytest.approx(np.percentile(band["values"], 90))
    assert band["predicted_sparsity_at_p10"] <= band["predicted_sparsity_at_p90"]
    code, out, err = _predict(capsys, tmp_path, path, "--epsilon-partitions", "4")
    assert code == 0, err
    line = next(x for x in out.splitlines() if x.startswith("ε band (p10–p90):"))
    assert f"{band['p10']:.4g}" in line and f"{band['predicted_sparsity_at_p90']:.4f}" in line
    code, out, err = _predict(capsys, tmp_path, path, "--json", "--epsilon", "0.1")
    assert code == 0 and json.loads(out)["epsilon_band"] is None
    _rejected(_predict(capsys, tmp_path, path, "--epsilon-partitions", "1"), "--epsilon-partitions must be 0")
