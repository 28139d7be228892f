# The regime map: each task of regime.tasks retrained at λ = m × its own l1 for every m of
# regime.l1_multipliers (the train rule, variant l1x<m>), then the predicted threshold with its
# kinematic bounds and the actual threshold of every model. The rules below do what the main
# study's hessian_rows, slq, theory (regime_prediction: the three in one job), exact_spectrum and
# sweep rules do (same library calls, same settings), on the regime model, under
# results/<preset>/regime/. The map's table and figure (regime_map) are TABLES and FIGURES entries in
# report.smk.

# the functions and names these rules use are in common.smk (REGIME_*, regime_*)


wildcard_constraints:
    point=r"l1x[0-9.e+-]+",


# Hessian rows, SLQ and theory of a point in one job (the three rules' library calls, in turn): at
# the mini preset's scale, starting a job cost about as much as a point's rows and prediction.
rule regime_prediction:
    input:
        unpack(regime_trained),
        data=dataset_of,
        exact=regime_exact,
    output:
        rows=f"{REGIME_DIR}/hessian_rows.npz",
        slq=f"{REGIME_DIR}/slq.npz",
        plot=f"{REGIME_DIR}/spectrum.png",  # a diagnostic, not in the report (the map is)
        prediction=f"{REGIME_DIR}/prediction.json",
    log:
        f"{RESULTS}/logs/regime/{{task}}_{{point}}_prediction.log",
    benchmark:
        f"{RESULTS}/benchmarks/regime/{{task}}_{{point}}_prediction.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,
    params:
        **THEORY_PARAMS,
        title=lambda w: f"{w.task} {w.point}",
    script:
        "../../scripts/regime_prediction.py"


use rule exact_spectrum as regime_exact_spectrum with:
    input:
        unpack(regime_trained),
        data=dataset_of,
    output:
        f"{REGIME_DIR}/exact.npz",
    log:
        f"{RESULTS}/logs/regime/{{task}}_{{point}}_exact.log",
    benchmark:
        f"{RESULTS}/benchmarks/regime/{{task}}_{{point}}_exact.tsv"


use rule sweep as regime_sweep with:
    input:
        unpack(regime_trained),
        data=dataset_of,
    output:
        curve=f"{REGIME_DIR}/curve.csv",
        actual=f"{REGIME_DIR}/actual.json",
    log:
        f"{RESULTS}/logs/regime/{{task}}_{{point}}_sweep.log",
    benchmark:
        f"{RESULTS}/benchmarks/regime/{{task}}_{{point}}_sweep.tsv"
