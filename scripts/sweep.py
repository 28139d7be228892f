"""Rule `sweep` / `sweep_dense`: one-shot magnitude pruning on the 0.1% grid and the actual thresholds."""

from prunelimit.pruning_stages import sweep_task
from prunelimit.runlog import rule_context

with rule_context(snakemake.log[0], snakemake.threads) as log:
    inp = snakemake.input
    actual = sweep_task(model_path=inp.model, metrics_path=inp.metrics, data_path=inp.data,
                        curve_path=snakemake.output.curve, actual_path=snakemake.output.actual,
                        prune_settings=snakemake.params.prune, device=snakemake.params.device)
    log.info("%s/%s: actual threshold %.3f (%s), by tolerance %s, dense acc %.4f", actual["task"], actual["variant"],
             actual["actual_sparsity"], actual["actual_criterion"], actual["tolerance_sparsity"],
             actual["dense_test_acc"])
