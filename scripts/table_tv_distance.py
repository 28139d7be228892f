"""Rule `table_tv_distance`: TV distance between weight histograms of independently seeded runs."""

from prunelimit.runlog import rule_context
from prunelimit.statedict import prunable_weights  # torch-free: table jobs run without torch
from prunelimit.tables import tv_distance_table, write_table

with rule_context(snakemake.log[0]):
    p = snakemake.params
    n_seeds = len(p.seeds)
    runs = {}
    for i, task in enumerate(p.tasks):
        runs[task] = {p.base_seed: prunable_weights(snakemake.input.reference[i])}
        for j, seed in enumerate(p.seeds):
            runs[task][seed] = prunable_weights(snakemake.input.reseeded[i * n_seeds + j])
    out = snakemake.output
    write_table(tv_distance_table(runs, bins=p.bins), out.csv, out.md, out.tex, html=out.html,
                title=p.title)
