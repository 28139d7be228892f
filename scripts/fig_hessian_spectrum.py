"""Rule `fig_hessian_spectrum`: the SLQ spectral density of every task, exact eigenvalues where computed."""

from prunelimit.figures.hessian import plot_hessian_spectra
from prunelimit.runlog import rule_context
from prunelimit.spectrum import SLQResult, load_exact
from prunelimit.tables import by_task

with rule_context(snakemake.log[0]) as log:
    inp, p = snakemake.input, snakemake.params
    drawn = plot_hessian_spectra(by_task(p.tasks, inp.slq, SLQResult.load), snakemake.output,
                                 exact=by_task(p.exact_tasks, inp.exact, load_exact), n_bins=p.n_bins, sigma2=p.sigma2)
    for task, marks in drawn.items():
        log.info("%s: D = %d, lambda in [%.4g, %.4g]", task, marks["dim"], marks["lambda_min"], marks["lambda_max"])
