# Tables and figures of the paper, each its own target.


rule table_training:
    input:
        metrics=expand(
            f"{RESULTS}/train/{{task}}/{{variant}}/metrics.json",
            task=TASKS,
            variant=VARIANTS,
        ),
    output:
        csv=f"{RESULTS}/tables/training.csv",
        md=f"{RESULTS}/tables/training.md",
        tex=f"{RESULTS}/tables/training.tex",
    log:
        f"{RESULTS}/logs/tables/training.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/training.tsv"
    conda:
        "../../envs/plot.yaml"
    script:
        "../../scripts/table_training.py"


FINAL_OUTPUTS += expand(f"{RESULTS}/tables/training.{{ext}}", ext=["csv", "md", "tex"])


TV = config.get("tv_distance", {"tasks": [], "seeds": []})


rule table_tv_distance:
    input:
        reference=expand(f"{RESULTS}/train/{{task}}/l1/model.pt", task=TV["tasks"]),
        reseeded=expand(
            f"{RESULTS}/train/{{task}}/l1_seed{{seed}}/model.pt",
            task=TV["tasks"],
            seed=TV["seeds"],
        ),
    output:
        csv=f"{RESULTS}/tables/tv_distance.csv",
        md=f"{RESULTS}/tables/tv_distance.md",
        tex=f"{RESULTS}/tables/tv_distance.tex",
    log:
        f"{RESULTS}/logs/tables/tv_distance.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/tv_distance.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TV["tasks"],
        seeds=TV["seeds"],
        bins=TV.get("bins", 200),
        base_seed=config["train_defaults"]["seed"],
    script:
        "../../scripts/table_tv_distance.py"


if TV["tasks"]:
    FINAL_OUTPUTS += expand(
        f"{RESULTS}/tables/tv_distance.{{ext}}", ext=["csv", "md", "tex"]
    )


# ---------------------------------------------------------------------------------------------
# The paper's figures: one PDF + PNG pair each under results/<preset>/figures/, all tasks as
# panels; the PNG goes into the Snakemake report (snakemake --report results/<preset>/report.html).
# ---------------------------------------------------------------------------------------------

FIGURES = f"{RESULTS}/figures"
TABLES = f"{RESULTS}/tables"
ITERATIVE_TASKS = list(config["iterative"]["tasks"])
# Rare Gems runs on every iterative task (the baseline rule serves any task), so Fig. 4 (bottom)
# compares like with like even when the iterative task is not among baselines.tasks.
RARE_GEMS_TASKS = ITERATIVE_TASKS if "rare_gems" in BASELINE_METHODS else []
# weight histograms: the model the theory uses first, then the other variants (dense)
WEIGHT_VARIANTS = [THEORY_VARIANT] + [v for v in VARIANTS if v != THEORY_VARIANT]


report: "../report/workflow.rst"


localrules:
    table_training,
    table_tv_distance,
    fig_pruning_curves,
    fig_theory_vs_actual,
    fig_iterative_threshold,
    fig_l2_vs_rare_gems,
    fig_hessian_row_l1,
    fig_magnitude_scaling,
    fig_weight_distribution,
    fig_hessian_spectrum,
    table_bounds_gap,
    table_theory_vs_actual,
    table_slq,
    html_training,
    html_tv_distance,
    html_lomp_vs_baselines,
    html_bounds_gap,
    html_theory_vs_actual,
    html_slq,
    figures,
    tables,


# Rare Gems results of the iterative tasks (Fig. 4, bottom).
RARE_GEMS_FILES = [
    f"{RESULTS}/baselines/rare_gems/{t}/s{tag}_seed{seed}.json"
    for t in RARE_GEMS_TASKS
    for tag in SPARSITY_TAGS
    for seed in SEEDS
]


rule fig_pruning_curves:
    input:
        curve=expand(f"{RESULTS}/prune/{{task}}/curve.csv", task=TASKS),
        actual=expand(f"{RESULTS}/prune/{{task}}/actual.json", task=TASKS),
        prediction=expand(f"{RESULTS}/theory/{{task}}/prediction.json", task=TASKS),
    output:
        pdf=f"{FIGURES}/pruning_curves.pdf",
        png=report(
            f"{FIGURES}/pruning_curves.png",
            caption="../report/fig_pruning_curves.rst",
            category="Figures",
            labels={"figure": "pruning curves", "paper": "Fig. 3"},
        ),
    log:
        f"{RESULTS}/logs/figures/pruning_curves.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/pruning_curves.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TASKS,
    script:
        "../../scripts/fig_pruning_curves.py"


rule fig_theory_vs_actual:
    input:
        prediction=expand(f"{RESULTS}/theory/{{task}}/prediction.json", task=TASKS),
        actual=expand(f"{RESULTS}/prune/{{task}}/actual.json", task=TASKS),
    output:
        pdf=f"{FIGURES}/theory_vs_actual.pdf",
        png=report(
            f"{FIGURES}/theory_vs_actual.png",
            caption="../report/fig_theory_vs_actual.rst",
            category="Figures",
            labels={"figure": "prediction curve vs actual", "paper": "Fig. 5"},
        ),
    log:
        f"{RESULTS}/logs/figures/theory_vs_actual.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/theory_vs_actual.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TASKS,
    script:
        "../../scripts/fig_theory_vs_actual.py"


rule fig_iterative_threshold:
    input:
        iterative=expand(
            f"{RESULTS}/prune/{{task}}/iterative.csv", task=ITERATIVE_TASKS
        ),
    output:
        pdf=f"{FIGURES}/iterative_threshold.pdf",
        png=report(
            f"{FIGURES}/iterative_threshold.png",
            caption="../report/fig_iterative_threshold.rst",
            category="Figures",
            labels={"figure": "iterative threshold", "paper": "Fig. 4 (top)"},
        ),
    log:
        f"{RESULTS}/logs/figures/iterative_threshold.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/iterative_threshold.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=ITERATIVE_TASKS,
        l2=config["iterative"]["l2"],
    script:
        "../../scripts/fig_iterative_threshold.py"


rule fig_l2_vs_rare_gems:
    input:
        iterative=expand(
            f"{RESULTS}/prune/{{task}}/iterative.csv", task=ITERATIVE_TASKS
        ),
        curve=expand(f"{RESULTS}/prune/{{task}}/curve.csv", task=ITERATIVE_TASKS),
        rare_gems=RARE_GEMS_FILES,
    output:
        pdf=f"{FIGURES}/l2_vs_rare_gems.pdf",
        png=report(
            f"{FIGURES}/l2_vs_rare_gems.png",
            caption="../report/fig_l2_vs_rare_gems.rst",
            category="Figures",
            labels={
                "figure": "with vs without l2, Rare Gems",
                "paper": "Fig. 4 (bottom)",
            },
        ),
    log:
        f"{RESULTS}/logs/figures/l2_vs_rare_gems.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/l2_vs_rare_gems.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=ITERATIVE_TASKS,
        l2=config["iterative"]["l2"],
    script:
        "../../scripts/fig_l2_vs_rare_gems.py"


rule fig_hessian_row_l1:
    input:
        rows=expand(f"{RESULTS}/theory/{{task}}/hessian_rows.npz", task=TASKS),
    output:
        pdf=f"{FIGURES}/hessian_row_l1.pdf",
        png=report(
            f"{FIGURES}/hessian_row_l1.png",
            caption="../report/fig_hessian_row_l1.rst",
            category="Figures",
            labels={"figure": "Hessian row L1 norms", "paper": "Fig. 6"},
        ),
    log:
        f"{RESULTS}/logs/figures/hessian_row_l1.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/hessian_row_l1.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TASKS,
    script:
        "../../scripts/fig_hessian_row_l1.py"


rule fig_magnitude_scaling:
    input:
        scaling=expand(f"{RESULTS}/theory/{{task}}/magnitude_scaling.json", task=TASKS),
    output:
        pdf=f"{FIGURES}/magnitude_scaling.pdf",
        png=report(
            f"{FIGURES}/magnitude_scaling.png",
            caption="../report/fig_magnitude_scaling.rst",
            category="Figures",
            labels={"figure": "weight-magnitude scaling", "paper": "Fig. 7"},
        ),
    log:
        f"{RESULTS}/logs/figures/magnitude_scaling.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/magnitude_scaling.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TASKS,
    script:
        "../../scripts/fig_magnitude_scaling.py"


rule fig_weight_distribution:
    input:
        model=[trained(t, v)["model"] for t in TASKS for v in WEIGHT_VARIANTS],
        metrics=[trained(t, v)["metrics"] for t in TASKS for v in WEIGHT_VARIANTS],
        prediction=expand(f"{RESULTS}/theory/{{task}}/prediction.json", task=TASKS),
        actual=expand(f"{RESULTS}/prune/{{task}}/actual.json", task=TASKS),
        scaling=expand(f"{RESULTS}/theory/{{task}}/magnitude_scaling.json", task=TASKS),
    output:
        pdf=f"{FIGURES}/weight_distribution.pdf",
        png=report(
            f"{FIGURES}/weight_distribution.png",
            caption="../report/fig_weight_distribution.rst",
            category="Figures",
            labels={"figure": "weight distribution", "paper": "Figs. 2 and 8"},
        ),
    log:
        f"{RESULTS}/logs/figures/weight_distribution.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/weight_distribution.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TASKS,
        variants=WEIGHT_VARIANTS,
    script:
        "../../scripts/fig_weight_distribution.py"


rule fig_hessian_spectrum:
    input:
        slq=expand(f"{RESULTS}/hessian/{{task}}/slq.npz", task=TASKS),
        exact=expand(f"{RESULTS}/hessian/{{task}}/exact.npz", task=EXACT_TASKS),
    output:
        pdf=f"{FIGURES}/hessian_spectrum.pdf",
        png=report(
            f"{FIGURES}/hessian_spectrum.png",
            caption="../report/fig_hessian_spectrum.rst",
            category="Figures",
            labels={
                "figure": "Hessian spectrum (SLQ)",
                "paper": "diagnostic (no paper figure)",
            },
        ),
    log:
        f"{RESULTS}/logs/figures/hessian_spectrum.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/hessian_spectrum.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TASKS,
        exact_tasks=EXACT_TASKS,
        n_bins={t: hessian_settings(t)["n_bins"] for t in TASKS},
        sigma2={t: hessian_settings(t)["sigma2"] for t in TASKS},
    script:
        "../../scripts/fig_hessian_spectrum.py"


# ---------------------------------------------------------------------------------------------
# The paper's tables from the theory, pruning and Hessian stages (.csv, .md, booktabs .tex)
# ---------------------------------------------------------------------------------------------


rule table_bounds_gap:
    input:
        prediction=expand(f"{RESULTS}/theory/{{task}}/prediction.json", task=TASKS),
    output:
        csv=f"{TABLES}/bounds_gap.csv",
        md=f"{TABLES}/bounds_gap.md",
        tex=f"{TABLES}/bounds_gap.tex",
    log:
        f"{RESULTS}/logs/tables/bounds_gap.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/bounds_gap.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TASKS,
    script:
        "../../scripts/table_bounds_gap.py"


rule table_theory_vs_actual:
    input:
        prediction=expand(f"{RESULTS}/theory/{{task}}/prediction.json", task=TASKS),
        actual=expand(f"{RESULTS}/prune/{{task}}/actual.json", task=TASKS),
    output:
        csv=f"{TABLES}/theory_vs_actual.csv",
        md=f"{TABLES}/theory_vs_actual.md",
        tex=f"{TABLES}/theory_vs_actual.tex",
    log:
        f"{RESULTS}/logs/tables/theory_vs_actual.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/theory_vs_actual.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TASKS,
    script:
        "../../scripts/table_theory_vs_actual.py"


rule table_slq:
    input:
        slq=expand(f"{RESULTS}/hessian/{{task}}/slq.npz", task=TASKS),
    output:
        csv=f"{TABLES}/slq.csv",
        md=f"{TABLES}/slq.md",
        tex=f"{TABLES}/slq.tex",
    log:
        f"{RESULTS}/logs/tables/slq.log",
    benchmark:
        f"{RESULTS}/benchmarks/tables/slq.tsv"
    conda:
        "../../envs/plot.yaml"
    params:
        tasks=TASKS,
        n_bins={t: hessian_settings(t)["n_bins"] for t in TASKS},
        sigma2={t: hessian_settings(t)["sigma2"] for t in TASKS},
    script:
        "../../scripts/table_slq.py"


# ---------------------------------------------------------------------------------------------
# Every table also as an HTML page: what the report shows inline (a .csv there is a download only)
# ---------------------------------------------------------------------------------------------

TABLE_PAGES = {  # table: (caption, label, the paper's table)
    "training": ("training.rst", "training", "training hyperparameters table"),
    "tv_distance": ("tv_distance.rst", "TV distance", "TV-distance table"),
    "lomp_vs_baselines": (
        "baselines_table.rst",
        "LOMP vs baselines",
        "LOMP vs baselines tables",
    ),
    "bounds_gap": ("table_bounds_gap.rst", "bounds gap", "bounds-gap table"),
    "theory_vs_actual": (
        "table_theory_vs_actual.rst",
        "theory vs actual",
        "theoretical vs actual table",
    ),
    "slq": ("table_slq.rst", "SLQ settings", "SLQ hyperparameter table"),
}
if REGIME_TASKS:  # workflow/rules/regime.smk
    TABLE_PAGES["regime_map"] = (
        "table_regime_map.rst",
        "regime map",
        "beyond the paper: limit across L1 strength",
    )

for _table, (_caption, _label, _paper) in TABLE_PAGES.items():

    rule:
        name:
            f"html_{_table}"
        input:
            f"{TABLES}/{_table}.csv",
        output:
            report(
                f"{TABLES}/{_table}.html",
                caption=f"../report/{_caption}",
                category="Tables",
                labels={"table": _label, "paper": _paper},
            ),
        log:
            f"{RESULTS}/logs/tables/{_table}_html.log",
        benchmark:
            f"{RESULTS}/benchmarks/tables/{_table}_html.tsv"
        conda:
            "../../envs/plot.yaml"
        params:
            title=f"{_label} (paper: {_paper})",
        script:
            "../../scripts/table_html.py"


FIGURE_NAMES = [
    "pruning_curves",
    "theory_vs_actual",
    "hessian_row_l1",
    "magnitude_scaling",
    "weight_distribution",
    "hessian_spectrum",
]
if ITERATIVE_TASKS:
    FIGURE_NAMES += ["iterative_threshold", "l2_vs_rare_gems"]
TABLE_NAMES = ["bounds_gap", "theory_vs_actual", "slq"]
if REGIME_TASKS:
    FIGURE_NAMES.append("regime_map")
    TABLE_NAMES.append("regime_map")

    localrules:
        html_regime_map,


BUILT_TABLES = ["training", *TABLE_NAMES]
if TV["tasks"]:
    BUILT_TABLES.append("tv_distance")
if BASELINE_TASKS:
    BUILT_TABLES.append("lomp_vs_baselines")

FINAL_OUTPUTS += expand(
    f"{FIGURES}/{{name}}.{{ext}}", name=FIGURE_NAMES, ext=["pdf", "png"]
)
FINAL_OUTPUTS += expand(
    f"{TABLES}/{{name}}.{{ext}}", name=TABLE_NAMES, ext=["csv", "md", "tex"]
)
FINAL_OUTPUTS += expand(f"{TABLES}/{{name}}.html", name=BUILT_TABLES)


TABLE_FILES = [f for f in FINAL_OUTPUTS if f.startswith(f"{TABLES}/")]


rule figures:
    """Partial target: every figure of the preset (snakemake figures)."""
    input:
        expand(f"{FIGURES}/{{name}}.{{ext}}", name=FIGURE_NAMES, ext=["pdf", "png"]),


rule tables:
    """Partial target: every table of the preset (snakemake tables)."""
    input:
        TABLE_FILES,
