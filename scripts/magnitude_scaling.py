"""Rule `magnitude_scaling`: predicted and actual pruning threshold for weights scaled by c = 1…5."""

from prunelimit.runlog import rule_context
from prunelimit.tasks import scaling_task

with rule_context(snakemake.log[0], snakemake.threads) as log:  # noqa: F821
    inp = snakemake.input  # noqa: F821
    out = scaling_task(model_path=inp.model, metrics_path=inp.metrics, data_path=inp.data, slq_path=inp.slq,
                       prediction_path=inp.prediction, out_path=snakemake.output[0],  # noqa: F821
                       hessian_cfg=snakemake.params.hessian, theory_cfg=snakemake.params.theory,  # noqa: F821
                       device=snakemake.params.device)  # noqa: F821
    for row in out["scales"]:
        log.info("scale %g: predicted sparsity %.4f, actual %.4f", row["scale"], row["predicted_sparsity"],
                 row.get("actual_sparsity", float("nan")))
