"""Rules `html_<table>`: a table's .csv rendered as an HTML page, the form the Snakemake report shows inline."""

from prunelimit.runlog import rule_context
from prunelimit.tables import write_table_html

with rule_context(snakemake.log[0]) as log:  # noqa: F821
    table = write_table_html(snakemake.input[0], snakemake.output[0], snakemake.params.title)  # noqa: F821
    log.info("%s: %d rows, %d columns", snakemake.output[0], len(table), len(table.columns))  # noqa: F821
