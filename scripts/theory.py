"""Rule `theory`: predicted pruning threshold, kinematic bounds and curves of one task."""

from prunelimit.runlog import rule_context
from prunelimit.stages import theory_task

with rule_context(snakemake.log[0], snakemake.threads) as log:
    inp = snakemake.input
    out = theory_task(model_path=inp.model, metrics_path=inp.metrics, data_path=inp.data, slq_path=inp.slq,
                      rows_path=inp.rows, exact_path=inp.exact or None, out_path=snakemake.output[0],
                      hessian_settings=snakemake.params.hessian, theory_settings=snakemake.params.theory,
                      device=snakemake.params.device)
    log.info("epsilon %.4g (%s), f0 %.3f: predicted sparsity %.4f, kinematic bounds [%.4f, %.4f], gap %.4f",
             out["epsilon"], out["epsilon_source"], out["zero_fraction"], out["predicted_sparsity"],
             out["lower_sparsity"], out["upper_sparsity"], out["gap"])
    if "exact" in out:
        log.info("exact spectrum: predicted sparsity %.4f (SLQ - exact = %+.4f); without zero mass %.4f",
                 out["exact"]["same_zero_mass"]["predicted_sparsity"], out["exact"]["slq_minus_exact"],
                 out["exact"]["no_zero_mass"]["predicted_sparsity"])
