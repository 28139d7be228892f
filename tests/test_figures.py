"""Figures: every plot_* function on small synthetic stage outputs, and every draw_* function (a figure
rule's side) run by scripts/figure.py on those outputs written as the rules' files.

Each figure function returns the numbers it drew, read back from its artists; these tests check
them against the inputs (so a figure shows its data), and that the files are real PDF/PNG
written atomically.
"""

import json
import math
import re
import runpy
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from prunelimit.figures import summary_lines
from prunelimit.figures.hessian import plot_hessian_row_l1, plot_hessian_spectra, plot_hessian_spectrum
from prunelimit.figures.iterative_pruning import plot_iterative_threshold, plot_l2_vs_rare_gems
from prunelimit.figures.pruning_curves import plot_pruning_curves
from prunelimit.figures.regime_map import ZERO_SHRINKAGE_GAP, plot_regime_map
from prunelimit.figures.style import TASK_COLUMNS, task_panels
from prunelimit.figures.theory_vs_actual import plot_theory_vs_actual
from prunelimit.figures.weight_magnitude import _collapsed_scales, plot_magnitude_scaling, plot_weight_distribution
from prunelimit.io import PrunelimitError, load_csv, load_json, load_npz
from prunelimit.sparsity import MagnitudeRanking
from prunelimit.spectrum import SLQResult, from_eigenvalues, load_exact, save_exact
from prunelimit.tables import by_task, oneshot_rows

TASKS = ["task_a", "task_b", "task_c", "task_d", "task_e"]  # five: the panel grid wraps to a second row


def prediction(i: int, exact: bool = False) -> dict:
    """A prediction.json-like dict whose numbers differ per task."""
    r_grid = np.geomspace(1e-3, 10, 50)
    s_grid = np.linspace(0, 1, 21)
    gw = 1 / (1 + (r_grid / (0.5 + 0.1 * i)) ** 2)
    pred = {"D": 1000 + i, "epsilon": 0.01 * (i + 1), "zero_fraction": 0.05 * i, "eta": 0.05, "a_eta": 6.4,
            "predicted_sparsity": 0.6 + 0.05 * i, "lower_sparsity": 0.5 + 0.05 * i, "upper_sparsity": 0.7 + 0.05 * i,
            "gap": 0.2, "R_at_prediction": 0.3 + 0.1 * i,
            "official_smoothed": {"predicted_sparsity": 0.55 + 0.05 * i},
            "slq": {"steps": [256, 512], "spread": 0.004, "converged": False},
            "curves": {"sparsity_grid": s_grid.tolist(), "R_of_sparsity": (3 * s_grid ** 2).tolist(),
                       "R_grid": r_grid.tolist(), "gw2_over_D": gw.tolist(),
                       "gw2_over_D_official_smoothed": (0.9 * gw).tolist()}}
    if exact:
        pred["exact"] = {"same_zero_mass": {"predicted_sparsity": 0.58, "lower_sparsity": 0.49,
                                            "upper_sparsity": 0.68, "gap": 0.19},
                         "slq_minus_exact": pred["predicted_sparsity"] - 0.58, "gw2_over_D": (0.95 * gw).tolist()}
    return pred


def actual(i: int) -> dict:
    return {"actual_sparsity": 0.4 + 0.1 * i, "dense_test_acc": 0.9, "actual_criterion": "official",
            "official_sparsity": 0.4 + 0.1 * i,
            "tolerance_sparsity": {"0": 0.38 + 0.1 * i, "0.005": 0.39 + 0.1 * i, "0.01": 0.4 + 0.1 * i,
                                   "0.02": 0.45 + 0.1 * i}}


def curve(i: int) -> pd.DataFrame:
    s = np.linspace(0, 1, 11)
    return pd.DataFrame({"sparsity": s, "density": 1 - s, "test_loss": 0.2 + (i + 1) * s ** 4,
                         "test_acc": 0.9 - 0.8 * s ** 6, "train_loss": 0.1 + s, "train_acc": 1 - s})


def iterative(l2_shift: float = 0.05) -> pd.DataFrame:
    rows = []
    for arm, shift in (("no_l2", 0.0), ("l2", l2_shift)):
        for r, (s, t) in enumerate([(0.0, 0.5), (0.5, 0.7), (0.7, 0.8)]):
            rows.append({"round": r, "arm": arm, "sparsity": s + (shift if r else 0), "theoretical_sparsity": t + shift,
                         "lower_sparsity": t + shift - 0.1, "upper_sparsity": t + shift + 0.1,
                         "test_acc": 0.9 - 0.1 * r})
    return pd.DataFrame(rows)


def scaling(i: int, with_actual: bool = True) -> dict:
    pred = prediction(i)
    c = pred["curves"]
    rows = []
    for k, scale in enumerate([1.0, 2.0, 3.0]):
        row = {"scale": scale, "predicted_sparsity": 0.6 - 0.1 * k, "lower_sparsity": 0.5 - 0.1 * k,
               "upper_sparsity": 0.7 - 0.1 * k, "R_at_prediction": 0.5 * scale}
        if with_actual:
            row["actual_sparsity"] = 0.5 - 0.12 * k
        rows.append(row)
    return {"scales": rows, "R_of_sparsity": c["R_of_sparsity"], "sparsity_grid": c["sparsity_grid"],
            "R_grid": c["R_grid"], "gw2_over_D": c["gw2_over_D"]}


def check_files(paths):
    for path in paths:
        data = path.read_bytes()
        assert data[:4] == (b"%PDF" if path.suffix == ".pdf" else b"\x89PNG"), path
        assert len(data) > 5000, path
    assert not list(paths[0].parent.glob(".*.tmp"))  # written atomically, nothing left over


@pytest.fixture
def out(tmp_path):
    return lambda name: [tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"]


def test_pruning_curves_draw_the_predicted_bounds_and_actual_thresholds(out):
    paths = out("pruning_curves")
    preds = {t: prediction(i) for i, t in enumerate(TASKS)}
    acts = {t: actual(i) for i, t in enumerate(TASKS)}
    drawn = plot_pruning_curves({t: curve(i) for i, t in enumerate(TASKS)}, preds, acts, paths)
    check_files(paths)
    assert list(drawn) == TASKS
    for i, task in enumerate(TASKS):
        for key in ("predicted_sparsity", "lower_sparsity", "upper_sparsity"):
            assert drawn[task][key] == pytest.approx(preds[task][key])
        assert drawn[task]["actual_sparsity"] == pytest.approx(acts[task]["actual_sparsity"])
        c = curve(i)
        # the loss is normalised by the unpruned (sparsity 0) test loss
        assert drawn[task]["unpruned_test_loss"] == pytest.approx(c.test_loss[0])
        assert drawn[task]["max_normalised_loss"] == pytest.approx(c.test_loss.max() / c.test_loss[0])


def test_pruning_curves_need_the_unpruned_point(out):
    with pytest.raises(PrunelimitError, match="sparsity 0"):
        plot_pruning_curves({"t": curve(0).iloc[1:]}, {"t": prediction(0)}, {"t": actual(0)}, out("x"))


def test_theory_vs_actual_marks_the_crossing_and_the_actual_threshold(out):
    paths = out("theory_vs_actual")
    preds = {"a": prediction(0, exact=True), "b": prediction(1)}
    drawn = plot_theory_vs_actual(preds, {"a": actual(0), "b": actual(1)}, paths)
    check_files(paths)
    for i, task in enumerate(["a", "b"]):
        assert drawn[task]["predicted_sparsity"] == pytest.approx(preds[task]["predicted_sparsity"])
        assert drawn[task]["R_at_prediction"] == pytest.approx(preds[task]["R_at_prediction"])
        assert drawn[task]["actual_sparsity"] == pytest.approx(actual(i)["actual_sparsity"])


def test_iterative_threshold_draws_both_arms(out):
    paths = out("iterative_threshold")
    df = iterative()
    drawn = plot_iterative_threshold({"a": df}, paths, l2=5e-4)
    check_files(paths)
    for arm in ("no_l2", "l2"):
        last = df[df.arm == arm].iloc[-1]
        assert drawn["a"][arm]["final_theoretical_sparsity"] == pytest.approx(last.theoretical_sparsity)
        assert drawn["a"][arm]["final_sparsity"] == pytest.approx(last.sparsity)
        assert drawn["a"][arm]["rounds"] == 3


def test_l2_vs_rare_gems_averages_rare_gems_over_seeds(out):
    paths = out("l2_vs_rare_gems")
    gems = [{"task": "a", "sparsity": s, "seed": seed, "test_acc": acc}
            for s, accs in ((0.5, (0.8, 0.9)), (0.9, (0.5, 0.7))) for seed, acc in enumerate(accs)]
    drawn = plot_l2_vs_rare_gems({"a": iterative(), "b": iterative(0.1)}, {"a": curve(0)}, {"a": gems}, paths,
                                 l2=5e-4)
    check_files(paths)
    assert drawn["a"]["rare_gems"] == pytest.approx({0.5: 0.85, 0.9: 0.6})
    assert "rare_gems" not in drawn["b"]  # no Rare Gems run for task b: said in the panel, nothing drawn
    assert drawn["b"]["final_threshold_l2"] == pytest.approx(iterative(0.1).theoretical_sparsity.iloc[-1])


def test_hessian_row_l1_counts_zero_rows(out):
    paths = out("hessian_row_l1")
    norms = np.array([0.0, 1e-9, 3e-3, 0.5, 2.0, 1e-8, 10.0, 0.02])
    rows = {"a": {"sparsities": np.arange(8) / 8, "l1_norms": norms, "zero_threshold": np.float64(1e-7)},
            "b": {"sparsities": np.arange(4) / 4, "l1_norms": np.array([1.0, 2.0, 3.0, 4.0]),
                  "zero_threshold": np.float64(1e-7)}}
    drawn = plot_hessian_row_l1(rows, paths)
    check_files(paths)
    assert drawn["a"]["zero_fraction"] == pytest.approx(3 / 8) and drawn["a"]["n_rows"] == 8
    assert drawn["b"]["zero_fraction"] == 0.0
    assert drawn["a"]["zero_threshold"] == pytest.approx(1e-7)


def test_magnitude_scaling_draws_prediction_and_actual_per_scale(out):
    paths = out("magnitude_scaling")
    sc = {"a": scaling(0), "b": scaling(1, with_actual=False)}
    drawn = plot_magnitude_scaling(sc, paths)
    check_files(paths)
    for row in sc["a"]["scales"]:
        assert drawn["a"][row["scale"]] == pytest.approx((row["predicted_sparsity"], row["actual_sparsity"]))
    assert all(math.isnan(actual_) for _, actual_ in drawn["b"].values())  # no actual: nothing invented


def test_scaled_models_that_lost_their_accuracy_are_flagged_not_hidden(out):
    sc = scaling(0)
    for row, acc in zip(sc["scales"], (0.95, 0.94, 0.10)):  # ×3 collapsed before any pruning
        row["dense_test_acc"] = acc
    assert _collapsed_scales(sc["scales"]) == {3.0: 0.10}
    drawn = plot_magnitude_scaling({"a": sc}, out("magnitude_scaling"))
    assert drawn["a"][3.0] == pytest.approx((0.4, 0.26))  # still drawn (greyed), with its number


def test_weight_distribution_cuts_at_the_magnitude_pruning_threshold(out):
    paths = out("weight_distribution")
    rng = np.random.default_rng(0)
    w_l1 = rng.laplace(scale=0.01, size=5000)
    w_l1[:10] = 0.0  # exact zeros cannot be drawn on a log axis: counted instead
    weights = {"a": {"l1": w_l1, "dense": rng.normal(scale=0.05, size=5000)}}
    pred, act = prediction(0), actual(0)
    drawn = plot_weight_distribution(weights, {"a": pred}, {"a": act}, {"a": scaling(0)}, paths)
    check_files(paths)
    # the cut is the |w| of the largest weight removed at that sparsity, as the one ranking has it
    ranking = MagnitudeRanking.of(w_l1)
    for key, s in (("cut_predicted_log10", pred["predicted_sparsity"]), ("cut_actual_log10", act["actual_sparsity"])):
        expected = ranking.threshold_magnitude(s)
        assert drawn["a"][key] == pytest.approx(math.log10(expected))
    assert drawn["a"]["zero_weights"] == {"l1": 10, "dense": 0}
    assert drawn["a"]["scaled_predicted"] == pytest.approx([r["predicted_sparsity"] for r in scaling(0)["scales"]])
    assert drawn["a"]["scaled_actual"] == pytest.approx([r["actual_sparsity"] for r in scaling(0)["scales"]])


def test_hessian_spectra_panels_and_the_single_plot(out, tmp_path):
    paths = out("hessian_spectrum")
    rng = np.random.default_rng(1)
    eig_a, eig_b = rng.normal(size=200) ** 2, np.concatenate([np.zeros(50), rng.uniform(-0.1, 3.0, 100)])
    spectra = {"a": from_eigenvalues(eig_a), "b": from_eigenvalues(eig_b)}
    drawn = plot_hessian_spectra(spectra, paths, exact={"b": eig_b}, n_bins={"a": 300, "b": 400}, sigma2=1e-4)
    check_files(paths)
    assert drawn["a"]["lambda_max"] == pytest.approx(eig_a.max()) and drawn["a"]["dim"] == 200
    assert drawn["b"]["lambda_min"] == pytest.approx(eig_b.min()) and drawn["b"]["dim"] == 150
    single = tmp_path / "single.png"
    plot_hessian_spectrum(spectra["a"], single, title="a", n_bins=200)
    check_files([single])


def test_panel_grid_wraps_and_hides_empty_cells():
    fig, panels = task_panels(TASKS, rows_per_task=2, share_x=True)
    assert list(panels) == TASKS and all(len(axes) == 2 for axes in panels.values())
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(fig.axes) == 2 * 2 * TASK_COLUMNS and len(visible) == 2 * len(TASKS)
    assert panels["task_e"][0].get_title() == "task_e"
    plt.close(fig)
    with pytest.raises(PrunelimitError, match="no task"):
        task_panels([])


def test_by_task_pairs_tasks_with_files():
    assert by_task(["a", "b"], ["1", "22"], len) == {"a": 1, "b": 2}
    with pytest.raises(PrunelimitError, match="2 input files for 1 tasks"):
        by_task(["a"], ["1", "2"], len)


def regime_table() -> pd.DataFrame:
    """A regime-map table (tables.regime_map_table's columns the figure reads) for two tasks."""
    rows = []
    for task, shift in (("task_a", 0.0), ("task_b", 0.05)):
        for k, m in enumerate([0.0, 0.1, 1.0, 3.0]):
            rows.append({"task": task, "l1_multiplier": m, "l1_shrinkage": 0.04 * m, "small_weight_share": 0.2 * k,
                         "spectrum": "SLQ", "predicted_sparsity": 0.5 + 0.1 * k + shift,
                         "lower_sparsity": 0.48 + 0.1 * k + shift, "upper_sparsity": 0.52 + 0.1 * k + shift,
                         "actual_sparsity": 0.45 + 0.1 * k, "actual_tol_0": 0.44 + 0.1 * k,
                         "actual_tol_0.02": 0.47 + 0.1 * k, "actual_tol_0.01": 0.46 + 0.1 * k})
    return pd.DataFrame(rows)


def test_regime_map_draws_the_table_with_the_dense_point_at_the_left_edge(out):
    paths = out("regime_map")
    table = regime_table()
    drawn = plot_regime_map(table, paths)
    check_files(paths)
    assert list(drawn) == ["task_a", "task_b"]
    for task, series in drawn.items():
        df = table[table.task == task].sort_values("l1_shrinkage")
        assert series["predicted_sparsity"] == pytest.approx(df.predicted_sparsity.tolist())
        assert series["actual_sparsity"] == pytest.approx(df.actual_sparsity.tolist())
        assert series["small_weight_share"] == pytest.approx(df.small_weight_share.tolist())
        # λ = 0 sits left of every positive shrinkage, by the documented factor; the rest at their shrinkage
        assert series["x"][0] == pytest.approx(0.004 / ZERO_SHRINKAGE_GAP) == series["zero_edge"]
        assert series["x"][1:] == pytest.approx(df.l1_shrinkage.tolist()[1:])


def test_regime_map_needs_a_positive_shrinkage_and_tolerance_columns(out):
    table = regime_table()
    with pytest.raises(PrunelimitError, match="positive L1 shrinkage"):
        plot_regime_map(table.assign(l1_shrinkage=0.0), out("r"))
    with pytest.raises(PrunelimitError, match="actual_tol_"):
        plot_regime_map(table.drop(columns=["actual_tol_0", "actual_tol_0.01", "actual_tol_0.02"]), out("r"))


def test_lomp_vs_sota_draws_the_seed_means_the_unpruned_models_and_the_prediction(tmp_path):
    from prunelimit.figures.lomp_vs_sota import plot_lomp_vs_sota

    rows = [{"task": task, "start": start, "seed": seed, "method": m, "sparsity": s,
             "test_acc": 0.9 - s / 2 + 0.01 * seed + (0.05 if start == "l1" else 0.0)}
            for task in ("a", "b") for start in ("dense", "l1") for seed in (0, 1) for m in ("mp", "cbs")
            for s in (0.5, 0.9)]
    paths = [tmp_path / "f.png", tmp_path / "f.pdf"]
    drawn = plot_lomp_vs_sota(pd.DataFrame(rows), {"a": 0.8}, {"a": {"dense": [0.95, 0.97], "l1": [0.93]}}, paths)
    assert all(p.stat().st_size > 0 for p in paths)
    np.testing.assert_allclose(drawn["a"]["LOMP (MP, L1)"], [100 * (0.9 - 0.25 + 0.005 + 0.05),
                                                             100 * (0.9 - 0.45 + 0.005 + 0.05)])
    np.testing.assert_allclose(drawn["b"]["CBS (dense)"], [100 * (0.9 - 0.25 + 0.005), 100 * (0.9 - 0.45 + 0.005)])
    assert drawn["a"]["predicted"] == 0.8 and "predicted" not in drawn["b"]
    assert drawn["a"]["dense model, unpruned"] == pytest.approx(96.0) and drawn["a"]["L1 model, unpruned"] == 93.0


# ---------------------------------------------------------------------------------------------
# The rules' side: draw_<name> reads the rule's files and calls plot_<name>; scripts/figure.py runs it
# ---------------------------------------------------------------------------------------------

FIGURE_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "figure.py"
# figure → the module of prunelimit.figures holding its plot_ and draw_ functions (workflow/rules/report.smk's
# FIGURES names the same entries; tests/test_report.py checks those)
FIGURE_MODULES = {"pruning_curves": "pruning_curves", "theory_vs_actual": "theory_vs_actual",
                  "iterative_threshold": "iterative_pruning", "l2_vs_rare_gems": "iterative_pruning",
                  "hessian_row_l1": "hessian", "hessian_spectrum": "hessian", "magnitude_scaling": "weight_magnitude",
                  "weight_distribution": "weight_magnitude", "regime_map": "regime_map",
                  "lomp_vs_sota": "lomp_vs_sota"}
RULE_TASKS = ["a", "b"]


def write(path: Path, data) -> str:
    """``data`` written as a stage would (.json, .csv, .npz, .pt by suffix); the path, as a rule input."""
    if path.suffix == ".json":
        path.write_text(json.dumps(data))
    elif path.suffix == ".csv":
        data.to_csv(path, index=False)
    elif path.suffix == ".npz":
        np.savez(path, **data)
    else:
        import torch

        torch.save({name: torch.as_tensor(array) for name, array in data.items()}, path)
    return str(path)


def per_task(d: Path, name: str, make, tasks=RULE_TASKS) -> list[str]:
    return [write(d / f"{task}_{name}", make(i)) for i, task in enumerate(tasks)]


def figure_rule(name: str, d: Path) -> tuple[dict, dict, object]:
    """A figure rule's input files written from the fixtures above, its params, and the plot_ call drawing the
    same data read back from those files (what the old per-figure scripts did): (input, params, plot(paths))."""
    tasks = RULE_TASKS
    rng = np.random.default_rng(3)
    if name == "pruning_curves":
        inputs = {"curve": per_task(d, "curve.csv", curve), "prediction": per_task(d, "prediction.json", prediction),
                  "actual": per_task(d, "actual.json", actual)}
        # claim test: task a has a second seed (7) beside its own (0), task b none
        seed7 = [write(d / "a_seed7_curve.csv", curve(3)), write(d / "a_seed7_prediction.json", prediction(3)),
                 write(d / "a_seed7_actual.json", actual(3))]
        claim = {"tasks": ["a", "a", "b"], "seeds": [0, 7, 0]}
        pairs = [(inputs[k][0], seed7[j], inputs[k][1]) for j, k in enumerate(("curve", "prediction", "actual"))]
        inputs.update(seed_curve=list(pairs[0]), seed_prediction=list(pairs[1]), seed_actual=list(pairs[2]))
        params = {"tasks": tasks, "claim": claim, "own_seed": {"a": 0, "b": 0}}
        others = {"a": [(load_csv(seed7[0]), load_json(seed7[1]), load_json(seed7[2]))]}
        return inputs, params, lambda paths: plot_pruning_curves(
            by_task(tasks, inputs["curve"], load_csv), by_task(tasks, inputs["prediction"], load_json),
            by_task(tasks, inputs["actual"], load_json), paths, other_seeds=others)
    if name == "theory_vs_actual":
        inputs = {"prediction": per_task(d, "prediction.json", lambda i: prediction(i, exact=i == 0)),
                  "actual": per_task(d, "actual.json", actual)}
        return inputs, {"tasks": tasks}, lambda paths: plot_theory_vs_actual(
            by_task(tasks, inputs["prediction"], load_json), by_task(tasks, inputs["actual"], load_json), paths)
    if name in ("iterative_threshold", "l2_vs_rare_gems"):
        inputs = {"iterative": per_task(d, "iterative.csv", lambda i: iterative(0.05 * (i + 1)))}
        params = {"tasks": tasks, "l2": 5e-4}
        if name == "iterative_threshold":
            return inputs, params, lambda paths: plot_iterative_threshold(
                by_task(tasks, inputs["iterative"], load_csv), paths, l2=5e-4)
        gems = [{"task": "a", "sparsity": s, "seed": seed, "test_acc": 0.9 - s / 3 + 0.01 * seed}
                for s in (0.5, 0.9) for seed in (0, 1)]
        inputs.update(curve=per_task(d, "curve.csv", curve),
                      rare_gems=[write(d / f"gems_{k}.json", g) for k, g in enumerate(gems)])
        return inputs, params, lambda paths: plot_l2_vs_rare_gems(
            by_task(tasks, inputs["iterative"], load_csv), by_task(tasks, inputs["curve"], load_csv),
            {"a": gems}, paths, l2=5e-4)
    if name == "hessian_row_l1":
        inputs = {"rows": per_task(d, "rows.npz", lambda i: {
            "sparsities": np.arange(8) / 8, "l1_norms": np.abs(rng.normal(size=8)) * 10.0 ** -np.arange(8 + i),
            "zero_threshold": np.float64(1e-7)} if i == 0 else {
            "sparsities": np.arange(4) / 4, "l1_norms": np.array([0.0, 2.0, 3.0, 4.0]),
            "zero_threshold": np.float64(1e-7)})}
        return inputs, {"tasks": tasks}, lambda paths: plot_hessian_row_l1(
            by_task(tasks, inputs["rows"], load_npz), paths)
    if name == "hessian_spectrum":
        def slq(i):
            path = d / f"{tasks[i]}_slq.npz"
            SLQResult(rng.normal(size=(2, 4)) ** 2 + i, np.full((2, 4), 0.25), np.ones((2, 4)), np.ones((2, 3)), 50,
                      {"runs": 2}).save(path, n_bins=20, sigma2=1e-3)
            return str(path)
        exact = d / "b_exact.npz"
        save_exact(exact, np.sort(rng.normal(size=50)), {})
        inputs = {"slq": [slq(0), slq(1)], "exact": [str(exact)]}
        params = {"tasks": tasks, "exact_tasks": ["b"], "n_bins": {"a": 300, "b": 400},
                  "sigma2": {"a": 1e-4, "b": 1e-3}}
        return inputs, params, lambda paths: plot_hessian_spectra(
            by_task(tasks, inputs["slq"], SLQResult.load), paths, exact={"b": load_exact(exact)},
            n_bins=params["n_bins"], sigma2=params["sigma2"])
    if name in ("magnitude_scaling", "weight_distribution"):
        inputs = {"scaling": per_task(d, "scaling.json", scaling)}
        if name == "magnitude_scaling":
            return inputs, {"tasks": tasks}, lambda paths: plot_magnitude_scaling(
                by_task(tasks, inputs["scaling"], load_json), paths)
        variants, weights, model, metrics = ["l1", "dense"], {}, [], []
        for task in tasks:  # task-major, variant-minor, as the rule lists them
            weights[task] = {}
            for k, variant in enumerate(variants):
                w = rng.laplace(scale=0.01 * (k + 1), size=(40, 50)).astype(np.float32)
                model.append(write(d / f"{task}_{variant}.pt", {"fc.weight": w, "fc.bias": np.zeros(40, np.float32)}))
                metrics.append(write(d / f"{task}_{variant}_metrics.json", {"n_prunable": w.size}))
                weights[task][variant] = w.ravel().astype(np.float64)
        inputs.update(model=model, metrics=metrics, prediction=per_task(d, "prediction.json", prediction),
                      actual=per_task(d, "actual.json", actual))
        return inputs, {"tasks": tasks, "variants": variants}, lambda paths: plot_weight_distribution(
            weights, by_task(tasks, inputs["prediction"], load_json), by_task(tasks, inputs["actual"], load_json),
            by_task(tasks, inputs["scaling"], load_json), paths)
    if name == "regime_map":
        table = write(d / "regime_map.csv", regime_table())
        return {"table": table}, {}, lambda paths: plot_regime_map(load_csv(table), paths)
    if name == "lomp_vs_sota":
        from prunelimit.figures.lomp_vs_sota import plot_lomp_vs_sota

        runs = [{"task": task, "start": start, "seed": seed, "unpruned_test_acc": 0.95 - 0.01 * seed,
                 "rows": [{"task": task, "start": start, "seed": seed, "method": m, "sparsity": s,
                           "test_acc": 0.9 - s / 2 + 0.01 * seed} for m in ("mp", "wf") for s in (0.5, 0.9)]}
                for task in tasks for start in ("dense", "l1") for seed in (0, 1)]
        inputs = {"results": [write(d / f"run_{k}.json", run) for k, run in enumerate(runs)],
                  "prediction": per_task(d, "prediction.json", prediction)}
        rows, unpruned = oneshot_rows(runs)
        return inputs, {"tasks": tasks}, lambda paths: plot_lomp_vs_sota(
            pd.DataFrame(rows), {"a": prediction(0)["predicted_sparsity"], "b": prediction(1)["predicted_sparsity"]},
            unpruned, paths)
    raise KeyError(name)


@pytest.mark.parametrize("name", sorted(FIGURE_MODULES))
def test_figure_script_draws_each_figure_from_its_rule_files_and_logs_the_numbers(tmp_path, name):
    """scripts/figure.py as Snakemake runs it (a ``snakemake`` object in its globals; input and params read by
    attribute) calls draw_<name>, which draws from the rule's files exactly what plot_<name> draws from the
    same data; the log has one line per task with those numbers rounded."""
    inputs, params, plot = figure_rule(name, tmp_path)
    entry = f"prunelimit.figures.{FIGURE_MODULES[name]}:draw_{name}"
    outputs, log = [tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"], tmp_path / f"{name}.log"
    rule = SimpleNamespace(input=SimpleNamespace(**inputs), params=SimpleNamespace(**params, entry=entry),
                           output=[str(p) for p in outputs], log=[str(log)])
    drawn = runpy.run_path(str(FIGURE_SCRIPT), init_globals={"snakemake": rule})["drawn"]
    check_files(outputs)
    expected = plot([tmp_path / "expected.png"])
    assert json.dumps(drawn, sort_keys=True, default=repr) == json.dumps(expected, sort_keys=True, default=repr)
    lines = log.read_text().splitlines()
    assert lines[1] == f"drawn by {entry}"
    assert lines[2:] == summary_lines(expected)
    logged = dict(re.fullmatch(r"(\w+): (\{.*\})", line).groups() for line in lines[2:])
    assert list(logged) == list(expected) and all(json.loads(v) for v in logged.values())


def test_summary_lines_round_every_float_to_four_significant_digits():
    drawn = {"a": {"s": 0.612345, "n": np.int64(8), "f": np.float64(1.234567e-7), "curve": [0.123456, 2.0],
                   "arr": np.array([1.23456, 12345.67]), "by_scale": {2.0: (0.41234, float("nan"))}, "label": "λ"},
             "b": {"x": 1.0}}
    assert summary_lines(drawn) == [
        'a: {"s": 0.6123, "n": 8, "f": 1.235e-07, "curve": [0.1235, 2.0], "arr": [1.235, 12350.0], '
        '"by_scale": {"2.0": [0.4123, NaN]}, "label": "λ"}',
        'b: {"x": 1.0}']
