# One-shot magnitude pruning curves with the actual threshold, and iterative pruning with the
# theoretical threshold recomputed every round (library: prunelimit.prune).


rule sweep:
    input:
        unpack(lambda w: trained(w.task)),
        data=dataset_of,
    output:
        curve=f"{RESULTS}/prune/{{task}}/curve.csv",
        actual=f"{RESULTS}/prune/{{task}}/actual.json",
    log:
        f"{RESULTS}/logs/prune/sweep_{{task}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prune/sweep_{{task}}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        prune=SETTINGS.prune,
        device=config["device"],
    script:
        "../../scripts/sweep.py"


# The same sweep on the dense model (the "dense vs L1" curves).
use rule sweep as sweep_dense with:
    input:
        unpack(lambda w: trained(w.task, "dense")),
        data=dataset_of,
    output:
        curve=f"{RESULTS}/prune/{{task}}/curve_dense.csv",
        actual=f"{RESULTS}/prune/{{task}}/actual_dense.json",
    log:
        f"{RESULTS}/logs/prune/sweep_{{task}}_dense.log",
    benchmark:
        f"{RESULTS}/benchmarks/prune/sweep_{{task}}_dense.tsv"


rule iterative:
    input:
        unpack(lambda w: trained(w.task)),
        data=dataset_of,
    output:
        csv=f"{RESULTS}/prune/{{task}}/iterative.csv",
    log:
        f"{RESULTS}/logs/prune/iterative_{{task}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prune/iterative_{{task}}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        iterative=SETTINGS.iterative,
        hessian=lambda w: SETTINGS.hessian(w.task),
        theory=SETTINGS.theory,
        device=config["device"],
    script:
        "../../scripts/iterative.py"
