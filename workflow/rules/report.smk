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
