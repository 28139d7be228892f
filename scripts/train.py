"""Rule `train`: train one task variant; resumes from its per-epoch checkpoint after a kill."""

from prunelimit.config import resolve_device
from prunelimit.data import load_tensors
from prunelimit.runlog import rule_context
from prunelimit.train import train_task

with rule_context(snakemake.log[0], snakemake.threads) as log:  # noqa: F821
    device = resolve_device(snakemake.params.device)  # noqa: F821
    data = load_tensors(snakemake.input.data, device)  # noqa: F821
    metrics = train_task(snakemake.params.spec, data, snakemake.output.model, snakemake.output.metrics,  # noqa: F821
                         checkpoint=snakemake.params.resume)  # noqa: F821
    log.info("test accuracy %.4f, ε %.4g, %.1f s", metrics["test_acc"], metrics["loss_std"], metrics["wall_time_s"])
