"""Rule `iterative`: prune to the theoretical threshold, retrain, recompute it; with and without l2."""

from prunelimit.config import resolve_device
from prunelimit.data import load_tensors
from prunelimit.prune import iterative_prune, retrain_config, save_rows_csv
from prunelimit.runlog import rule_context
from prunelimit.stages import predict_from_model
from prunelimit.train import load_trained

with rule_context(snakemake.log[0], snakemake.threads) as log:
    p = snakemake.params
    device = resolve_device(p.device)
    data = load_tensors(snakemake.input.data, device)
    rows = []
    for arm, weight_decay in (("no_l2", 0.0), ("l2", float(p.iterative.l2))):
        model, meta = load_trained(snakemake.input.model, snakemake.input.metrics, device)
        l1 = float(meta["train"]["l1"])  # λ as the run resolved it from the task's shrinkage target
        retrain = retrain_config(meta["train"], epochs=p.iterative.retrain_epochs, weight_decay=weight_decay)

        def predict(m, l1=l1):
            return predict_from_model(m, data, hessian_settings=p.hessian, theory_settings=p.theory, l1=l1)

        for row in iterative_prune(model, data, predict, rounds=p.iterative.rounds, retrain=retrain, progress=True):
            rows.append({"round": row.pop("round"), "arm": arm, **row})
        log.info("%s: final sparsity %.4f, threshold %.4f", arm, rows[-1]["sparsity"], rows[-1]["theoretical_sparsity"])
    save_rows_csv(rows, snakemake.output.csv, ["round", "arm", "sparsity", "theoretical_sparsity", "test_acc"])
