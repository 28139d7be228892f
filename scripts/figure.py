"""Every rule `fig_<name>` (workflow/rules/report.smk's FIGURES): calls the figure's draw function, named by
params.entry ("prunelimit.figures.<module>:draw_<name>"), with the rule's input, params and output, and logs
the numbers it drew, one line per task."""

from prunelimit.entries import resolve
from prunelimit.figures import summary_lines
from prunelimit.runlog import rule_context

with rule_context(snakemake.log[0]) as log:
    log.info("drawn by %s", snakemake.params.entry)
    drawn = resolve(snakemake.params.entry)(snakemake.input, snakemake.params, snakemake.output)
    for line in summary_lines(drawn):
        log.info("%s", line)
