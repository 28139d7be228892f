# prunelimit: reproduce "How Sparse Can We Prune A Deep Network: A Fundamental Limit Perspective"
# (Zhang, Zhang, Sun, Liu; NeurIPS 2024; arXiv 2306.05857).
#
#   snakemake --cores all                                        # the mini preset (config.yaml)
#   snakemake --cores all --configfile workflow/presets/paper.yaml   # the paper's 8 tasks
#   snakemake --cores all results/mini/tables/training.md        # one target and what it needs


from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the default preset. A preset given with --configfile is complete and replaces it
# (Snakemake would otherwise deep-merge the two and the mini tasks would leak into the paper DAG).
if not workflow.overwrite_configfiles:

    configfile: f"{workflow.basedir}/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/hessian.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/oneshot.smk"
include: "workflow/rules/regime.smk"
include: "workflow/rules/claim.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),


rule figures:
    """Partial target: every figure of the preset (snakemake figures)."""
    input:
        all_figure_paths(),
    localrule: True


rule tables:
    """Partial target: every table of the preset (snakemake tables)."""
    input:
        all_table_paths(),
    localrule: True
