"""Rule `dataset`: build results/<preset>/data/<dataset>.npz from its source."""

from prunelimit.data import prepare_dataset
from prunelimit.runlog import rule_context

with rule_context(snakemake.log[0]) as log:  # noqa: F821 - injected by Snakemake
    path = prepare_dataset(snakemake.wildcards.dataset, snakemake.output[0], snakemake.params.options,  # noqa: F821
                           cache_dir=snakemake.params.cache)  # noqa: F821
    log.info("wrote %s", path)
