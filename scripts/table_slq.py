"""Rule `table_slq`: the SLQ settings each spectrum was made with (runs, iterations, bins, σ²)."""

from prunelimit.runlog import rule_context
from prunelimit.spectrum import SLQResult
from prunelimit.tables import by_task, slq_table, write_table

with rule_context(snakemake.log[0]):
    p = snakemake.params
    runs = {}
    for task, result in by_task(p.tasks, snakemake.input.slq, SLQResult.load).items():
        q = result.quadrature()
        runs[task] = {"settings": result.settings, "steps": result.steps, "n_bins": p.n_bins[task],
                      "sigma2": p.sigma2[task], "lambda_min": q.lambda_min, "lambda_max": q.lambda_max}
    out = snakemake.output
    write_table(slq_table(runs), out.csv, out.md, out.tex, html=out.html,
                title=p.title)
