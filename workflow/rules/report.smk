# Tables and figures of the paper, each its own target.


rule table_training:
    input:
        metrics=expand(f"{RESULTS}/train/{{task}}/{{variant}}/metrics.json", task=TASKS, variant=VARIANTS),
    output:
        csv=report(f"{RESULTS}/tables/training.csv", caption="../report/training.rst", category="Tables"),
        md=f"{RESULTS}/tables/training.md",
        tex=f"{RESULTS}/tables/training.tex",
    log:
        f"{RESULTS}/logs/tables/training.log",
    script:
        "../../scripts/table_training.py"


FINAL_OUTPUTS += expand(f"{RESULTS}/tables/training.{{ext}}", ext=["csv", "md", "tex"])


TV = config.get("tv_distance", {"tasks": [], "seeds": []})


rule table_tv_distance:
    input:
        reference=expand(f"{RESULTS}/train/{{task}}/l1/model.pt", task=TV["tasks"]),
        reseeded=expand(f"{RESULTS}/train/{{task}}/l1_seed{{seed}}/model.pt", task=TV["tasks"], seed=TV["seeds"]),
    output:
        csv=report(f"{RESULTS}/tables/tv_distance.csv", caption="../report/tv_distance.rst", category="Tables"),
        md=f"{RESULTS}/tables/tv_distance.md",
        tex=f"{RESULTS}/tables/tv_distance.tex",
    log:
        f"{RESULTS}/logs/tables/tv_distance.log",
    params:
        tasks=TV["tasks"],
        seeds=TV["seeds"],
        bins=TV.get("bins", 200),
        base_seed=config["train_defaults"]["seed"],
    script:
        "../../scripts/table_tv_distance.py"


if TV["tasks"]:
    FINAL_OUTPUTS += expand(f"{RESULTS}/tables/tv_distance.{{ext}}", ext=["csv", "md", "tex"])
