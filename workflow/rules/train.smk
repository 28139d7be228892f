# Training: every task dense and with L1 (the L1 model feeds the theory and LOMP).


rule train:
    input:
        data=dataset_of,
    output:
        model=f"{RESULTS}/train/{{task}}/{{variant}}/model.pt",
        metrics=f"{RESULTS}/train/{{task}}/{{variant}}/metrics.json",
    log:
        f"{RESULTS}/logs/train/{{task}}_{{variant}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{task}}_{{variant}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        spec=lambda w: task_spec(config, w.task, w.variant),
        resume=lambda w: f"{RESULTS}/train/{w.task}/{w.variant}.resume.pt",
        device=config.get("device", "auto"),
    script:
        "../../scripts/train.py"


FINAL_OUTPUTS += expand(
    f"{RESULTS}/train/{{task}}/{{variant}}/model.pt", task=TASKS, variant=VARIANTS
)


rule train_reseeded:
    """The L1 model trained again with another seed (weight-distribution stability table)."""
    input:
        data=dataset_of,
    output:
        model=f"{RESULTS}/train/{{task}}/l1_seed{{seed}}/model.pt",
        metrics=f"{RESULTS}/train/{{task}}/l1_seed{{seed}}/metrics.json",
    log:
        f"{RESULTS}/logs/train/{{task}}_l1_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{task}}_l1_seed{{seed}}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
    params:
        spec=lambda w: task_spec(config, w.task, "l1", seed=int(w.seed)),
        resume=lambda w: f"{RESULTS}/train/{w.task}/l1_seed{w.seed}.resume.pt",
        device=config.get("device", "auto"),
    script:
        "../../scripts/train.py"
