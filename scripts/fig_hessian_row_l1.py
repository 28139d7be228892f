"""Rule `fig_hessian_row_l1`: paper Fig. 6, Hessian row L1 norms against the weight's magnitude rank."""

from prunelimit.figures.hessian import plot_hessian_row_l1
from prunelimit.io import load_npz
from prunelimit.runlog import rule_context
from prunelimit.tables import by_task

with rule_context(snakemake.log[0]) as log:
    rows = by_task(snakemake.params.tasks, snakemake.input.rows, load_npz)
    for task, marks in plot_hessian_row_l1(rows, snakemake.output).items():
        log.info("%s: f0 = %.3f over %d rows", task, marks["zero_fraction"], marks["n_rows"])
