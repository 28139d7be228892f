"""Every rule `table_<name>` (workflow/rules/report.smk's TABLES): builds the table with its entry, named by
params.entry ("prunelimit.table_inputs:<name>_from_files", which reads the rule's input files and may log
what the table says), writes it as .csv, .md, booktabs .tex and the HTML page the report shows (titled
params.title), and logs its shape and columns."""

from prunelimit.entries import resolve
from prunelimit.runlog import rule_context
from prunelimit.tables import write_table

with rule_context(snakemake.log[0]) as log:
    log.info("built by %s", snakemake.params.entry)
    table = resolve(snakemake.params.entry)(snakemake.input, snakemake.params)
    out = snakemake.output
    write_table(table, out.csv, out.md, out.tex, html=out.html, title=snakemake.params.title)
    log.info("%d rows × %d columns: %s", *table.shape, ", ".join(map(str, table.columns)))
