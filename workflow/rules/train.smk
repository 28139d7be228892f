# Training: every task dense and with L1 (the L1 model feeds the theory and LOMP). The tables of the
# training runs (training, tv_distance) are TABLES entries in report.smk.


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
    resources:
        gpu=1,
    params:
        spec=lambda w: task_spec(config, w.task, w.variant),
        resume=lambda w: f"{RESULTS}/train/{w.task}/{w.variant}.resume.pt",
        device=config["device"],
    script:
        "../../scripts/train.py"


# A model trained again with another seed: the L1 model (the claim test, the weight-distribution
# stability table, the one-shot comparison) and the dense one (the one-shot comparison).
use rule train as train_reseeded with:
    output:
        model=f"{RESULTS}/train/{{task}}/{{variant}}_seed{{seed}}/model.pt",
        metrics=f"{RESULTS}/train/{{task}}/{{variant}}_seed{{seed}}/metrics.json",
    log:
        f"{RESULTS}/logs/train/{{task}}_{{variant}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{task}}_{{variant}}_seed{{seed}}.tsv"
    wildcard_constraints:
        variant="dense|l1",
        seed=r"\d+",
    params:
        spec=lambda w: task_spec(config, w.task, w.variant, seed=int(w.seed)),
        resume=lambda w: f"{RESULTS}/train/{w.task}/{w.variant}_seed{w.seed}.resume.pt",
        device=config["device"],
