"""Rule `fig_theory_vs_actual`: paper Fig. 5, prediction curve w²(R)/D vs the actual (R(s), s) curve."""

from prunelimit.figures.theory_vs_actual import plot_theory_vs_actual
from prunelimit.io import load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import by_task

with rule_context(snakemake.log[0]) as log:
    inp, tasks = snakemake.input, snakemake.params.tasks
    drawn = plot_theory_vs_actual(by_task(tasks, inp.prediction, load_json), by_task(tasks, inp.actual, load_json),
                                  snakemake.output)
    for task, marks in drawn.items():
        log.info("%s: crossing at R = %.4g, s = %.4f; actual s = %.4f", task, marks["R_at_prediction"],
                 marks["predicted_sparsity"], marks["actual_sparsity"])
