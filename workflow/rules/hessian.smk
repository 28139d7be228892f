# Hessian of each task's trained L1 model: its rows at the pruning levels (the zero-eigenvalue fraction f0,
# which SLQ's null mass is topped up to and the theory reads), the SLQ spectrum always, the exact spectrum
# for small models (src/prunelimit/hessian.py, hessian_rows.py, lanczos.py; entry points in stages.py).


rule hessian_rows:
    input:
        unpack(lambda w: trained(w.task)),
        data=dataset_of,
    output:
        f"{RESULTS}/hessian/{{task}}/hessian_rows.npz",
    log:
        f"{RESULTS}/logs/hessian/{{task}}_hessian_rows.log",
    benchmark:
        f"{RESULTS}/benchmarks/hessian/{{task}}_hessian_rows.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        theory=SETTINGS.theory,  # row levels and the zero-row threshold
        hessian=lambda w: SETTINGS.hessian(w.task),
        device=config["device"],
    script:
        "../../scripts/hessian_rows.py"


rule slq:
    input:
        unpack(lambda w: trained(w.task)),
        data=dataset_of,
        rows=f"{RESULTS}/hessian/{{task}}/hessian_rows.npz",
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
