"""Tables: the writers and the total-variation distance."""

import numpy as np
import pandas as pd
import pytest

from prunelimit.tables import total_variation, tv_distance_table, write_table


def test_total_variation_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, 200_000)
    assert total_variation(a, a) == 0.0
    assert total_variation(a, a + 5.0, bins=100) == pytest.approx(1.0)  # disjoint supports
    # U[0,1] vs U[0.5,1.5]: densities overlap on half the mass, TV = 1/2
    assert total_variation(a, a + 0.5, bins=300) == pytest.approx(0.5, abs=0.01)
    # N(0,1) vs N(1,1): TV = 2Φ(1/2) − 1 = 0.3829
    x, y = rng.normal(0, 1, 400_000), rng.normal(1, 1, 400_000)
    assert total_variation(x, y, bins=400) == pytest.approx(0.3829, abs=0.01)


def test_tv_distance_table_has_a_row_per_seed_pair():
    rng = np.random.default_rng(1)
    runs = {"t1": {0: rng.normal(size=1000), 1: rng.normal(size=1000), 2: rng.normal(size=1000)},
            "t2": {0: rng.normal(size=500), 3: rng.normal(size=500)}}
    table = tv_distance_table(runs, bins=20)
    assert len(table) == 3 + 1
    assert set(table.columns) >= {"task", "seed_a", "seed_b", "tv_weights", "tv_log_abs_weights"}
    assert (table.tv_weights.between(0, 1)).all()


def test_write_table_three_formats(tmp_path):
    df = pd.DataFrame({"task": ["a_b", "c"], "acc": [0.91234567, 0.5]})
    write_table(df, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex")
    assert pd.read_csv(tmp_path / "t.csv").equals(df)
    md = (tmp_path / "t.md").read_text()
    assert "0.9123" in md and md.startswith("| task")
    tex = (tmp_path / "t.tex").read_text()
    assert "\\toprule" in tex and "a\\_b" in tex


# ---------------------------------------------------------------------------------------------
# The regime map
# ---------------------------------------------------------------------------------------------

N_TEST = 360  # digits' test set: accuracies are multiples of 1/360, as in the mini run


def _regime_sweep(tmp_path, name, correct_by_step):
    """A saved one-shot sweep (curve.csv and actual.json, written as the sweep rule writes them)
    on a 10-point grid whose accuracy is ``correct_by_step[i]`` / 360."""
    from prunelimit.io import load_json, save_json
    from prunelimit.prune import CURVE_COLUMNS, save_rows_csv, thresholds_from_curve

    rows = [{"sparsity": i / 10, "density": 1 - i / 10, "kept": 100 - 10 * i, "test_loss": 0.1 + i,
             "test_acc": c / N_TEST, "train_loss": float("nan"), "train_acc": float("nan")}
            for i, c in enumerate(correct_by_step)]
    actual = thresholds_from_curve(rows, [0, 0.005, 0.01, 0.02])
    actual.update(task="tiny", variant=name)
    save_rows_csv(rows, tmp_path / f"{name}_curve.csv", CURVE_COLUMNS)
    save_json(actual, tmp_path / f"{name}_actual.json")
    return tmp_path / f"{name}_curve.csv", load_json(tmp_path / f"{name}_actual.json")


def _regime_point(name, multiplier, shrinkage, test_acc, actual, exact=False):
    metrics = {"variant": name, "train": {"l1": 1e-3 * multiplier}, "l1_shrinkage": shrinkage,
               "small_weight_share": 0.1 * multiplier, "small_weight_share_drift_last_tenth": 0.001,
               "test_acc": test_acc}
    prediction = {"epsilon": 0.01, "zero_fraction": 0.05, "D": 100, "predicted_sparsity": 0.61,
                  "lower_sparsity": 0.6, "upper_sparsity": 0.62, "slq": {"converged": True}}
    if exact:
        prediction["exact"] = {"same_zero_mass": {"predicted_sparsity": 0.55, "lower_sparsity": 0.54,
                                                  "upper_sparsity": 0.56}}
    return {"task": "tiny", "multiplier": multiplier, "metrics": metrics, "prediction": prediction, "actual": actual}


def _brute_force_thresholds(curve_csv):
    """Every threshold straight from the saved sweep, by scanning all its points (no library code)."""
    df = pd.read_csv(curve_csv)
    correct = [round(a * N_TEST) for a in df.test_acc]  # compare sample counts, free of float round-off
    unpruned = correct[0]
    above = [s for s, c in zip(df.sparsity, correct) if s > 0 and c > unpruned]
    out = {f"actual_tol_{t:g}": max(s for s, c in zip(df.sparsity, correct) if c >= unpruned - t * N_TEST)
           for t in (0, 0.005, 0.01, 0.02)}
    out["actual_sparsity"] = max(above) if above else out["actual_tol_0"]
    return out


def test_regime_map_thresholds_equal_a_brute_force_scan_of_the_saved_sweep(tmp_path):
    from prunelimit.tables import regime_map_table

    # accuracy dips below the unpruned 300/360 and recovers above it (the official scan must not stop
    # at the dip); a second model that no pruned version beats (official criterion undefined)
    beaten_curve, beaten = _regime_sweep(tmp_path, "l1x1", [300, 301, 299, 302, 300, 299, 297, 296, 250, 36])
    unbeaten_curve, unbeaten = _regime_sweep(tmp_path, "l1x0", [320, 320, 319, 317, 316, 313, 320, 200, 100, 36])
    table = regime_map_table([_regime_point("l1x0", 0.0, 0.0, 320 / N_TEST, unbeaten),
                              _regime_point("l1x1", 1.0, 0.04, 300 / N_TEST, beaten, exact=True)])
    write_table(table, tmp_path / "r.csv", tmp_path / "r.md", tmp_path / "r.tex")
    saved = pd.read_csv(tmp_path / "r.csv").set_index("l1_multiplier")
    for multiplier, curve_csv in ((0.0, unbeaten_curve), (1.0, beaten_curve)):
        for column, value in _brute_force_thresholds(curve_csv).items():
            assert saved.loc[multiplier, column] == pytest.approx(value), (multiplier, column)
    # the hand-checked values behind the scan: 0.3 is the last point above 300; 0.6 the last within 3.6
    assert saved.loc[1.0, "actual_sparsity"] == pytest.approx(0.3)
    assert saved.loc[1.0, "actual_tol_0.01"] == pytest.approx(0.6)
    assert saved.loc[0.0, "actual_criterion"].startswith("tolerance 0")
    assert saved.loc[0.0, "actual_sparsity"] == pytest.approx(0.6)  # 0.6 equals the unpruned 320


def test_regime_map_takes_the_exact_spectrum_where_there_is_one_and_the_dense_accuracy():
    from prunelimit.tables import regime_map_table

    actual = {"actual_sparsity": 0.5, "actual_criterion": "official", "tolerance_sparsity": {"0": 0.5}}
    table = regime_map_table([_regime_point("l1x0", 0.0, 0.0, 0.9, actual),
                              _regime_point("l1x1", 1.0, 0.04, 0.8, actual, exact=True)]).set_index("l1_multiplier")
    assert list(table["spectrum"]) == ["SLQ", "exact"]
    assert table.loc[1.0, "predicted_sparsity"] == 0.55 and table.loc[1.0, "slq_predicted_sparsity"] == 0.61
    assert (table.loc[1.0, "lower_sparsity"], table.loc[1.0, "upper_sparsity"]) == (0.54, 0.56)
    assert table.loc[0.0, "predicted_sparsity"] == 0.61
    assert list(table["dense_test_acc"]) == [0.9, 0.9] and list(table["test_acc"]) == [0.9, 0.8]
    assert table.loc[1.0, "difference"] == pytest.approx(0.05)


def test_regime_map_needs_the_dense_point_and_matching_sweeps():
    from prunelimit.errors import PrunelimitError
    from prunelimit.tables import regime_map_table

    actual = {"actual_sparsity": 0.5, "tolerance_sparsity": {"0": 0.5}}
    with pytest.raises(PrunelimitError, match="no multiplier-0"):
        regime_map_table([_regime_point("l1x1", 1.0, 0.04, 0.8, actual)])
    with pytest.raises(PrunelimitError, match="actual.json is of tiny/l1x0"):
        regime_map_table([_regime_point("l1x0", 0.0, 0.0, 0.9, {**actual, "task": "tiny", "variant": "l1x0"}),
                          _regime_point("l1x1", 1.0, 0.04, 0.8, {**actual, "task": "tiny", "variant": "l1x0"})])
