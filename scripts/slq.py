"""Rule `slq`: the SLQ Hessian spectrum of a trained (L1) model, converged on its predicted threshold."""

from prunelimit.runlog import rule_context
from prunelimit.stages import slq_task

with rule_context(snakemake.log[0], snakemake.threads) as log:
    inp = snakemake.input
    result = slq_task(model_path=inp.model, metrics_path=inp.metrics, data_path=inp.data, rows_path=inp.rows,
                      out_path=snakemake.output.slq, plot_path=snakemake.output.plot, title=snakemake.wildcards.task,
                      hessian_settings=snakemake.params.hessian, theory_settings=snakemake.params.theory,
                      device=snakemake.params.device, progress=True)
    q = result.quadrature()
    conv = result.settings["convergence"]
    log.info("D = %d, λ in [%.4g, %.4g], tr H ≈ %.4g, %d HVPs in %.1f s", result.dim, q.lambda_min, q.lambda_max,
             q.trace_f(lambda lam: lam), result.settings["products"], result.settings["elapsed_s"])
    for run, (tried, ok) in enumerate(zip(conv["history"], conv["converged"])):
        log.info("run %d: predicted sparsity by steps %s: %s", run, tried, "converged" if ok else "CAPPED")
