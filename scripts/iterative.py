"""Rule `iterative`: prune to the theoretical threshold, retrain, recompute it; with and without l2."""

from prunelimit.pruning_stages import iterative_task
from prunelimit.runlog import rule_context

with rule_context(snakemake.log[0], snakemake.threads) as log:
    inp, p = snakemake.input, snakemake.params
    rows = iterative_task(model_path=inp.model, metrics_path=inp.metrics, data_path=inp.data,
                          out_path=snakemake.output.csv, iterative_settings=p.iterative, hessian_settings=p.hessian,
                          theory_settings=p.theory, device=p.device)
    for arm in ("no_l2", "l2"):
        last = [row for row in rows if row["arm"] == arm][-1]
        log.info("%s: final sparsity %.4f, threshold %.4f", arm, last["sparsity"], last["theoretical_sparsity"])
