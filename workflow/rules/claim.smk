# The claim test over training seeds: every main-study task's L1 model trained again with each seed
# of claim_seeds beyond its own (train_reseeded, l1_seed<seed>), then the main study's Hessian rows,
# SLQ spectrum, prediction (regime_prediction's one job for the three) and one-shot sweep, under
# results/<preset>/seeds/. The task's own seed is the main study's model and files (claim_file in
# common.smk); tables/theory_vs_actual reads every seed.


use rule regime_prediction as seed_prediction with:
    input:
        unpack(lambda w: trained(w.task, f"l1_seed{w.seed}")),
        data=dataset_of,
        exact=[],  # the main study's exact spectrum checks SLQ once; every seed's prediction is SLQ's
    output:
        rows=f"{SEED_DIR}/hessian_rows.npz",
        slq=f"{SEED_DIR}/slq.npz",
        plot=f"{SEED_DIR}/spectrum.png",
        prediction=f"{SEED_DIR}/prediction.json",
    log:
        f"{RESULTS}/logs/seeds/{{task}}_seed{{seed}}_prediction.log",
    benchmark:
        f"{RESULTS}/benchmarks/seeds/{{task}}_seed{{seed}}_prediction.tsv"
    params:
        **THEORY_PARAMS,
        title=lambda w: f"{w.task} seed {w.seed}",


use rule sweep as seed_sweep with:
    input:
        unpack(lambda w: trained(w.task, f"l1_seed{w.seed}")),
        data=dataset_of,
    output:
        curve=f"{SEED_DIR}/curve.csv",
        actual=f"{SEED_DIR}/actual.json",
    log:
        f"{RESULTS}/logs/seeds/{{task}}_seed{{seed}}_sweep.log",
    benchmark:
        f"{RESULTS}/benchmarks/seeds/{{task}}_seed{{seed}}_sweep.tsv"
