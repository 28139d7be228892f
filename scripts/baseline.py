"""Rules `baseline` and `baseline_imp`: one baseline method on one task and seed (IMP: every sparsity of
its trajectory in one job; every other method: the job's sparsity)."""

from prunelimit.pruning_stages import baseline_task
from prunelimit.runlog import rule_context

with rule_context(snakemake.log[0], snakemake.threads) as log:
    p, w, inp = snakemake.params, snakemake.wildcards, snakemake.input
    trajectory = p.method == "imp"
    results = baseline_task(method=p.method, spec=p.spec, data_path=inp.data, out_paths=list(snakemake.output),
                            sparsities=p.sparsities if trajectory else [float(w.sparsity)], seed=int(w.seed),
                            options=p.options, device=p.device,
                            dense=(inp.model, inp.metrics) if trajectory and p.takes_over_dense else None)
    for r in results:
        log.info("%s %s s=%g seed %d: test acc %.4f at density %.4f", r["method"], r["task"], r["sparsity"],
                 r["seed"], r["test_acc"], r["density"])
