"""Tables: the writers, the total-variation distance, the regime map, and every table rule's side (its
<name>_from_files entry run by scripts/table.py on fixture files written as the rules' inputs)."""

import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from prunelimit.claim import theory_vs_actual_table
from prunelimit.spectrum import SLQResult
from prunelimit.tables import (
    bounds_gap_table,
    lomp_rows_from_sweep,
    lomp_vs_baselines_table,
    lomp_vs_sota_table,
    oneshot_rows,
    regime_map_table,
    slq_table,
    total_variation,
    training_table,
    tv_distance_table,
    write_table,
)
from test_claim import run
from test_figures import curve, per_task, prediction, write


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

    actual = {"actual_sparsity": 0.5, "tolerance_sparsity": {"0": 0.5}}
    with pytest.raises(PrunelimitError, match="no multiplier-0"):
        regime_map_table([_regime_point("l1x1", 1.0, 0.04, 0.8, actual)])
    with pytest.raises(PrunelimitError, match="actual.json is of tiny/l1x0"):
        regime_map_table([_regime_point("l1x0", 0.0, 0.0, 0.9, {**actual, "task": "tiny", "variant": "l1x0"}),
                          _regime_point("l1x1", 1.0, 0.04, 0.8, {**actual, "task": "tiny", "variant": "l1x0"})])


# ---------------------------------------------------------------------------------------------
# The rules' side: <name>_from_files reads the rule's files and builds the table; scripts/table.py writes it
# ---------------------------------------------------------------------------------------------

TABLE_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "table.py"
# every table of workflow/rules/report.smk's TABLES (tests/test_report.py checks the rules name these entries)
TABLE_NAMES = ["training", "tv_distance", "lomp_vs_baselines", "bounds_gap", "theory_vs_actual", "slq",
               "regime_map", "lomp_vs_sota"]
TABLE_TASKS = ["a", "b"]


def _metrics(task: str, variant: str, i: int) -> dict:
    """A train rule's metrics.json (the keys the training table reads)."""
    return {"task": task, "variant": variant, "model": "fc5", "dataset": "digits", "n_params": 1000 + i,
            "n_prunable": 900 + i, "epochs_run": 10, "train": {"batch_size": 64, "lr": 0.1, "schedule": "cosine",
                                                                "warmup_epochs": 0, "momentum": 0.9,
                                                                "l1": 1e-4 * i, "weight_decay": 0.0},
            "l1_shrinkage": 0.01 * i, "small_weight_share": 0.1 * i, "small_weight_share_drift_last_tenth": None,
            "train_acc": 0.99 - 0.01 * i, "test_acc": 0.9 - 0.01 * i, "loss_std": 0.02, "wall_time_s": 3.0 + i}


def table_rule(name: str, d: Path) -> tuple[dict, dict, pd.DataFrame, int]:
    """A table rule's input files written from fixtures, its params, the table its builder makes from the same
    data in memory (what the old per-table scripts wrote), and how many lines of its own the entry logs."""
    tasks, rng = TABLE_TASKS, np.random.default_rng(5)
    if name == "training":
        metrics = [_metrics(t, v, i) for i, (t, v) in enumerate((t, v) for t in tasks for v in ("dense", "l1"))]
        inputs = {"metrics": [write(d / f"m{k}.json", m) for k, m in enumerate(metrics)]}
        return inputs, {}, training_table(metrics), 0
    if name == "tv_distance":
        seeds, runs, reference, reseeded = [1, 2], {}, [], []
        for task in tasks:  # task-major, seed-minor, as the rule lists them
            runs[task] = {}
            for seed in [0, *seeds]:
                w = rng.laplace(scale=0.01 * (seed + 1), size=(20, 30)).astype(np.float32)
                path = write(d / f"{task}_{seed}.pt", {"fc.weight": w, "fc.bias": np.zeros(20, np.float32)})
                (reseeded if seed else reference).append(path)
                runs[task][seed] = w.ravel()
        params = {"tasks": tasks, "seeds": seeds, "bins": 20, "base_seed": 0}
        return {"reference": reference, "reseeded": reseeded}, params, tv_distance_table(runs, bins=20), 0
    if name == "lomp_vs_baselines":
        sparsities, lomp = [0.5, 0.9], {"tasks": ["a", "a", "b"], "seeds": [0, 1, 0]}
        imp = [{"method": "imp", "task": t, "sparsity": s, "seed": seed, "test_acc": 0.8 - s / 4 + 0.01 * seed,
                "training": "10 every round", "rounds": 3} for t in tasks for s in sparsities for seed in (0, 1)]
        curves = [curve(k).assign(kept=lambda df: (1000 * df.density).round().astype(int)) for k in range(3)]
        dense = [{"task": t, "test_acc": 0.95} for t in tasks]
        inputs = {"results": [write(d / f"imp_{k}.json", r) for k, r in enumerate(imp)],
                  "lomp_curves": [write(d / f"curve_{k}.csv", c) for k, c in enumerate(curves)],
                  "dense": [write(d / f"{t}_dense.json", m) for t, m in zip(tasks, dense)]}
        params = {"methods": ["lomp", "imp"], "lomp": lomp, "lomp_epochs": {"a": 10, "b": 20}, "sparsities": sparsities}
        lomp_rows = [row for t, seed, c in zip(lomp["tasks"], lomp["seeds"], curves)
                     for row in lomp_rows_from_sweep(t, c, sparsities, seed, params["lomp_epochs"][t])]
        return inputs, params, lomp_vs_baselines_table(imp + lomp_rows, {"a": 0.95, "b": 0.95},
                                                       methods=["lomp", "imp"]), 0
    if name == "bounds_gap":
        inputs = {"prediction": per_task(d, "prediction.json", lambda i: prediction(i, exact=i == 0), tasks)}
        return inputs, {"tasks": tasks}, bounds_gap_table({"a": prediction(0, exact=True), "b": prediction(1)}), 0
    if name == "theory_vs_actual":
        runs = [run("a", 0, 0.90, 0.92, 0.80), run("a", 1, 0.91, 0.95, 0.85), run("b", 0, 0.7, 0.6, 0.5)]
        inputs = {key: [write(d / f"{r['task']}_{r['seed']}_{key}.json", r[key]) for r in runs]
                  for key in ("prediction", "actual", "metrics")}
        params = {"tasks": [r["task"] for r in runs], "seeds": [r["seed"] for r in runs]}
        return inputs, params, theory_vs_actual_table(runs), 2  # a line per task
    if name == "slq":
        settings = {"params": "prunable", "dim": 50, "n_samples": 100, "n_runs": 2, "n_iter": 4, "products": 8,
                    "elapsed_s": 0.5}
        results, paths = {}, []
        for i, task in enumerate(tasks):
            path = d / f"{task}_slq.npz"
            SLQResult(rng.normal(size=(2, 4)) ** 2 + i, np.full((2, 4), 0.25), np.ones((2, 4)), np.ones((2, 3)), 50,
                      settings).save(path, n_bins=20, sigma2=1e-3)
            paths.append(str(path))
            results[task] = SLQResult.load(path)
        params = {"tasks": tasks, "n_bins": {"a": 300, "b": 400}, "sigma2": {"a": 1e-4, "b": 1e-3}}
        runs = {t: {"settings": r.settings, "steps": r.steps, "n_bins": params["n_bins"][t],
                    "sigma2": params["sigma2"][t], "lambda_min": r.quadrature().lambda_min,
                    "lambda_max": r.quadrature().lambda_max} for t, r in results.items()}
        return {"slq": paths}, params, slq_table(runs), 0
    if name == "regime_map":
        actual = {"actual_sparsity": 0.5, "actual_criterion": "official", "tolerance_sparsity": {"0": 0.5}}
        points = [_regime_point("l1x0", 0.0, 0.0, 0.9, actual), _regime_point("l1x1", 1.0, 0.04, 0.8, actual, True)]
        inputs = {key: [write(d / f"{p['metrics']['variant']}_{key}.json", p[key]) for p in points]
                  for key in ("metrics", "prediction", "actual")}
        params = {"tasks": ["tiny", "tiny"], "multipliers": [0.0, 1.0]}
        return inputs, params, regime_map_table(points), 2  # a line per point
    if name == "lomp_vs_sota":
        runs = [{"task": task, "start": start, "seed": seed, "unpruned_test_acc": 0.95 - 0.01 * seed,
                 "rows": [{"task": task, "start": start, "seed": seed, "method": m, "sparsity": s,
                           "test_acc": 0.9 - s / 2 + 0.01 * seed, "wall_time_s": 0.1 * (seed + 1),
                           "gradient_time_s": 0.5} for m in ("mp", "wf") for s in (0.9, 0.95)]}
                for task in tasks for start in ("dense", "l1") for seed in (0, 1)]
        params = {"methods": ["mp", "wf"], "starts": ["dense", "l1"],
                  "model_dataset": {"a": ("mlpnet", "mnist"), "b": ("fc5", "digits")}}  # a: the published columns
        rows, unpruned = oneshot_rows(runs)
        table = lomp_vs_sota_table(rows, unpruned, params["methods"], params["starts"], tasks=params["model_dataset"])
        return {"results": [write(d / f"run_{k}.json", r) for k, r in enumerate(runs)]}, params, table, 1
    raise KeyError(name)


@pytest.mark.parametrize("name", TABLE_NAMES)
def test_table_script_builds_each_table_from_its_rule_files_and_writes_it(tmp_path, name):
    """scripts/table.py as Snakemake runs it (a ``snakemake`` object in its globals; input, params and output
    read by attribute) calls <name>_from_files, which builds from the rule's files the table its builder makes
    from the same data; the four files are those write_table writes of that table (what the old per-table
    scripts wrote), and the log names the entry, has the entry's own lines and ends with the table's shape."""
    files = tmp_path / "files"
    files.mkdir()
    inputs, params, expected, own_lines = table_rule(name, files)
    entry, title = f"prunelimit.table_inputs:{name}_from_files", f"{name} (paper: a table)"
    out, log = {ext: tmp_path / f"{name}.{ext}" for ext in ("csv", "md", "tex", "html")}, tmp_path / f"{name}.log"
    rule = SimpleNamespace(input=SimpleNamespace(**inputs), params=SimpleNamespace(**params, entry=entry, title=title),
                           output=SimpleNamespace(**{ext: str(p) for ext, p in out.items()}), log=[str(log)])
    table = runpy.run_path(str(TABLE_SCRIPT), init_globals={"snakemake": rule})["table"]
    pd.testing.assert_frame_equal(table, expected)
    (tmp_path / "expected").mkdir()
    want = {ext: tmp_path / "expected" / f"{name}.{ext}" for ext in out}
    write_table(expected, want["csv"], want["md"], want["tex"], html=want["html"], title=title)
    for ext, path in out.items():
        assert path.read_text() == want[ext].read_text(), (name, ext)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left over
    lines = log.read_text().splitlines()
    assert lines[1] == f"built by {entry}"
    assert len(lines) == 3 + own_lines, lines
    assert lines[-1] == f"{len(expected)} rows × {expected.shape[1]} columns: " + ", ".join(expected.columns)
