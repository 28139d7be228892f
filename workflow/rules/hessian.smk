# Hessian spectrum of each task's trained L1 model: SLQ always, the exact spectrum for small models
# (src/prunelimit/hessian.py).
rule slq:
    input:
        unpack(lambda w: trained(w.task)),
        data=dataset_of,
        rows=f"{RESULTS}/theory/{{task}}/hessian_rows.npz",
    output:
        slq=f"{RESULTS}/hessian/{{task}}/slq.npz",
        plot=report(
            f"{RESULTS}/hessian/{{task}}/spectrum.png",
            caption="../report/hessian_spectrum.rst",
            category="Hessian spectrum",
            subcategory="{task}",
        ),
    log:
        f"{RESULTS}/logs/hessian/{{task}}_slq.log",
    benchmark:
        f"{RESULTS}/benchmarks/hessian/{{task}}_slq.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        hessian=lambda w: SETTINGS.hessian(w.task),
        # ε (the convergence functional needs it); f₀ arrives as the Hessian-rows file
        theory=SETTINGS.theory,
        device=config["device"],
    script:
        "../../scripts/slq.py"


rule exact_spectrum:
    input:
        unpack(lambda w: trained(w.task)),
        data=dataset_of,
    output:
        f"{RESULTS}/hessian/{{task}}/exact.npz",
    log:
        f"{RESULTS}/logs/hessian/{{task}}_exact.log",
    benchmark:
        f"{RESULTS}/benchmarks/hessian/{{task}}_exact.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        device=config["device"],
        hessian=lambda w: SETTINGS.hessian(w.task),
    script:
        "../../scripts/exact_spectrum.py"
