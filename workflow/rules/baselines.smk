# LOMP against IMP, Rare Gems and Smart-Ratio at the configured sparsities and seeds
# (library: prunelimit.baselines; table: prunelimit.tables.lomp_vs_baselines_table, TABLES in report.smk).
import re

from prunelimit.methods import method as registered_method
from prunelimit.methods import names as method_names

BASELINES = SETTINGS.baselines
BASELINE_METHODS = list(BASELINES.methods)
# wildcard tag -> sparsity, e.g. "0.5" -> 0.5
SPARSITY_TAGS = {f"{float(s):g}": float(s) for s in BASELINES.sparsities}
SEEDS = [int(s) for s in BASELINES.seeds]


wildcard_constraints:
    method="|".join(BASELINE_METHODS),
    sparsity="|".join(re.escape(tag) for tag in SPARSITY_TAGS),
    seed=r"\d+",


# LOMP's rows are the one-shot sweeps of the L1 models (prune/<task>/curve.csv, and each claim seed's):
# the same pruning and evaluation, so the table reads them instead of computing them again. Its seeds
# are the claim test's training seeds.
LOMP_TASKS = BASELINE_TASKS if "lomp" in BASELINE_METHODS else []
BASELINE_RESULTS = [
    f"{RESULTS}/baselines/{method}/{task}/s{tag}_seed{seed}.json"
    for task in BASELINE_TASKS
    for method in BASELINE_METHODS
    if registered_method(method).runs != "sweep"
    for tag in SPARSITY_TAGS
    for seed in SEEDS
]


rule baseline:
    input:
        data=dataset_of,
    output:
        f"{RESULTS}/baselines/{{method}}/{{task}}/s{{sparsity}}_seed{{seed}}.json",
    log:
        f"{RESULTS}/logs/baselines/{{method}}_{{task}}_s{{sparsity}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/baselines/{{method}}_{{task}}_s{{sparsity}}_seed{{seed}}.tsv"
    wildcard_constraints:
        # the registry's methods with one job per sparsity and seed (prunelimit.methods)
        method="|".join(method_names("baselines", runs="per_sparsity")),
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        method=lambda w: w.method,
        spec=lambda w: baseline_spec(w.task),
        options=lambda w: BASELINES.of(w.method),
        device=config["device"],
    script:
        "../../scripts/baseline.py"


# IMP: one trajectory per (task, seed) passes through every target sparsity (see baselines/imp.py).
rule baseline_imp:
    input:
        unpack(
            lambda w: {
                "data": dataset_of(w),
                **(
                    trained(w.task, "dense")
                    if imp_takes_over_dense(w.task, w.seed)
                    else {}
                ),
            }
        ),
    output:
        expand(
            f"{RESULTS}/baselines/imp/{{{{task}}}}/s{{sparsity}}_seed{{{{seed}}}}.json",
            sparsity=SPARSITY_TAGS,
        ),
    log:
        f"{RESULTS}/logs/baselines/imp_{{task}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/baselines/imp_{{task}}_seed{{seed}}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        method="imp",
        takes_over_dense=lambda w: imp_takes_over_dense(w.task, w.seed),
        sparsities=list(SPARSITY_TAGS.values()),
        spec=lambda w: baseline_spec(w.task),
        options=BASELINES.of("imp"),
        device=config["device"],
    script:
        "../../scripts/baseline.py"
