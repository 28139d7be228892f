"""Rule `fig_iterative_threshold`: paper Fig. 4 (top), theoretical threshold over iterative-pruning rounds."""

from prunelimit.figures.iterative_pruning import plot_iterative_threshold
from prunelimit.io import load_csv
from prunelimit.runlog import rule_context
from prunelimit.tables import by_task

with rule_context(snakemake.log[0]) as log:
    p, inp = snakemake.params, snakemake.input
    drawn = plot_iterative_threshold(by_task(p.tasks, inp.iterative, load_csv), snakemake.output, l2=p.l2)
    for task, arms in drawn.items():
        for arm, marks in arms.items():
            log.info("%s %s: final threshold %.4f at sparsity %.4f after %d rows", task, arm,
                     marks["final_theoretical_sparsity"], marks["final_sparsity"], marks["rounds"])
