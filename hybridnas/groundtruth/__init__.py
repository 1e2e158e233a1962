"""The ground-truth table of the default space, what a user calls: the table (data/, 150
uniformly drawn genotypes, each trained twice with one fixed recipe), its loader and
statistics (table.py: ``GroundTruth``), the recipe that trains an entry (recipe.py:
``GroundTruthRecipe``) and a found genotype's percentile in it (regret.py: ``regret``).
The studies built on it (the table's builder, scorer and search-method benchmarks, reports)
are in tools/studies/, run through ``python tools/bench.py``."""

from hybridnas.groundtruth.recipe import GroundTruthRecipe
from hybridnas.groundtruth.regret import regret
from hybridnas.groundtruth.table import GroundTruth, rank_agreement

__all__ = ["GroundTruth", "GroundTruthRecipe", "rank_agreement", "regret"]
