"""The benchmark wing of tools/bench.py: the measuring harness (harness.py), the modes
(modes.py), one module per section in sections/ (what it runs, what it reports), the report
writer (report.py), and the ground-truth table (groundtruth.py, build.py, table.py,
gt_report.py, cli.py)."""
