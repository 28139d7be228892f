"""Rule `fig_magnitude_scaling`: paper Fig. 7, prediction vs actual threshold for weights scaled ×1…×5."""

from prunelimit.figures.weight_magnitude import plot_magnitude_scaling
from prunelimit.io import load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import by_task

with rule_context(snakemake.log[0]) as log:
    scalings = by_task(snakemake.params.tasks, snakemake.input.scaling, load_json)
    for task, per_scale in plot_magnitude_scaling(scalings, snakemake.output).items():
        for scale, (predicted, actual) in per_scale.items():
            log.info("%s x%g: predicted %.4f, actual %.4f", task, scale, predicted, actual)
