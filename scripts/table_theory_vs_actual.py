"""Rule `table_theory_vs_actual`: predicted vs actual threshold, their difference and the bounds check."""

from prunelimit.io import load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import by_task, theory_vs_actual_table, write_table

with rule_context(snakemake.log[0]) as log:
    inp, tasks = snakemake.input, snakemake.params.tasks
    table = theory_vs_actual_table(by_task(tasks, inp.prediction, load_json), by_task(tasks, inp.actual, load_json))
    out = snakemake.output
    write_table(table, out.csv, out.md, out.tex, html=out.html,
                title=snakemake.params.title)
    for row in table.itertuples():
        log.info("%s: predicted %.4f, actual %.4f, difference %+.4f, %s", row.task, row.predicted_sparsity,
                 row.actual_sparsity, row.difference, row.verdict)
