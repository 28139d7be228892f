"""Rule `table_regime_map`: per task and L1 strength, the predicted and the actual pruning limit."""

from prunelimit.io import load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import regime_map_table, write_table

with rule_context(snakemake.log[0]) as log:
    inp, params = snakemake.input, snakemake.params
    files = list(zip(params.tasks, params.multipliers, inp.metrics, inp.prediction, inp.actual))
    table = regime_map_table([{"task": task, "multiplier": mult, "metrics": load_json(metrics),
                               "prediction": load_json(prediction), "actual": load_json(actual)}
                              for task, mult, metrics, prediction, actual in files])
    out = snakemake.output
    write_table(table, out.csv, out.md, out.tex, html=out.html,
                title=params.title)
    for row in table.itertuples():
        log.info("%s x%g: shrinkage %.4g, |w|<1e-3 share %.3f, acc %.4f: predicted %.4f (%s) [%.4f, %.4f], "
                 "actual %.4f (%s)", row.task, row.l1_multiplier, row.l1_shrinkage, row.small_weight_share,
                 row.test_acc, row.predicted_sparsity, row.spectrum, row.lower_sparsity, row.upper_sparsity,
                 row.actual_sparsity, row.actual_criterion)
