"""Rule `train`: train one task variant; resumes from its per-epoch checkpoint after a kill."""

from prunelimit.pruning_stages import train_task
from prunelimit.runlog import rule_context

with rule_context(snakemake.log[0], snakemake.threads) as log:
    metrics = train_task(spec=snakemake.params.spec, data_path=snakemake.input.data,
                         model_path=snakemake.output.model, metrics_path=snakemake.output.metrics,
                         device=snakemake.params.device, checkpoint=snakemake.params.resume)
    log.info("test accuracy %.4f, ε %.4g, %.1f s", metrics["test_acc"], metrics["loss_std"], metrics["wall_time_s"])
