# LOMP against IMP, Rare Gems and Smart-Ratio at the configured sparsities and seeds
# (library: prunelimit.baselines; table: prunelimit.tables.lomp_vs_baselines_table).
import re

BASELINES = config["baselines"]
BASELINE_TASKS = list(BASELINES.get("tasks", []))
BASELINE_METHODS = list(
    BASELINES.get("methods", ["lomp", "imp", "rare_gems", "smart_ratio"])
)
SPARSITY_TAGS = {
    f"{float(s):g}": float(s) for s in BASELINES["sparsities"]
}  # "0.5" -> 0.5
SEEDS = [int(s) for s in BASELINES["seeds"]]


wildcard_constraints:
    method="|".join(BASELINE_METHODS),
    sparsity="|".join(re.escape(tag) for tag in SPARSITY_TAGS),
    seed=r"\d+",


def lomp_seed(task):
    """LOMP prunes the one trained L1 model: its only seed is that model's training seed."""
    return int(task_spec(config, task, THEORY_VARIANT)["train"]["seed"])


def baseline_results(task):
    """Every result file of the table for ``task`` (LOMP once, the trained baselines per seed)."""
    files = []
    for method in BASELINE_METHODS:
        seeds = [lomp_seed(task)] if method == "lomp" else SEEDS
        files += expand(
            f"{RESULTS}/baselines/{method}/{task}/s{{sparsity}}_seed{{seed}}.json",
            sparsity=SPARSITY_TAGS,
            seed=seeds,
        )
    return files


def baseline_inputs(wildcards):
    inputs = {"data": dataset_of(wildcards)}
    if wildcards.method == "lomp":
        inputs.update(trained(wildcards.task))
    return inputs


rule baseline:
    input:
        unpack(baseline_inputs),
    output:
        f"{RESULTS}/baselines/{{method}}/{{task}}/s{{sparsity}}_seed{{seed}}.json",
    log:
        f"{RESULTS}/logs/baselines/{{method}}_{{task}}_s{{sparsity}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/baselines/{{method}}_{{task}}_s{{sparsity}}_seed{{seed}}.tsv"
    params:
        method=lambda w: w.method,
        spec=lambda w: task_spec(config, w.task, "dense"),
        options=lambda w: BASELINES.get(w.method, {}),
        device=config.get("device", "auto"),
    threads: 1
    resources:
        gpu=1,
    wildcard_constraints:
        method="lomp|rare_gems|smart_ratio",
    script:
        "../../scripts/baseline.py"


# IMP: one trajectory per (task, seed) passes through every target sparsity (see baselines/imp.py).
rule baseline_imp:
    input:
        data=dataset_of,
    output:
        expand(
            f"{RESULTS}/baselines/imp/{{{{task}}}}/s{{sparsity}}_seed{{{{seed}}}}.json",
            sparsity=SPARSITY_TAGS,
        ),
    log:
        f"{RESULTS}/logs/baselines/imp_{{task}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/baselines/imp_{{task}}_seed{{seed}}.tsv"
    params:
        method="imp",
        sparsities=list(SPARSITY_TAGS.values()),
        spec=lambda w: task_spec(config, w.task, "dense"),
        options=BASELINES.get("imp", {}),
        device=config.get("device", "auto"),
    threads: 1
    resources:
        gpu=1,
    script:
        "../../scripts/baseline.py"


localrules:
    table_baselines,


rule table_baselines:
    input:
        results=[f for task in BASELINE_TASKS for f in baseline_results(task)],
        dense=[
            trained(t, "dense")["metrics"]
            for t in BASELINE_TASKS
            if "dense" in VARIANTS
        ],
    output:
        csv=report(
            f"{RESULTS}/tables/lomp_vs_baselines.csv",
            caption="../report/baselines_table.rst",
            category="Tables",
        ),
        md=f"{RESULTS}/tables/lomp_vs_baselines.md",
        tex=f"{RESULTS}/tables/lomp_vs_baselines.tex",
    log:
        f"{RESULTS}/logs/tables/lomp_vs_baselines.log",
    params:
        methods=BASELINE_METHODS,
    script:
        "../../scripts/table_baselines.py"


if BASELINE_TASKS:
    FINAL_OUTPUTS += expand(
        f"{RESULTS}/tables/lomp_vs_baselines.{{ext}}", ext=["csv", "md", "tex"]
    )
