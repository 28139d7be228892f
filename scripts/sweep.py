"""Rule `sweep` / `sweep_dense`: one-shot magnitude pruning on the 0.1% grid and the actual thresholds."""

from prunelimit.config import resolve_device
from prunelimit.data import load_tensors
from prunelimit.io import save_json
from prunelimit.prune import CURVE_COLUMNS, save_rows_csv, sweep_and_threshold
from prunelimit.runlog import rule_context
from prunelimit.train import load_trained

with rule_context(snakemake.log[0], snakemake.threads) as log:
    device = resolve_device(snakemake.params.device)
    data = load_tensors(snakemake.input.data, device)
    model, meta = load_trained(snakemake.input.model, snakemake.input.metrics, device)
    settings = snakemake.params.prune
    curve, actual = sweep_and_threshold(model, data, settings, train_every=settings.train_every, progress=True)
    actual.update(task=meta["task"], variant=meta["variant"], model_test_acc=meta["test_acc"])
    save_rows_csv(curve, snakemake.output.curve, CURVE_COLUMNS)
    save_json(actual, snakemake.output.actual)
    log.info("%s/%s: actual threshold %.3f (%s), by tolerance %s, dense acc %.4f", meta["task"], meta["variant"],
             actual["actual_sparsity"], actual["actual_criterion"], actual["tolerance_sparsity"],
             actual["dense_test_acc"])
