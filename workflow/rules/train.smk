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
    params:
        spec=lambda w: task_spec(config, w.task, w.variant),
        resume=lambda w: f"{RESULTS}/train/{w.task}/{w.variant}.resume.pt",
        device=config.get("device", "auto"),
    threads: 1
    resources:
        gpu=1,
    script:
        "../../scripts/train.py"


FINAL_OUTPUTS += expand(f"{RESULTS}/train/{{task}}/{{variant}}/model.pt", task=TASKS, variant=VARIANTS)
