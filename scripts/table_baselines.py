"""Rule `table_baselines`: LOMP vs dense, Rare Gems, IMP, Smart-Ratio (test accuracy, mean ± std over seeds)."""

from prunelimit.io import load_csv, load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import lomp_rows_from_sweep, lomp_vs_baselines_table, write_table

with rule_context(snakemake.log[0]):
    p = snakemake.params
    results = [load_json(path) for path in snakemake.input.results]
    lomp_runs = zip(p.lomp["tasks"], p.lomp["seeds"], snakemake.input.lomp_curves, strict=True)
    for task, seed, curve in lomp_runs:  # LOMP: the sweeps' rows, one per claim seed
        results += lomp_rows_from_sweep(task, load_csv(curve), p.sparsities, seed, p.lomp_epochs[task])
    dense = {m["task"]: m["test_acc"] for m in map(load_json, snakemake.input.dense)}
    table = lomp_vs_baselines_table(results, dense or None, methods=p.methods)
    out = snakemake.output
    write_table(table, out.csv, out.md, out.tex, html=out.html, title=p.title)
