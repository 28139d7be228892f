# Datasets: one uint8 (or float32 for 1-D signals) array file per dataset.


rule dataset:
    output:
        f"{RESULTS}/data/{{dataset}}.npz",
    log:
        f"{RESULTS}/logs/data/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/data/{{dataset}}.tsv"
    retries: 2  # a dropped connection resumes from the .part file
    conda:
        "../../envs/torch.yaml"
    params:
        options=lambda w: config["datasets"][w.dataset],
        cache=f"{RESULTS}/data/downloads",
    script:
        "../../scripts/prepare_dataset.py"
