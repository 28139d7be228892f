"""Rule `fig_regime_map`: predicted vs actual pruning limit across L1 strength, from the regime-map table."""

from prunelimit.figures.regime_map import plot_regime_map
from prunelimit.io import load_csv
from prunelimit.runlog import rule_context

with rule_context(snakemake.log[0]) as log:
    drawn = plot_regime_map(load_csv(snakemake.input[0]), snakemake.output)
    for task, series in drawn.items():
        log.info("%s: %d points, predicted %s, actual %s", task, len(series["x"]),
                 [round(v, 3) for v in series["predicted_sparsity"]], [round(v, 3) for v in series["actual_sparsity"]])
