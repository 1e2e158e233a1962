"""The evolutionary stage: aging evolution (loop.py) over its state (state.py), mutations of cells
and skeleton (mutations.py, macro_mutations.py), fitness and the final rerank (fitness.py,
rerank.py), the in-run faithfulness check (faithfulness.py), outputs: Pareto front, family,
history (outputs.py, pareto.py, family.py); random search as its baseline (random_search.py)."""
