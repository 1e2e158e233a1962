"""Training, evaluation and ensembles of found genotypes and baselines."""
