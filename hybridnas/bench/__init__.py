"""Benchmark helpers for tools/bench.py: the report writer (BENCHMARKS.md and figures)."""
