"""The differentiable stage: bilevel supernet training (loop.py) with its state (state.py), the
architecture step (architect.py), SDAS edge fixing (sdas.py, fixing.py, selection.py), the
search splits (splits.py) and the latency term (expected_latency.py)."""
