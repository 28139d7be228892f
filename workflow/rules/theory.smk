# Theory: Hessian rows (zero-eigenvalue fraction f0), the predicted pruning threshold with its
# kinematic bounds, and the weight-magnitude scaling experiment (src/prunelimit/theory.py).


def theory_inputs(wildcards):
    """Trained L1 model, its data, SLQ spectrum and Hessian rows; the exact spectrum where one exists."""
    base = {
        **trained(wildcards.task),
        "data": dataset_of(wildcards),
        "slq": f"{RESULTS}/hessian/{wildcards.task}/slq.npz",
        "rows": f"{RESULTS}/theory/{wildcards.task}/hessian_rows.npz",
    }
    if wildcards.task in exact_tasks():
        base["exact"] = f"{RESULTS}/hessian/{wildcards.task}/exact.npz"
    return base


rule hessian_rows:
    input:
        unpack(lambda w: trained(w.task)),
        data=dataset_of,
    output:
        f"{RESULTS}/theory/{{task}}/hessian_rows.npz",
    log:
        f"{RESULTS}/logs/theory/{{task}}_hessian_rows.log",
    benchmark:
        f"{RESULTS}/benchmarks/theory/{{task}}_hessian_rows.tsv"
    threads: 1
    resources:
        gpu=1,
    params:
        hessian=config["hessian"],
        theory=config["theory"],
        device=config.get("device", "auto"),
    script:
        "../../scripts/hessian_rows.py"


rule theory:
    input:
        unpack(theory_inputs),
    output:
        report(
            f"{RESULTS}/theory/{{task}}/prediction.json",
            caption="../report/theory_prediction.rst",
            category="Theory",
        ),
    log:
        f"{RESULTS}/logs/theory/{{task}}_prediction.log",
    benchmark:
        f"{RESULTS}/benchmarks/theory/{{task}}_prediction.tsv"
    threads: 1
    params:
        hessian=config["hessian"],
        theory=config["theory"],
        device=config.get("device", "auto"),
    script:
        "../../scripts/theory.py"


rule magnitude_scaling:
    input:
        unpack(lambda w: trained(w.task)),
        data=dataset_of,
        slq=f"{RESULTS}/hessian/{{task}}/slq.npz",
        prediction=f"{RESULTS}/theory/{{task}}/prediction.json",
    output:
        report(
            f"{RESULTS}/theory/{{task}}/magnitude_scaling.json",
            caption="../report/theory_scaling.rst",
            category="Theory",
        ),
    log:
        f"{RESULTS}/logs/theory/{{task}}_magnitude_scaling.log",
    benchmark:
        f"{RESULTS}/benchmarks/theory/{{task}}_magnitude_scaling.tsv"
    threads: 1
    resources:
        gpu=1,
    params:
        hessian=config["hessian"],
        theory=config["theory"],
        prune=config["prune"],
        device=config.get("device", "auto"),
    script:
        "../../scripts/magnitude_scaling.py"


FINAL_OUTPUTS += expand(
    f"{RESULTS}/theory/{{task}}/{{name}}",
    task=TASKS,
    name=["hessian_rows.npz", "prediction.json", "magnitude_scaling.json"],
)
