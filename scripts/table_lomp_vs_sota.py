"""Rule `table_lomp_vs_sota`: LOMP against MP, WF, CBS and CHITA, one shot from the dense and the L1 models
(test accuracy, mean ± sd over training seeds; pruning and gradient times)."""

from prunelimit.io import load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import lomp_vs_sota_table, oneshot_rows, write_table

with rule_context(snakemake.log[0]) as log:
    p = snakemake.params
    runs = [load_json(path) for path in snakemake.input.results]
    rows, unpruned = oneshot_rows(runs)
    table = lomp_vs_sota_table(rows, unpruned, p.methods, p.starts, tasks=p.model_dataset)
    out = snakemake.output
    write_table(table, out.csv, out.md, out.tex, html=out.html, title=p.title)
    log.info("%d one-shot runs, %d rows", len(runs), len(table))
