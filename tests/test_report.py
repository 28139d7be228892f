"""Tables of the report (unit tests), and the figures, tables and HTML report of the mini pipeline.

The pipeline tests reuse the session-wide mini run (tests/conftest.py ``mini_run``: the default DAG at
test scale), so the DAG is built once per test session.
"""

import json
import math
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from pipeline_utils import ROOT, snakemake, workflow_rules
from prunelimit.config import main_study_tasks
from prunelimit.tables import bounds_gap_table, slq_table, write_table
from test_figures import prediction

# every figure and table target of this stage, with the paper's figure/table it reproduces
FIGURES = {"pruning_curves": "Fig. 3", "theory_vs_actual": "Fig. 5", "iterative_threshold": "Fig. 4 top",
           "l2_vs_rare_gems": "Fig. 4 bottom", "hessian_row_l1": "Fig. 6", "magnitude_scaling": "Fig. 7",
           "weight_distribution": "Figs. 2, 8", "hessian_spectrum": "SLQ density", "regime_map": "beyond the paper"}
TABLES = ["bounds_gap", "theory_vs_actual", "slq", "training", "tv_distance", "lomp_vs_baselines", "regime_map"]
# every entry of report.smk's TABLES (rule table_<name>, entry prunelimit.table_inputs:<name>_from_files)
TABLE_NAMES = [*TABLES, "lomp_vs_sota"]
BOUNDS_COLUMNS = ["task", "D", "epsilon", "zero_fraction", "eta", "lower_sparsity", "predicted_sparsity",
                  "upper_sparsity", "gap", "exact_lower_sparsity", "exact_predicted_sparsity", "exact_upper_sparsity",
                  "exact_gap", "slq_minus_exact"]
THEORY_COLUMNS = ["task", "seed", "n_seeds", "predicted_sparsity", "predicted_at_eps_p10", "predicted_at_eps_p90",
                  "actual_sparsity", "actual_criterion", "actual_tol_0", "actual_tol_0.005", "actual_tol_0.01",
                  "actual_tol_0.02", "difference", "predicted_density", "actual_density", "density_error",
                  "naive_sparsity", "naive_difference", "theory_beats_naive", "verdict", "lower_sparsity",
                  "upper_sparsity", "bounds_verdict", "epsilon", "epsilon_p10", "epsilon_p90", "zero_fraction",
                  "slq_steps", "slq_converged", "official_smoothed_sparsity", "unpruned_test_acc"]
SLQ_COLUMNS = ["task", "params", "D", "n_samples", "runs", "iterations", "min_steps_taken", "bins", "sigma2",
               "sigma2_kernel", "lambda_min", "lambda_max", "hvp_products", "seconds"]


# ---------------------------------------------------------------------------------------------
# Table functions
# ---------------------------------------------------------------------------------------------


def test_bounds_gap_table_has_exact_columns_only_where_computed(tmp_path):
    table = bounds_gap_table({"a": prediction(0, exact=True), "b": prediction(1)})
    assert list(table.columns) == BOUNDS_COLUMNS and list(table.task) == ["a", "b"]
    a, b = table.iloc[0], table.iloc[1]
    assert a.gap == pytest.approx(a.upper_sparsity - a.lower_sparsity)
    assert a.exact_predicted_sparsity == 0.58 and a.slq_minus_exact == pytest.approx(0.6 - 0.58)
    assert math.isnan(b.exact_gap) and math.isnan(b.slq_minus_exact)
    write_table(table, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex")
    back = pd.read_csv(tmp_path / "t.csv")
    assert back.shape == table.shape and math.isnan(back.exact_gap[1])


def test_slq_table_reports_the_kernel_variance_used():
    settings = {"params": "prunable", "dim": 500, "n_samples": 100, "n_runs": 3, "n_iter": 20, "products": 60,
                "elapsed_s": 1.5}
    runs = {"a": {"settings": settings, "steps": np.array([20, 17, 20]), "n_bins": 1000, "sigma2": 1e-5,
                  "lambda_min": -0.5, "lambda_max": 9.5},
            "b": {"settings": {**settings, "dim": 50}, "steps": [20, 20, 20], "n_bins": 10, "sigma2": 1e-3,
                  "lambda_min": 0.0, "lambda_max": 0.5}}
    table = slq_table(runs)
    assert list(table.columns) == SLQ_COLUMNS and len(table) == 2
    assert table.sigma2_kernel[0] == pytest.approx(1e-5 * 10.0)  # σ² · (λmax − λmin)
    assert table.sigma2_kernel[1] == pytest.approx(1e-3)  # σ² · max(1, 0.5)
    assert table.min_steps_taken.tolist() == [17, 20] and table.runs.tolist() == [3, 3]
    runs["a"]["steps"] = np.array([64, 256, 128])  # converged runs of different lengths: the longest
    assert slq_table(runs).iterations.tolist() == [256, 20]


def test_html_page_of_a_table_shows_every_row_formatted_like_the_markdown(tmp_path):
    table = bounds_gap_table({"a_1": prediction(0, exact=True), "b<2>": prediction(1)})
    write_table(table, tmp_path / "t.csv", tmp_path / "t.md", html=tmp_path / "t.html", title="bounds & gap")
    page = (tmp_path / "t.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>bounds &amp; gap</title>" in page and "b&lt;2&gt;" in page  # escaped
    assert page.count("<tr") == 1 + 2  # header and one row per task
    assert "0.58" in page and "nan" not in page.lower()  # 4 significant digits; missing cells empty


# ---------------------------------------------------------------------------------------------
# DAG: each figure is its own target and needs only its inputs (dry runs, no pipeline run)
# ---------------------------------------------------------------------------------------------


def job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table of a dry run: rule → number of jobs."""
    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            if line.startswith("total"):
                break
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.parametrize("target, needs, not_needed", [
    ("figures/hessian_row_l1.pdf", {"fig_hessian_row_l1", "hessian_rows", "train", "dataset"},
     {"slq", "theory", "sweep", "baseline", "iterative"}),
    ("figures/pruning_curves.png", {"fig_pruning_curves", "sweep", "theory", "slq"},
     {"baseline", "baseline_imp", "iterative", "magnitude_scaling", "sweep_dense"}),
    # SLQ converges on the predicted threshold, so it needs f₀ from the Hessian rows
    ("tables/slq.tex", {"table_slq", "slq", "hessian_rows"}, {"theory", "sweep", "exact_spectrum"}),
    # the regime map: its own trainings and the regime copies of the theory and sweep rules, and the main
    # study's theory and sweeps only for its main-study task's dense and L1 models (mlp_digits), nothing else
    # of the main study (figures, baselines, iterative pruning, magnitude scaling)
    ("figures/regime_map.pdf", {"fig_regime_map", "table_regime_map", "train", "regime_prediction",
                                "regime_exact_spectrum", "regime_sweep"},
     {"magnitude_scaling", "baseline", "baseline_imp", "iterative", "train_reseeded"}),
])
def test_a_figure_or_table_target_builds_only_what_it_needs(tmp_path, target, needs, not_needed):
    proc = snakemake(tmp_path, "-n", f"results/mini/{target}", timeout=300)
    rules = set(job_counts(proc.stdout))
    assert needs <= rules, rules
    assert not (rules & not_needed), rules & not_needed


# ---------------------------------------------------------------------------------------------
# The mini pipeline's figures, tables and report
# ---------------------------------------------------------------------------------------------


def results_of(mini_run):
    return mini_run[0] / "results" / "mini"


def test_every_figure_is_built_as_pdf_and_png(mini_run):
    figures = results_of(mini_run) / "figures"
    for name in FIGURES:
        pdf, png = figures / f"{name}.pdf", figures / f"{name}.png"
        assert pdf.read_bytes()[:4] == b"%PDF" and pdf.stat().st_size > 10_000, name
        assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 20_000, name


def test_tables_have_their_columns_and_one_row_per_task(mini_run):
    tables, tasks = results_of(mini_run) / "tables", main_study_tasks(mini_run.config)
    for name in TABLES:
        for ext in ("csv", "md", "tex", "html"):
            assert (tables / f"{name}.{ext}").stat().st_size > 0, (name, ext)
        assert "\\toprule" in (tables / f"{name}.tex").read_text()
        rows = len(pd.read_csv(tables / f"{name}.csv"))
        assert (tables / f"{name}.html").read_text().count("<tr") == 1 + rows, name
    for name, columns in (("bounds_gap", BOUNDS_COLUMNS), ("slq", SLQ_COLUMNS)):
        table = pd.read_csv(tables / f"{name}.csv")
        assert list(table.columns) == columns, name
        assert table.task.tolist() == tasks, name
    claim = pd.read_csv(tables / "theory_vs_actual.csv", dtype={"seed": str})
    assert list(claim.columns) == THEORY_COLUMNS
    seeds = [str(s) for s in mini_run.config["claim_seeds"]]
    assert claim.task.tolist() == [t for t in tasks for _ in seeds + ["mean", "sd"]]
    assert claim.seed.tolist() == (seeds + ["mean", "sd"]) * len(tasks)


def test_theory_vs_actual_table_holds_every_seeds_stage_numbers(mini_run):
    results = results_of(mini_run)
    table = pd.read_csv(results / "tables" / "theory_vs_actual.csv", dtype={"seed": str})
    main_seed = str(mini_run.config["train_defaults"]["seed"])
    for row in table[~table.seed.isin(["mean", "sd"])].itertuples():
        # the task's own seed is the main study's model; the others the seeds stage's
        own = row.seed == main_seed
        pred_dir = results / "theory" / row.task if own else results / "seeds" / row.task / f"seed{row.seed}"
        act_dir = results / "prune" / row.task if own else pred_dir
        pred = json.loads((pred_dir / "prediction.json").read_text())
        act = json.loads((act_dir / "actual.json").read_text())
        assert row.predicted_sparsity == pytest.approx(pred["predicted_sparsity"], abs=1e-12)
        assert row.actual_sparsity == pytest.approx(act["actual_sparsity"], abs=1e-12)
        assert row.difference == pytest.approx(pred["predicted_sparsity"] - act["actual_sparsity"], abs=1e-12)
        band = pred["epsilon_band"]
        assert row.predicted_at_eps_p10 == pytest.approx(band["predicted_sparsity_at_p10"], abs=1e-12)
        assert row.predicted_at_eps_p10 <= row.predicted_at_eps_p90
    for task, group in table.groupby("task"):
        per_seed = group[~group.seed.isin(["mean", "sd"])]
        mean = group[group.seed == "mean"].iloc[0]
        assert mean.predicted_sparsity == pytest.approx(per_seed.predicted_sparsity.mean(), abs=1e-12)
        assert mean.verdict, task


def test_bounds_gap_table_shows_the_exact_spectrum_where_computed(mini_run):
    results = results_of(mini_run)
    table = pd.read_csv(results / "tables" / "bounds_gap.csv").set_index("task")
    for task, row in table.iterrows():
        exact = (results / "hessian" / task / "exact.npz").exists()
        assert math.isnan(row.slq_minus_exact) is not exact, task
        assert row.gap == pytest.approx(row.upper_sparsity - row.lower_sparsity)


def test_slq_table_matches_the_spectrum_files(mini_run):
    from prunelimit.spectrum import SLQResult

    results = results_of(mini_run)
    table = pd.read_csv(results / "tables" / "slq.csv").set_index("task")
    for task, row in table.iterrows():
        result = SLQResult.load(results / "hessian" / task / "slq.npz")
        assert (row.runs, row.iterations, row.D) == (result.n_runs, result.ritz_values.shape[1], result.dim)
        assert row.lambda_max == pytest.approx(result.quadrature().lambda_max)


def test_pruning_curves_figure_drew_the_predicted_and_actual_thresholds(mini_run):
    """The figure rule logs the numbers it read back from the plotted lines (scripts/figure.py: one line per
    task, ``task: {json}``, 4 significant digits): they are the stage's."""
    results = results_of(mini_run)
    log = (results / "logs" / "figures" / "pruning_curves.log").read_text()
    logged = {m.group(1): json.loads(m.group(2)) for m in re.finditer(r"^(\w+): (\{.*\})$", log, re.MULTILINE)}
    assert list(logged) == main_study_tasks(mini_run.config)
    keys = ("predicted_sparsity", "lower_sparsity", "upper_sparsity", "actual_sparsity")
    for task, marks in logged.items():
        predicted, lower, upper, actual_ = (marks[key] for key in keys)
        pred = json.loads((results / "theory" / task / "prediction.json").read_text())
        act = json.loads((results / "prune" / task / "actual.json").read_text())
        assert predicted == pytest.approx(pred["predicted_sparsity"], abs=1e-4)
        assert (lower, upper) == pytest.approx((pred["lower_sparsity"], pred["upper_sparsity"]), abs=1e-4)
        assert actual_ == pytest.approx(act["actual_sparsity"], abs=1e-4)


def test_theory_vs_actual_figure_from_the_pipeline_files(mini_run, tmp_path):
    """Redraw Fig. 5 from the mini run's own files: the marks are the prediction.json/actual.json values."""
    from prunelimit.figures.theory_vs_actual import plot_theory_vs_actual
    from prunelimit.io import load_json

    results, tasks = results_of(mini_run), main_study_tasks(mini_run.config)
    preds = {t: load_json(results / "theory" / t / "prediction.json") for t in tasks}
    acts = {t: load_json(results / "prune" / t / "actual.json") for t in tasks}
    drawn = plot_theory_vs_actual(preds, acts, [tmp_path / "f.png"])
    for t in tasks:
        assert drawn[t]["predicted_sparsity"] == pytest.approx(preds[t]["predicted_sparsity"])
        assert drawn[t]["R_at_prediction"] == pytest.approx(preds[t]["R_at_prediction"])
        assert drawn[t]["actual_sparsity"] == pytest.approx(acts[t]["actual_sparsity"])


def test_deleting_one_figure_rebuilds_only_that_figure(mini_run, tmp_path):
    """By file times only (``--rerun-triggers mtime``), so an edit of the config or code made while
    the session runs cannot mask what deletion alone triggers."""
    workdir = mini_run[0]
    figure = results_of(mini_run) / "figures" / "pruning_curves.pdf"
    aside = tmp_path / "pruning_curves.pdf"
    shutil.move(figure, aside)
    try:
        for args in (["results/mini/figures/pruning_curves.pdf"], []):
            # targets between flags: after --configfile or --rerun-triggers they would be read as values
            proc = snakemake(workdir, "-n", *args, "--rerun-triggers", "mtime", configfile=mini_run.configfile,
                             timeout=300)
            counts = job_counts(proc.stdout)
            counts.pop("all", None)  # the target rule of a full run: no work of its own
            assert counts == {"fig_pruning_curves": 1}, (args, counts)
    finally:
        shutil.move(aside, figure)


def test_html_report_has_every_figure_and_table(mini_run):
    workdir = mini_run[0]
    report = results_of(mini_run) / "report.html"
    snakemake(workdir, "--report", str(report), configfile=mini_run.configfile, timeout=600)
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 200_000  # self-contained: the images are embedded
    for name in FIGURES:
        assert f"{name}.png" in html, name
    for name in TABLES:
        assert f"{name}.html" in html, name
    # captions: FIGURES' and TABLES' caption params, rendered by workflow/report/figure.rst and table.rst, config
    # values formatted in
    assert "Pruning curves (paper Fig. 3)" in html
    assert f"every sparsity i/{mini_run.config['prune']['grid']} of the grid" in html
    assert "Kinematic bounds and their gap" in html


# ---------------------------------------------------------------------------------------------
# Workflow code quality: lint and formatting
# ---------------------------------------------------------------------------------------------


def test_make_lint_is_clean():
    """`make lint` (ruff, snakefmt --check, snakemake --lint with every preset) passes, with this
    interpreter's environment as the Makefile's venv."""
    proc = subprocess.run(["make", "-s", "lint", f"VENV={sys.prefix}"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert output.count("good condition") == 3  # the workflow linter ran to its end with each preset
    assert "Lints for" not in output and "No validator found" not in output


def test_every_rule_has_a_log_and_a_benchmark():
    # each rule logs to its `log:` and has a `benchmark:` (aggregate rules run nothing)
    rules = [rule for rule in workflow_rules() if rule["script"]]
    assert len(rules) >= 25 and "fig_pruning_curves" in {rule["name"] for rule in rules}  # loop rules seen too
    lacking = [(rule["name"], key) for rule in rules for key in ("log", "benchmark") if not rule[key]]
    assert not lacking


def figure_rules(configfile: str = "config.yaml") -> dict[str, dict]:
    """The workflow's fig_<name> rules (one per entry of report.smk's FIGURES), by figure name."""
    return {rule["name"].removeprefix("fig_"): rule for rule in workflow_rules(configfile)
            if rule["name"].startswith("fig_")}


def test_every_figure_is_a_draw_function_and_a_caption_of_its_figures_entry():
    """A figure is its plot_/draw_ functions in prunelimit.figures and its FIGURES entry: every fig_ rule runs
    scripts/figure.py with an entry naming its draw_<name> and a caption; no per-figure script or caption file."""
    from prunelimit.entries import resolve

    figures = figure_rules()
    assert set(FIGURES) <= set(figures), figures.keys()
    for name, rule in figures.items():
        assert rule["script"] == str(ROOT / "scripts" / "figure.py"), name
        module, _, function = rule["entry"].partition(":")
        assert module.startswith("prunelimit.figures.") and function == f"draw_{name}", rule["entry"]
        draw = resolve(rule["entry"])
        assert callable(draw) and draw.__module__ == module, name
        assert rule["caption"] and rule["caption"].strip() == rule["caption"], name
        assert "{{" not in rule["caption"] and "snakemake.config" not in rule["caption"], name  # formatted in Python
    assert not list((ROOT / "scripts").glob("fig_*.py"))
    assert not list((ROOT / "workflow" / "report").glob("fig_*.rst"))
    assert (ROOT / "workflow" / "report" / "figure.rst").read_text().strip() == "{{ snakemake.params.caption }}"


def table_rules(configfile: str = "config.yaml") -> dict[str, dict]:
    """The workflow's table_<name> rules (one per entry of report.smk's TABLES), by table name."""
    return {rule["name"].removeprefix("table_"): rule for rule in workflow_rules(configfile)
            if rule["name"].startswith("table_")}


def test_every_table_is_an_entry_and_a_caption_of_its_tables_entry():
    """A table is its builder in prunelimit.tables (or claim), its <name>_from_files entry in
    prunelimit.table_inputs and its TABLES entry: every table_ rule runs scripts/table.py with an entry naming
    <name>_from_files, a caption and the title of its HTML page; no per-table script or caption file."""
    from prunelimit.entries import resolve

    tables = table_rules()
    assert set(tables) == set(TABLE_NAMES), tables.keys()
    for name, rule in tables.items():
        assert rule["script"] == str(ROOT / "scripts" / "table.py"), name
        assert rule["entry"] == f"prunelimit.table_inputs:{name}_from_files", rule["entry"]
        build = resolve(rule["entry"])
        assert callable(build) and build.__module__ == "prunelimit.table_inputs", name
        assert rule["conda"] == str(ROOT / "envs" / "plot.yaml"), name
        assert rule["caption"] and rule["caption"].strip() == rule["caption"], name
        assert "{{" not in rule["caption"] and "snakemake.config" not in rule["caption"], name  # formatted in Python
    assert not list((ROOT / "scripts").glob("table_*.py"))
    report = ROOT / "workflow" / "report"
    captions = {p.name for p in report.glob("*.rst")}
    # left: the report's front page, the figures' and tables' one caption each, and the theory and Hessian
    # stages' per-task outputs' captions
    assert captions == {"workflow.rst", "figure.rst", "table.rst", "theory_prediction.rst", "theory_scaling.rst",
                        "hessian_spectrum.rst"}, captions
    assert (report / "table.rst").read_text().strip() == "{{ snakemake.params.caption }}"


def check_restructuredtext(text: str, where: str) -> None:
    import docutils.core
    import docutils.utils

    try:
        docutils.core.publish_string(text, writer_name="html",
                                     settings_overrides={"report_level": 5, "halt_level": 3})
    except docutils.utils.SystemMessage as err:
        pytest.fail(f"{where}: {err}")


@pytest.mark.parametrize("caption", sorted(p.name for p in (ROOT / "workflow" / "report").glob("*.rst")))
def test_every_caption_is_valid_restructuredtext(caption):
    """A caption the report cannot render shows an error box in it (e.g. |w| read as a substitution)."""
    check_restructuredtext((ROOT / "workflow" / "report" / caption).read_text(), caption)


@pytest.mark.parametrize("preset", ["config.yaml", "workflow/presets/paper.yaml"])
def test_every_figure_and_table_caption_is_valid_restructuredtext(preset):
    """The figures' and tables' captions (FIGURES' and TABLES' caption params, which workflow/report/figure.rst
    and table.rst render), with the preset's config values formatted in."""
    for name, rule in figure_rules(preset).items():
        check_restructuredtext(rule["caption"], f"{preset}: caption of figure {name}")
    tables = table_rules(preset)
    assert set(TABLE_NAMES) <= set(tables), tables.keys()
    for name, rule in tables.items():
        check_restructuredtext(rule["caption"], f"{preset}: caption of table {name}")
