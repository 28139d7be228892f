"""prunelimit: reproduce 'How Sparse Can We Prune A Deep Network: A Fundamental Limit Perspective'.

One module per pipeline stage: data, models, train, hessian (and lanczos: its spectrum),
gaussian_width (the theory; magnitude_scaling its experiment), prune (sparsity: the ranking it and
the theory share), baselines, figures, tables (table_inputs: each table from its rule's files);
``stages`` and ``pruning_stages`` hold the compute rules' entry points.
The library never imports Snakemake; rule scripts in ``scripts/`` call into it.
"""

__version__ = "0.1.0"
