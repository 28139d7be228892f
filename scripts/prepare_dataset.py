"""Rule `dataset`: build results/<preset>/data/<dataset>.npz from its source."""

from prunelimit.data import prepare_dataset
from prunelimit.runlog import rule_context

with rule_context(snakemake.log[0]) as log:  # injected by Snakemake
    path = prepare_dataset(snakemake.wildcards.dataset, snakemake.output[0], snakemake.params.options,
                           cache_dir=snakemake.params.cache)
    log.info("wrote %s", path)
