"""Rule `magnitude_scaling`: predicted and actual pruning threshold for weights scaled by c = 1…5."""

from prunelimit.runlog import rule_context
from prunelimit.stages import scaling_task

with rule_context(snakemake.log[0], snakemake.threads) as log:
    inp = snakemake.input
    out = scaling_task(model_path=inp.model, metrics_path=inp.metrics, data_path=inp.data, slq_path=inp.slq,
                       prediction_path=inp.prediction, out_path=snakemake.output[0],
                       hessian_settings=snakemake.params.hessian, theory_settings=snakemake.params.theory,
                       prune_settings=snakemake.params.prune, device=snakemake.params.device)
    for row in out["scales"]:
        log.info("scale %g: predicted sparsity %.4f, actual %.4f", row["scale"], row["predicted_sparsity"],
                 row.get("actual_sparsity", float("nan")))
