"""Rule `exact_spectrum`: every eigenvalue of a small model's Hessian (dense, float64 eigensolver)."""

from prunelimit.config import resolve_device
from prunelimit.data import load_tensors
from prunelimit.hessian import exact_spectrum_of_trained, save_exact
from prunelimit.runlog import rule_context
from prunelimit.train import load_trained

with rule_context(snakemake.log[0], snakemake.threads) as log:  # noqa: F821
    device = resolve_device(snakemake.params.device)  # noqa: F821
    model, meta = load_trained(snakemake.input.model, snakemake.input.metrics, device)  # noqa: F821
    data = load_tensors(snakemake.input.data, device)  # noqa: F821
    eigenvalues, settings = exact_spectrum_of_trained(model, data, snakemake.params.hessian)  # noqa: F821
    save_exact(snakemake.output[0], eigenvalues, settings)  # noqa: F821
    log.info("D = %d, λ in [%.4g, %.4g], %.1f s", settings["dim"], eigenvalues[0], eigenvalues[-1],
             settings["elapsed_s"])
