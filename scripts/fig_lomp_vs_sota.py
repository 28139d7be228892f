"""Rule `fig_lomp_vs_sota`: one-shot accuracy against sparsity for every method and starting model, the
predicted limit of the L1 model marked."""

import pandas as pd

from prunelimit.figures.lomp_vs_sota import plot_lomp_vs_sota
from prunelimit.io import load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import oneshot_rows

with rule_context(snakemake.log[0]) as log:
    rows, unpruned = oneshot_rows([load_json(path) for path in snakemake.input.results])
    results = pd.DataFrame(rows)
    predicted = {task: load_json(path)["predicted_sparsity"]
                 for task, path in zip(snakemake.params.tasks, snakemake.input.prediction, strict=True)}
    drawn = plot_lomp_vs_sota(results, predicted, unpruned, snakemake.output)
    for task, series in drawn.items():
        log.info("%s: %s", task, {k: [round(v, 1) for v in vals] if isinstance(vals, list) else round(vals, 3)
                                  for k, vals in series.items()})
