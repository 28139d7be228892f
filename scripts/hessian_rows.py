"""Rule `hessian_rows`: Hessian-row L1 norms at the pruning-threshold weights, and f₀."""

from prunelimit.runlog import rule_context
from prunelimit.stages import rows_task

with rule_context(snakemake.log[0], snakemake.threads) as log:
    rows = rows_task(model_path=snakemake.input.model, metrics_path=snakemake.input.metrics,
                     data_path=snakemake.input.data, out_path=snakemake.output[0],
                     hessian_settings=snakemake.params.hessian, theory_settings=snakemake.params.theory,
                     device=snakemake.params.device, progress=True)
    log.info("%d rows, %d below %.0e: zero-eigenvalue fraction f0 = %.3f", len(rows.l1_norms), rows.zero_rows,
             rows.zero_threshold, rows.zero_fraction)
