# Theory: the predicted pruning threshold with its kinematic bounds, and the weight-magnitude scaling
# experiment (src/prunelimit/gaussian_width.py, epsilon.py, magnitude_scaling.py; entry points in stages.py).

# the settings of the three theory rules (and their regime-map copies)
THEORY_PARAMS = {
    "hessian": lambda w: SETTINGS.hessian(w.task),
    "theory": SETTINGS.theory,
    "device": config["device"],
}


rule theory:
    input:
        unpack(lambda w: trained(w.task)),
        data=dataset_of,
        slq=f"{RESULTS}/hessian/{{task}}/slq.npz",
        rows=f"{RESULTS}/hessian/{{task}}/hessian_rows.npz",
        # the exact spectrum where the hessian rules make one (small models): shows the SLQ error
        exact=lambda w: (
            f"{RESULTS}/hessian/{w.task}/exact.npz" if w.task in EXACT_TASKS else []
        ),
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
    conda:
        "../../envs/torch.yaml"
    params:
        **THEORY_PARAMS,
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
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        **THEORY_PARAMS,
        prune=SETTINGS.prune,
    script:
        "../../scripts/magnitude_scaling.py"
