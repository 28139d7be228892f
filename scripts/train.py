"""Rule `train`: train one task variant; resumes from its per-epoch checkpoint after a kill."""

from prunelimit.config import resolve_device
from prunelimit.data import load_tensors
from prunelimit.runlog import rule_context
from prunelimit.train import train_task

with rule_context(snakemake.log[0], snakemake.threads) as log:
    device = resolve_device(snakemake.params.device)
    data = load_tensors(snakemake.input.data, device)
    metrics = train_task(snakemake.params.spec, data, snakemake.output.model, snakemake.output.metrics,
                         checkpoint=snakemake.params.resume)
    log.info("test accuracy %.4f, ε %.4g, %.1f s", metrics["test_acc"], metrics["loss_std"], metrics["wall_time_s"])
