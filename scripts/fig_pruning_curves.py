"""Rule `fig_pruning_curves`: paper Fig. 3, normalised test loss and accuracy vs sparsity, all tasks."""

from prunelimit.figures.pruning_curves import plot_pruning_curves
from prunelimit.io import load_csv, load_json
from prunelimit.runlog import rule_context
from prunelimit.tables import by_task

with rule_context(snakemake.log[0]) as log:
    inp, p = snakemake.input, snakemake.params
    tasks = p.tasks
    # the claim test's other training seeds (each task's own seed is the main study's files above)
    other_seeds = {}
    for task, seed, curve, pred, act in zip(p.claim["tasks"], p.claim["seeds"], inp.seed_curve, inp.seed_prediction,
                                            inp.seed_actual, strict=True):
        if seed != p.own_seed[task]:
            other_seeds.setdefault(task, []).append((load_csv(curve), load_json(pred), load_json(act)))
    drawn = plot_pruning_curves(by_task(tasks, inp.curve, load_csv), by_task(tasks, inp.prediction, load_json),
                                by_task(tasks, inp.actual, load_json), snakemake.output, other_seeds=other_seeds)
    for task, marks in drawn.items():
        log.info("%s: predicted %.4f, bounds [%.4f, %.4f], actual %.4f", task, marks["predicted_sparsity"],
                 marks["lower_sparsity"], marks["upper_sparsity"], marks["actual_sparsity"])
