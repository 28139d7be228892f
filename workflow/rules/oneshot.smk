# LOMP against the optimal-brain-surgeon family (the paper's appendix table): every one-shot method of the
# registry (prunelimit.methods, comparison "oneshot") on each task's dense and L1 models, each training seed
# (library: prunelimit.baselines.oneshot_compare; table: prunelimit.tables.lomp_vs_sota_table, TABLES in
# report.smk).

ONESHOT = SETTINGS.oneshot
ONESHOT_TASKS = list(ONESHOT.tasks)
ONESHOT_SEEDS = [int(s) for s in ONESHOT.seeds]
ONESHOT_STARTS = list(ONESHOT.starts)
ONESHOT_RESULTS = expand(
    f"{RESULTS}/oneshot/{{task}}/{{start}}_seed{{seed}}.json",
    task=ONESHOT_TASKS,
    start=ONESHOT_STARTS,
    seed=ONESHOT_SEEDS,
)


rule oneshot:
    input:
        unpack(lambda w: {"data": dataset_of(w), **oneshot_model(w)}),
    output:
        f"{RESULTS}/oneshot/{{task}}/{{start}}_seed{{seed}}.json",
    log:
        f"{RESULTS}/logs/oneshot/{{task}}_{{start}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/oneshot/{{task}}_{{start}}_seed{{seed}}.tsv"
    wildcard_constraints:
        start="dense|l1",
        seed=r"\d+",
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        methods={name: ONESHOT.of(name) for name in ONESHOT.methods},
        sparsities=list(ONESHOT.sparsities),
        fisher=lambda w: ONESHOT.fisher(w.task),
        device=config["device"],
    script:
        "../../scripts/oneshot.py"
