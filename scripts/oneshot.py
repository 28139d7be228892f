"""Rule `oneshot`: one trained model (a task's dense or L1 model, one training seed) pruned by every configured
one-shot method (MP, WF, CBS, CHITA) at every target sparsity, no retraining."""

from prunelimit.baselines.oneshot_compare import compare_oneshot
from prunelimit.config import resolve_device
from prunelimit.data import load_tensors
from prunelimit.io import save_json
from prunelimit.runlog import rule_context
from prunelimit.train import load_trained

with rule_context(snakemake.log[0], snakemake.threads) as log:
    p, w = snakemake.params, snakemake.wildcards
    device = resolve_device(p.device)
    model, meta = load_trained(snakemake.input.model, snakemake.input.metrics, device)
    data = load_tensors(snakemake.input.data, device)
    rows = compare_oneshot(model, data, methods=p.methods, sparsities=p.sparsities, seed=int(w.seed), task=w.task,
                           progress=True, **p.fisher)
    rows = [{"task": w.task, "start": w.start, "seed": int(w.seed), **row} for row in rows]
    save_json({"task": w.task, "start": w.start, "seed": int(w.seed), "unpruned_test_acc": meta["test_acc"],
               "rows": rows}, snakemake.output[0])
    for r in rows:
        log.info("%s (%s, seed %d) s=%g: test acc %.4f, %.2f s (+ %.2f s gradients)", r["method"], w.start,
                 r["seed"], r["sparsity"], r["test_acc"], r["wall_time_s"], r["gradient_time_s"])
