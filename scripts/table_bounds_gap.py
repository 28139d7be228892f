"""Rule `table_bounds_gap`: kinematic lower/upper bounds and gap per task (SLQ, and exact where computed)."""

from prunelimit.io import load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import bounds_gap_table, by_task, write_table

with rule_context(snakemake.log[0]):
    predictions = by_task(snakemake.params.tasks, snakemake.input.prediction, load_json)
    out = snakemake.output
    write_table(bounds_gap_table(predictions), out.csv, out.md, out.tex, html=out.html,
                title=snakemake.params.title)
