"""The benchmark wing of tools/bench.py: the measuring harness (harness.py), the modes
(modes.py), one module per section in sections/ (what it runs, what it reports), the report
writer (report.py), the ground-truth table of the default space (groundtruth.py: the recipe,
build.py: the builder, table.py: ``GroundTruth``, gt_report.py, cli.py), and the scorers
measured against it (scorer_bench.py, signal_report.py)."""

from hybridnas.bench.groundtruth import GroundTruthRecipe
from hybridnas.bench.table import GroundTruth, rank_agreement

__all__ = ["GroundTruth", "GroundTruthRecipe", "rank_agreement"]
