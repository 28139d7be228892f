"""Rule `table_training`: the training table from every metrics.json."""

from prunelimit.io import load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import training_table, write_table

with rule_context(snakemake.log[0]):
    table = training_table([load_json(p) for p in snakemake.input.metrics])
    out = snakemake.output
    write_table(table, out.csv, out.md, out.tex, html=out.html, title=snakemake.params.title)
