"""Rules `regime_prediction`, `seed_prediction`: one model's Hessian rows, SLQ spectrum and prediction, in one job.

The library calls of the main study's hessian_rows, slq and theory rules, in that order, with the same
settings and to the same files. One job instead of three: at the mini preset's scale, starting a
job (Python and torch, ~1.5 s) cost about as much as a point's rows and prediction themselves.
"""

from prunelimit.figures.hessian import plot_hessian_spectrum
from prunelimit.runlog import rule_context
from prunelimit.stages import rows_task, slq_task, theory_task

with rule_context(snakemake.log[0], snakemake.threads) as log:
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    trained = {"model_path": inp.model, "metrics_path": inp.metrics, "data_path": inp.data,
               "hessian_settings": params.hessian, "theory_settings": params.theory, "device": params.device}
    rows = rows_task(out_path=out.rows, progress=True, **trained)
    log.info("Hessian rows: %d, %d below %.0e: f0 = %.3f", len(rows.l1_norms), rows.zero_rows,
             rows.zero_threshold, rows.zero_fraction)
    result = slq_task(rows_path=out.rows, out_path=out.slq, progress=True, **trained)
    plot_hessian_spectrum(result, out.plot, title=params.title, n_bins=params.hessian.n_bins,
                          sigma2=params.hessian.sigma2)
    conv = result.settings["convergence"]
    log.info("SLQ: D = %d, %d HVPs in %.1f s; steps tried per run %s, %s", result.dim, result.settings["products"],
             result.settings["elapsed_s"], [[steps for steps, _ in tried] for tried in conv["history"]],
             "capped" if conv["capped"] else "converged")
    prediction = theory_task(slq_path=out.slq, rows_path=out.rows, exact_path=inp.exact or None,
                             out_path=out.prediction, **trained)
    log.info("epsilon %.4g, f0 %.3f: predicted sparsity %.4f, kinematic bounds [%.4f, %.4f]", prediction["epsilon"],
             prediction["zero_fraction"], prediction["predicted_sparsity"], prediction["lower_sparsity"],
             prediction["upper_sparsity"])
