"""Rule `exact_spectrum`: every eigenvalue of a small model's Hessian (dense, float64 eigensolver)."""

from prunelimit.runlog import rule_context
from prunelimit.stages import exact_spectrum_task

with rule_context(snakemake.log[0], snakemake.threads) as log:
    inp = snakemake.input
    eigenvalues, settings = exact_spectrum_task(model_path=inp.model, metrics_path=inp.metrics, data_path=inp.data,
                                                out_path=snakemake.output[0],
                                                hessian_settings=snakemake.params.hessian,
                                                device=snakemake.params.device)
    log.info("D = %d, λ in [%.4g, %.4g], %.1f s", settings["dim"], eigenvalues[0], eigenvalues[-1],
             settings["elapsed_s"])
