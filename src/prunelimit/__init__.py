"""prunelimit: reproduce 'How Sparse Can We Prune A Deep Network: A Fundamental Limit Perspective'.

One module per pipeline stage: data, models, train, hessian, theory, prune, baselines, figures,
tables. The library never imports Snakemake; rule scripts in ``scripts/`` call into it.
"""

__version__ = "0.1.0"
