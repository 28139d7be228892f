"""Rule `regime_prediction`: the main study's hessian_rows, slq and theory rules in one job, for one point
of the regime map (same settings, same files)."""

from prunelimit.runlog import rule_context
from prunelimit.stages import prediction_chain_task

with rule_context(snakemake.log[0], snakemake.threads) as log:
    inp, out, params = snakemake.input, snakemake.output, snakemake.params
    rows, result, prediction = prediction_chain_task(
        model_path=inp.model, metrics_path=inp.metrics, data_path=inp.data, rows_path=out.rows, slq_path=out.slq,
        plot_path=out.plot, prediction_path=out.prediction, exact_path=inp.exact or None, title=params.title,
        hessian_settings=params.hessian, theory_settings=params.theory, device=params.device, progress=True)
    log.info("Hessian rows: %d, %d below %.0e: f0 = %.3f", len(rows.l1_norms), rows.zero_rows,
             rows.zero_threshold, rows.zero_fraction)
    conv = result.settings["convergence"]
    log.info("SLQ: D = %d, %d HVPs in %.1f s; steps tried per run %s, %s", result.dim, result.settings["products"],
             result.settings["elapsed_s"], [[steps for steps, _ in tried] for tried in conv["history"]],
             "capped" if conv["capped"] else "converged")
    log.info("epsilon %.4g, f0 %.3f: predicted sparsity %.4f, kinematic bounds [%.4f, %.4f]", prediction["epsilon"],
             prediction["zero_fraction"], prediction["predicted_sparsity"], prediction["lower_sparsity"],
             prediction["upper_sparsity"])
