"""What a network costs and how two rankings agree: parameters, FLOPs and time per clip
(counts.py), the per-device latency table and the parts it sums (latency_table.py,
latency_parts.py), rank agreement with bootstrap intervals (rank.py). Used by search, export
and the benchmark studies; imports nothing above space/."""
