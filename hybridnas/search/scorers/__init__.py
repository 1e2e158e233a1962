"""Candidate scorers: the interface and registry (registry.py), the zero-cost scorers
(zero_cost.py, temporal.py), the trained proxy (proxy.py) and its registered variants
(proxy_variants.py), CONet's channel rule (channels.py, evbmf.py)."""

from hybridnas.search.scorers import proxy_variants, temporal, zero_cost  # noqa: F401  (register)
