"""The studies behind tools/bench.py (the one entry point; this package is imported from it
with tools/ on ``sys.path``): the measuring harness (harness.py), the modes (modes.py), one
module per section in sections/ (what it runs, what it reports), the report writer
(report.py), the ground-truth table's builder (build.py), its commands and report (cli.py,
gt_report.py), the scorers and search methods measured against it (scorer_bench.py,
gt_quality.py, proxy_sweep.py, schedule_bench.py, signal_report.py), the ops and latency
studies (ops_bench.py, latency_model.py) and the accuracy/latency front (front.py). Their
results are in results/. What a user calls (the table, its loader, ``regret``) is in
``hybridnas.groundtruth``."""
