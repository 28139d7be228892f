"""Rule `oneshot`: one trained model (a task's dense or L1 model, one training seed) pruned by every configured
one-shot method (MP, WF, CBS, CHITA) at every target sparsity, no retraining."""

from prunelimit.pruning_stages import oneshot_task
from prunelimit.runlog import rule_context

with rule_context(snakemake.log[0], snakemake.threads) as log:
    p, w, inp = snakemake.params, snakemake.wildcards, snakemake.input
    rows = oneshot_task(model_path=inp.model, metrics_path=inp.metrics, data_path=inp.data,
                        out_path=snakemake.output[0], task=w.task, start=w.start, seed=int(w.seed),
                        methods=p.methods, sparsities=p.sparsities, fisher=p.fisher, device=p.device)
    for r in rows:
        log.info("%s (%s, seed %d) s=%g: test acc %.4f, %.2f s (+ %.2f s gradients)", r["method"], w.start,
                 r["seed"], r["sparsity"], r["test_acc"], r["wall_time_s"], r["gradient_time_s"])
