"""Rule `fig_l2_vs_rare_gems`: paper Fig. 4 (bottom), iterative pruning with vs without l2, and Rare Gems."""

from collections import defaultdict

from prunelimit.figures.iterative_pruning import plot_l2_vs_rare_gems
from prunelimit.io import load_csv, load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import by_task

with rule_context(snakemake.log[0]) as log:
    inp, p = snakemake.input, snakemake.params
    rare_gems = defaultdict(list)
    for path in inp.rare_gems:
        result = load_json(path)
        rare_gems[result["task"]].append(result)
    drawn = plot_l2_vs_rare_gems(by_task(p.tasks, inp.iterative, load_csv), by_task(p.tasks, inp.curve, load_csv),
                                 rare_gems, snakemake.output, l2=p.l2)
    for task, marks in drawn.items():
        log.info("%s: %s", task, marks)
