"""Rule `baseline` / `baseline_imp`: Rare Gems or Smart-Ratio at one sparsity and seed, or one IMP
trajectory (one seed) through every target sparsity. (LOMP's rows are the one-shot sweep's.)"""

from prunelimit.baselines import run_baseline, run_imp_trajectory
from prunelimit.checkpoint import read_state_dict
from prunelimit.config import resolve_device
from prunelimit.data import load_tensors
from prunelimit.io import load_json, save_json
from prunelimit.runlog import rule_context

with rule_context(snakemake.log[0], snakemake.threads) as log:
    p, w = snakemake.params, snakemake.wildcards
    device = resolve_device(p.device)
    data = load_tensors(snakemake.input.data, device)
    if p.method == "imp":
        # the train rule's dense model, where it is this trajectory's dense run (imp_takes_over_dense)
        dense = ((read_state_dict(snakemake.input.model), load_json(snakemake.input.metrics)["train"])
                 if p.takes_over_dense else None)
        results = run_imp_trajectory(p.spec, data, p.sparsities, int(w.seed), p.options, trained_dense=dense,
                                     progress=True)
        paths = dict(zip(p.sparsities, snakemake.output))  # outputs in p.sparsities order
        for result in results:
            save_json(result, paths[result["sparsity"]])
    else:
        results = [run_baseline(p.method, p.spec, data, float(w.sparsity), int(w.seed), p.options, progress=True)]
        save_json(results[0], snakemake.output[0])
    for r in results:
        log.info("%s %s s=%g seed %d: test acc %.4f at density %.4f", r["method"], r["task"], r["sparsity"],
                 r["seed"], r["test_acc"], r["density"])
