"""Rule `hessian_rows`: Hessian-row L1 norms at the pruning-threshold weights, and f₀."""

from prunelimit.runlog import rule_context
from prunelimit.tasks import rows_task

with rule_context(snakemake.log[0], snakemake.threads) as log:  # noqa: F821
    rows = rows_task(model_path=snakemake.input.model, metrics_path=snakemake.input.metrics,  # noqa: F821
                     data_path=snakemake.input.data, out_path=snakemake.output[0],  # noqa: F821
                     hessian_cfg=snakemake.params.hessian, theory_cfg=snakemake.params.theory,  # noqa: F821
                     device=snakemake.params.device, progress=True)  # noqa: F821
    log.info("%d rows, %d below %.0e: zero-eigenvalue fraction f0 = %.3f", len(rows.l1_norms), rows.zero_rows,
             rows.zero_threshold, rows.zero_fraction)
