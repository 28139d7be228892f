# The paper's figures, and the tables of the theory, pruning and Hessian stages, each its own target
# (the training, baseline and regime-map tables are beside their stages' rules).


report: "../report/workflow.rst"


# the files the figures and tables read, one per task
CURVES = per_task("prune/{task}/curve.csv")
ACTUALS = per_task("prune/{task}/actual.json")
PREDICTIONS = per_task("theory/{task}/prediction.json")
SCALINGS = per_task("theory/{task}/magnitude_scaling.json")
SPECTRA = per_task("hessian/{task}/slq.npz")
ITERATIVE_CURVES = per_task("prune/{task}/iterative.csv", ITERATIVE_TASKS)
# Rare Gems runs on every iterative task (the baseline rule serves any task), so Fig. 4 (bottom)
# compares like with like even when the iterative task is not among baselines.tasks.
RARE_GEMS_TASKS = ITERATIVE_TASKS if "rare_gems" in BASELINE_METHODS else []
RARE_GEMS_FILES = [
    f"{RESULTS}/baselines/rare_gems/{t}/s{tag}_seed{seed}.json"
    for t in RARE_GEMS_TASKS
    for tag in SPARSITY_TAGS
    for seed in SEEDS
]
# weight histograms: the model the theory uses first, then the other variants (dense)
WEIGHT_VARIANTS = [THEORY_VARIANT] + [v for v in VARIANTS if v != THEORY_VARIANT]
TRAINED = [trained(t, v) for t in TASKS for v in WEIGHT_VARIANTS]
SLQ_SETTINGS = {
    "n_bins": {t: SETTINGS.hessian(t).n_bins for t in TASKS},
    "sigma2": {t: SETTINGS.hessian(t).sigma2 for t in TASKS},
}


FIGURES = {  # rule fig_<name>: scripts/fig_<name>.py, captioned by workflow/report/fig_<name>.rst
    "pruning_curves": figure(
        "pruning curves",
        "Fig. 3",
        {
            "tasks": TASKS,
            "claim": claim_seed_params(),
            "own_seed": {t: task_seed(t) for t in TASKS},
        },
        curve=CURVES,
        actual=ACTUALS,
        prediction=PREDICTIONS,
        seed_curve=claim_files("curve.csv"),
        seed_prediction=claim_files("prediction.json"),
        seed_actual=claim_files("actual.json"),
    ),
    "theory_vs_actual": figure(
        "prediction curve vs actual",
        "Fig. 5",
        {"tasks": TASKS},
        prediction=PREDICTIONS,
        actual=ACTUALS,
    ),
    "iterative_threshold": figure(
        "iterative threshold",
        "Fig. 4 (top)",
        {"tasks": ITERATIVE_TASKS, "l2": SETTINGS.iterative.l2},
        iterative=ITERATIVE_CURVES,
    ),
    "l2_vs_rare_gems": figure(
        "with vs without l2, Rare Gems",
        "Fig. 4 (bottom)",
        {"tasks": ITERATIVE_TASKS, "l2": SETTINGS.iterative.l2},
        iterative=ITERATIVE_CURVES,
        curve=per_task("prune/{task}/curve.csv", ITERATIVE_TASKS),
        rare_gems=RARE_GEMS_FILES,
    ),
    "hessian_row_l1": figure(
        "Hessian row L1 norms",
        "Fig. 6",
        {"tasks": TASKS},
        rows=per_task("hessian/{task}/hessian_rows.npz"),
    ),
    "magnitude_scaling": figure(
        "weight-magnitude scaling",
        "Fig. 7",
        {"tasks": TASKS},
        scaling=SCALINGS,
    ),
    "weight_distribution": figure(
        "weight distribution",
        "Figs. 2 and 8",
        {"tasks": TASKS, "variants": WEIGHT_VARIANTS},
        model=[files["model"] for files in TRAINED],
        metrics=[files["metrics"] for files in TRAINED],
        prediction=PREDICTIONS,
        actual=ACTUALS,
        scaling=SCALINGS,
    ),
    "hessian_spectrum": figure(
        "Hessian spectrum (SLQ)",
        "diagnostic (no paper figure)",
        {"tasks": TASKS, "exact_tasks": EXACT_TASKS, **SLQ_SETTINGS},
        slq=SPECTRA,
        exact=per_task("hessian/{task}/exact.npz", EXACT_TASKS),
    ),
    "regime_map": figure(
        "regime map: predicted vs actual limit across L1 strength",
        "beyond the paper",
        {},
        table=f"{RESULTS}/tables/regime_map.csv",
    ),
    "lomp_vs_sota": figure(
        "LOMP vs MP, WF, CBS, CHITA (one shot)",
        "appendix table, drawn",
        {"tasks": ONESHOT_TASKS},
        results=ONESHOT_RESULTS,
        prediction=per_task("theory/{task}/prediction.json", ONESHOT_TASKS),
    ),
}


for _name, _figure in FIGURES.items():

    rule:
        name:
            f"fig_{_name}"
        input:
            **_figure["input"],
        output:
            pdf=f"{RESULTS}/figures/{_name}.pdf",
            png=report(
                f"{RESULTS}/figures/{_name}.png",
                caption=f"../report/fig_{_name}.rst",
                category="Figures",
                labels=_figure["labels"],
            ),
        log:
            f"{RESULTS}/logs/figures/{_name}.log",
        benchmark:
            f"{RESULTS}/benchmarks/figures/{_name}.tsv"
        localrule: True
        conda:
            "../../envs/plot.yaml"
        params:
            **_figure["params"],
            figure=_name,
        # Snakemake evaluates a script path when the job runs, after this loop has ended, so the
        # path must not name the loop variable: it is formatted with the job's params instead
        script:
            "../../scripts/fig_{params.figure}.py"


rule table_bounds_gap:
    input:
        prediction=PREDICTIONS,
    output:
        **table_outputs("bounds_gap"),
    log:
        f"{RESULTS}/logs/tables/bounds_gap.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/bounds_gap.tsv"
    localrule: True
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TASKS,
        title=table_title("bounds_gap"),
    script:
        "../../scripts/table_bounds_gap.py"


rule table_theory_vs_actual:
    input:
        prediction=claim_files("prediction.json"),
        actual=claim_files("actual.json"),
        metrics=claim_files("metrics.json"),
    output:
        **table_outputs("theory_vs_actual"),
    log:
        f"{RESULTS}/logs/tables/theory_vs_actual.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/theory_vs_actual.tsv"
    localrule: True
    conda:
        "../../envs/plot.yaml"
    params:
        **claim_seed_params(),
        title=table_title("theory_vs_actual"),
    script:
        "../../scripts/table_theory_vs_actual.py"


rule table_slq:
    input:
        slq=SPECTRA,
    output:
        **table_outputs("slq"),
    log:
        f"{RESULTS}/logs/tables/slq.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/slq.tsv"
    localrule: True
    conda:
        "../../envs/plot.yaml"
    params:
        **SLQ_SETTINGS,
        tasks=TASKS,
        title=table_title("slq"),
    script:
        "../../scripts/table_slq.py"
