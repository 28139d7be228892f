"""Rule `slq`: the SLQ Hessian spectrum of a trained (L1) model on its training set, and its plot."""

from prunelimit.config import resolve_device
from prunelimit.data import load_tensors
from prunelimit.figures import plot_hessian_spectrum
from prunelimit.hessian import spectrum_of_trained
from prunelimit.runlog import rule_context
from prunelimit.train import load_trained

with rule_context(snakemake.log[0], snakemake.threads) as log:  # noqa: F821
    cfg = snakemake.params.hessian  # noqa: F821
    device = resolve_device(snakemake.params.device)  # noqa: F821
    model, meta = load_trained(snakemake.input.model, snakemake.input.metrics, device)  # noqa: F821
    data = load_tensors(snakemake.input.data, device)  # noqa: F821
    result = spectrum_of_trained(model, data, cfg, progress=True)
    result.save(snakemake.output.slq, n_bins=cfg["n_bins"], sigma2=cfg["sigma2"])  # noqa: F821
    plot_hessian_spectrum(result, snakemake.output.plot, title=snakemake.wildcards.task,  # noqa: F821
                          n_bins=cfg["n_bins"], sigma2=cfg["sigma2"])
    q = result.quadrature()
    log.info("D = %d, λ in [%.4g, %.4g], tr H ≈ %.4g, %d HVPs in %.1f s", result.dim, q.lambda_min, q.lambda_max,
             q.trace_f(lambda lam: lam), result.settings["products"], result.settings["elapsed_s"])
