"""Rule `table_theory_vs_actual`: predicted vs actual limit per training seed, mean ± sd, verdict from the spread."""

from prunelimit.claim import summary, theory_vs_actual_table
from prunelimit.io import load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import write_table

with rule_context(snakemake.log[0]) as log:
    inp, p = snakemake.input, snakemake.params
    runs = [{"task": task, "seed": seed, "prediction": load_json(pred), "actual": load_json(act),
             "metrics": load_json(met)}
            for task, seed, pred, act, met in zip(p.tasks, p.seeds, inp.prediction, inp.actual, inp.metrics,
                                                  strict=True)]
    table = theory_vs_actual_table(runs)
    out = snakemake.output
    write_table(table, out.csv, out.md, out.tex, html=out.html, title=p.title)
    for row in summary(table).itertuples():
        log.info("%s (%d seeds): predicted %.4f ± %.4f, actual %.4f ± %.4f, difference %+.4f ± %.4f; naive %.4f; %s",
                 row.task, row.n_seeds, row.predicted_sparsity, row.predicted_sparsity_sd, row.actual_sparsity,
                 row.actual_sparsity_sd, row.difference, row.difference_sd, row.naive_sparsity, row.verdict)
