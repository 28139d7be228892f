"""Rule `table_tv_distance`: TV distance between weight histograms of independently seeded runs."""

import torch

from prunelimit.runlog import rule_context
from prunelimit.tables import tv_distance_table, write_table


def prunable_weights(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    # prunable = conv/linear weights: the >=2-D tensors named *.weight (BN weights are 1-D)
    return torch.cat([v.flatten() for k, v in state.items() if k.endswith("weight") and v.dim() >= 2]).numpy()


with rule_context(snakemake.log[0]):  # noqa: F821
    p = snakemake.params  # noqa: F821
    n_seeds = len(p.seeds)
    runs = {}
    for i, task in enumerate(p.tasks):
        runs[task] = {p.base_seed: prunable_weights(snakemake.input.reference[i])}  # noqa: F821
        for j, seed in enumerate(p.seeds):
            runs[task][seed] = prunable_weights(snakemake.input.reseeded[i * n_seeds + j])  # noqa: F821
    out = snakemake.output  # noqa: F821
    write_table(tv_distance_table(runs, bins=p.bins), out.csv, out.md, out.tex)
