"""The epoch scan behind each task's E (config.yaml's L1 regime rule): the decision follows the rule
from the rows, and `prunelimit epoch-scan` writes them."""

import pandas as pd
import pytest

from prunelimit.data import TensorData, load_tensors, prepare_dataset
from prunelimit.epoch_scan import COLUMNS, MAX_ACCURACY_DROP, MAX_DRIFT, decide, scan_epochs

RULE_COLUMNS = ["epochs", "seed", "dense_test_acc", "l1_test_acc", "l1_train_acc", "small_weight_share",
                "drift_last_tenth", "l1"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits_file(tmp_path_factory):
    return prepare_dataset("digits", tmp_path_factory.mktemp("data") / "digits.npz", progress=False)


def _tiny_spec(variant, epochs, seed):
    train = {"epochs": epochs, "lr": 0.05, "seed": seed, "batch_size": 128}
    if variant == "l1":
        train["l1_shrinkage"] = 0.0391
    return {"task": "tiny", "variant": f"{variant}_seed{seed}", "model": "mlp", "dataset": "digits",
            "model_args": {"hidden": [8]}, "train": train}


def _rule_by_hand(rows, candidates, seeds):
    """config.yaml's rule, recomputed from the rows without the module's helpers."""
    for e in sorted(candidates):
        at = [r for r in rows if r["epochs"] == e]
        assert sorted(r["seed"] for r in at) == sorted(seeds)
        dense = sum(r["dense_test_acc"] for r in at) / len(at)
        l1 = sum(r["l1_test_acc"] for r in at) / len(at)
        if l1 >= dense - 0.012 - 1e-12 and all(abs(r["drift_last_tenth"]) <= 0.02 + 1e-12 for r in at):
            return e
    return None


def test_scan_decision_follows_the_rule_from_its_rows(digits_file):
    full = load_tensors(digits_file)
    data = TensorData(full.x_train[:384], full.y_train[:384], full.x_test, full.y_test, 10)  # 3 steps per epoch
    seen = []
    # 20 and 40 epochs: the drift spans their last tenth, 2 and 4 epochs
    scan = scan_epochs(_tiny_spec, data, candidates=(40, 20), seeds=(0, 1), stop_at_first_pass=False,
                       progress=False, on_row=seen.append)
    assert seen == scan.rows
    assert [(r["epochs"], r["seed"]) for r in scan.rows] == [(20, 0), (20, 1), (40, 0), (40, 1)]
    assert all(list(r) == COLUMNS for r in scan.rows) and COLUMNS[:len(RULE_COLUMNS)] == RULE_COLUMNS
    assert any(r["drift_last_tenth"] != 0 for r in scan.rows)  # the drift criterion is not vacuous here
    assert all(r["l1"] > 0 and r["l1_shrinkage"] == pytest.approx(0.0391) for r in scan.rows)  # target met at each E
    assert scan.decision["chosen_epochs"] == _rule_by_hand(scan.rows, (20, 40), (0, 1))
    for p in scan.decision["per_epochs"]:
        at = [r for r in scan.rows if r["epochs"] == p["epochs"]]
        drop = sum(r["dense_test_acc"] - r["l1_test_acc"] for r in at) / len(at)
        assert p["accuracy_drop"] == pytest.approx(drop)
        assert p["accuracy_ok"] == (drop <= 0.012 + 1e-12)
        assert p["drift_ok"] == all(abs(r["drift_last_tenth"]) <= 0.02 + 1e-12 for r in at)
        assert p["passes"] == (p["accuracy_ok"] and p["drift_ok"])

    # stopping at the first pass: with bounds every E meets, only the first candidate is trained
    loose = scan_epochs(_tiny_spec, data, candidates=(20, 40), seeds=(0,), max_accuracy_drop=1.0, max_drift=1.0,
                        progress=False)
    assert [r["epochs"] for r in loose.rows] == [20] and loose.decision["chosen_epochs"] == 20
    same = [c for c in COLUMNS if c != "wall_time_s"]
    assert [loose.rows[0][c] for c in same] == [scan.rows[0][c] for c in same]  # same recipe, seed, E: same models


def _row(e, seed, dense, l1, drift):
    return {"epochs": e, "seed": seed, "dense_test_acc": dense, "l1_test_acc": l1, "drift_last_tenth": drift}


def test_rule_is_one_sided_in_accuracy_per_seed_in_drift_and_takes_the_smallest_e():
    assert (MAX_ACCURACY_DROP, MAX_DRIFT) == (0.012, 0.02)  # config.yaml's numbers
    rows = [
        _row(40, 0, 0.96, 0.90, 0.0), _row(40, 1, 0.96, 0.99, 0.0),  # mean drop 0.015 > 0.012: (a) fails
        _row(80, 0, 0.96, 0.95, 0.0), _row(80, 1, 0.96, 0.96, -0.03),  # drop 0.005, seed 1 drifts -0.03: (b) fails
        _row(160, 0, 0.60, 0.70, 0.02), _row(160, 1, 0.60, 0.72, -0.02),  # L1 beats dense, |drift| = 0.02: passes
        _row(320, 0, 0.96, 0.96, 0.0), _row(320, 1, 0.96, 0.96, 0.0),  # passes too, but larger
    ]
    decision = decide(list(reversed(rows)))
    assert [(p["epochs"], p["accuracy_ok"], p["drift_ok"]) for p in decision["per_epochs"]] == [
        (40, False, True), (80, True, False), (160, True, True), (320, True, True)]
    assert decision["chosen_epochs"] == 160
    assert decide(rows[:4])["chosen_epochs"] is None
    assert decide([_row(40, 0, 0.963, 0.951, 0.0)])["chosen_epochs"] == 40  # a drop of exactly 0.012 is within


def test_cli_writes_the_rows_and_the_decision(tmp_path, small_config, capsys):
    from prunelimit.cli import main

    config = small_config(tmp_path / "config.yaml", preset="scan", device="cpu",
                          tasks={"tiny_digits": {"model": "mlp", "model_args": {"hidden": [8]}, "dataset": "digits",
                                                 "l1_shrinkage": 0.0391, "train": {"epochs": 40, "lr": 0.05}}})
    data_dir = tmp_path / "data"  # prepared there with the config's digits options
    out = tmp_path / "scan" / "tiny_digits.csv"
    assert main(["epoch-scan", "--config", str(config), "--task", "tiny_digits", "--candidates", "10", "20",
                 "--seeds", "0", "--all-candidates", "--data-dir", str(data_dir), "--out", str(out),
                 "--no-progress"]) == 0
    table = pd.read_csv(out)
    assert list(table.columns) == COLUMNS
    assert list(zip(table.epochs, table.seed)) == [(10, 0), (20, 0)]
    rows = [dict(zip(table.columns, values)) for values in table.itertuples(index=False)]
    chosen = _rule_by_hand(rows, (10, 20), (0,))
    md = out.with_suffix(".md").read_text()
    assert f"**Chosen E: {chosen if chosen is not None else 'none of the scanned candidates'}**" in md
    assert "(the config trains 40)" in md and "| 10 |" in md and "| 20 |" in md
    printed = capsys.readouterr().out
    assert (f"chosen E = {chosen}" if chosen is not None else "no scanned E passes") in printed
    assert table.l1_shrinkage.to_list() == pytest.approx([0.0391, 0.0391])  # the task's target, met at each E
    assert main(["epoch-scan", "--config", str(config), "--task", "nope", "--out", str(out)]) == 2
