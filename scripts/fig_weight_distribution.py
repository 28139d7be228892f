"""Rule `fig_weight_distribution`: paper Figs. 2 and 8, log |w| histograms and threshold vs weight scale."""

from prunelimit.figures.weight_magnitude import load_prunable_weights, plot_weight_distribution
from prunelimit.io import load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import by_task

with rule_context(snakemake.log[0]) as log:
    inp, p = snakemake.input, snakemake.params
    weights, files = {}, iter(zip(inp.model, inp.metrics))
    for task in p.tasks:  # inputs are ordered task-major, variant-minor
        weights[task] = {variant: load_prunable_weights(*next(files)) for variant in p.variants}
    drawn = plot_weight_distribution(weights, by_task(p.tasks, inp.prediction, load_json),
                                     by_task(p.tasks, inp.actual, load_json), by_task(p.tasks, inp.scaling, load_json),
                                     snakemake.output)
    for task, marks in drawn.items():
        log.info("%s: |w| cut log10 %.3f (predicted), %.3f (actual); exact zeros %s", task,
                 marks["cut_predicted_log10"], marks["cut_actual_log10"], marks["zero_weights"])
