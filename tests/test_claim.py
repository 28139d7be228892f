"""The claim test over training seeds (prunelimit.claim): per-seed rows, mean ± sd, the verdict rule."""

import math

import numpy as np
import pandas as pd
import pytest

from prunelimit.claim import summary, theory_vs_actual_table, verdict
from prunelimit.io import PrunelimitError
from test_figures import actual, prediction


def run(task, seed, predicted, actual_sparsity, small_share, band=True):
    pred = {**prediction(0), "predicted_sparsity": predicted}
    if band:
        pred["epsilon_band"] = {"p10": 0.008, "p90": 0.012, "predicted_sparsity_at_p10": predicted - 0.01,
                                "predicted_sparsity_at_p90": predicted + 0.01}
    return {"task": task, "seed": seed, "prediction": pred,
            "actual": {**actual(0), "actual_sparsity": actual_sparsity, "task": task},
            "metrics": {"task": task, "train": {"seed": seed}, "small_weight_share": small_share}}


def test_rows_per_seed_then_mean_and_sample_sd():
    runs = [run("a", 0, 0.90, 0.92, 0.80), run("a", 1, 0.91, 0.95, 0.85), run("a", 2, 0.93, 0.93, 0.90),
            run("b", 0, 0.5, 0.4, 0.45)]
    table = theory_vs_actual_table(runs)
    assert table.seed.tolist() == ["0", "1", "2", "mean", "sd", "0", "mean", "sd"]
    a = table[table.task == "a"].set_index("seed")
    predicted, actual_s = np.array([0.90, 0.91, 0.93]), np.array([0.92, 0.95, 0.93])
    assert a.loc["mean", "predicted_sparsity"] == pytest.approx(predicted.mean())
    assert a.loc["sd", "actual_sparsity"] == pytest.approx(actual_s.std(ddof=1))
    assert a.loc["sd", "difference"] == pytest.approx((predicted - actual_s).std(ddof=1))
    # density error in the paper's unit (fraction kept), per seed and averaged
    errors = ((1 - predicted) - (1 - actual_s)) / (1 - actual_s)
    assert a.loc[["0", "1", "2"], "density_error"].to_numpy(float) == pytest.approx(errors)
    assert a.loc["mean", "density_error"] == pytest.approx(errors.mean())
    # the naive predictor: |w| < 1e-3 share against the actual limit
    assert a.loc["1", "naive_difference"] == pytest.approx(0.85 - 0.95)
    assert a.loc["0", "theory_beats_naive"] == "yes" and a.loc["2", "theory_beats_naive"] == "yes"
    assert a.loc["mean", "theory_beats_naive"].startswith("yes (per seed 3/3)")
    assert a.loc["mean", "predicted_at_eps_p90"] == pytest.approx(predicted.mean() + 0.01)
    b = table[table.task == "b"].set_index("seed")
    assert math.isnan(b.loc["sd", "predicted_sparsity"]) and b.loc["mean", "verdict"].startswith("one seed")
    assert summary(table).set_index("task").loc["a", "difference_sd"] == pytest.approx(
        (predicted - actual_s).std(ddof=1))


@pytest.mark.parametrize("differences, actual_sd, expected", [
    ([0.01, -0.01, 0.005], 0.0, "agrees: |mean difference| 0.0017 <= 2 se"),     # mean inside 2 se of 0
    ([0.030, 0.031, 0.029], 0.001, "prediction above actual by 0.0300"),         # tight and biased
    ([0.030, 0.031, 0.029], 0.05, "agrees: |mean difference| 0.0300 <= the actual limit's seed sd"),
    ([-0.2, -0.21, -0.19], 0.01, "prediction below actual by 0.2000"),
    ([0.02], 0.0, "one seed, no spread measured: prediction above actual by 0.020"),
])
def test_verdict_follows_the_measured_spread(differences, actual_sd, expected):
    assert verdict(np.array(differences), actual_sd).startswith(expected)


def test_verdict_two_standard_errors_is_the_boundary():
    d = np.array([0.01, 0.02, 0.03])  # mean 0.02, sd 0.01, se 0.01/sqrt(3)
    se = 0.01 / math.sqrt(3)
    assert verdict(d, 0.0).startswith("agrees") is (0.02 <= 2 * se)
    assert verdict(d + 0.0, 0.0).startswith("prediction above")  # 0.02 > 2 se = 0.0115


def test_a_model_of_another_seed_is_refused():
    bad = run("a", 1, 0.9, 0.9, 0.8)
    bad["metrics"]["train"]["seed"] = 0
    with pytest.raises(PrunelimitError, match="seed 1.*training seed 0"):
        theory_vs_actual_table([bad])
    with pytest.raises(PrunelimitError, match="twice"):
        theory_vs_actual_table([run("a", 1, 0.9, 0.9, 0.8), run("a", 1, 0.9, 0.9, 0.8)])


def test_table_round_trips_through_csv(tmp_path):
    from prunelimit.tables import write_table
    table = theory_vs_actual_table([run("a", 0, 0.9, 0.92, 0.8), run("a", 1, 0.91, 0.95, 0.85, band=False)])
    write_table(table, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex")
    back = pd.read_csv(tmp_path / "t.csv", dtype={"seed": str})
    assert back.seed.tolist() == ["0", "1", "mean", "sd"] and math.isnan(back.predicted_at_eps_p10[1])
