"""Rule `table_baselines`: LOMP vs dense, Rare Gems, IMP, Smart-Ratio (test accuracy, mean ± std over seeds)."""

from prunelimit.io import load_csv, load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import lomp_rows_from_sweep, lomp_vs_baselines_table, write_table

with rule_context(snakemake.log[0]):
    p = snakemake.params
    results = [load_json(path) for path in snakemake.input.results]
    for task, curve in zip(p.lomp_tasks, snakemake.input.lomp_curves):  # LOMP: the sweep's rows
        results += lomp_rows_from_sweep(task, load_csv(curve), p.sparsities, p.lomp_seeds[task])
    dense = {m["task"]: m["test_acc"] for m in map(load_json, snakemake.input.dense)}
    table = lomp_vs_baselines_table(results, dense or None, methods=p.methods)
    out = snakemake.output
    write_table(table, out.csv, out.md, out.tex, html=out.html, title=p.title)
