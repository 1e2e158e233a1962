"""Mutations always give valid genotypes; guided rewiring drops weak edges more than strong ones."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridnas.search.evolution.mutations import (
    Guidance,
    change_width,
    mutate,
    removal_weights,
    rewire,
    sample_genotype,
    swap_op,
)
from hybridnas.space.cells import edge_list
from hybridnas.space.genotype import CellSpec, Genotype, validate

OPS = ("none", "skip", "max_pool_1x3x3", "conv3d_3x3x3", "conv2plus1d_3x3x3", "p3d_c")


def _genotype() -> Genotype:
    edges = tuple((i, j, OPS[1 + (i + j) % 5]) for j in range(2, 6) for i in (0, j - 1))
    cell = CellSpec(edges=edges, concat=(2, 3, 4, 5))
    return Genotype(normal=cell, reduce=cell, stage_widths=(8, 16, 32), stem_channels=16)


def _random_guidance(seed: int) -> Guidance:
    rng = np.random.default_rng(seed)
    rows = {}
    for cell in ("normal", "reduce"):
        logits = rng.normal(size=(14, len(OPS))) * 2
        soft = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        rows[cell] = soft.tolist()
    return Guidance.from_alphas({"op_names": list(OPS), "edges": edge_list(4), **rows})


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 25), guided=st.booleans())
def test_chains_of_mutations_stay_valid(seed, steps, guided):
    rng = np.random.default_rng(seed)
    guidance = _random_guidance(seed) if guided else Guidance.uniform(OPS)
    g = _genotype()
    for _ in range(steps):
        child, info = mutate(g, rng, guidance, min_width=4, max_width=64)
        validate(child.to_dict())
        assert child.key() != g.key()
        assert info["kind"] in ("rewire", "swap_op", "change_width")
        assert all(op != "none" for c in (child.normal, child.reduce) for _, _, op in c.edges)
        g = child


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_each_kind_and_sampling_valid(seed):
    rng = np.random.default_rng(seed)
    guidance = _random_guidance(seed)
    g = _genotype()
    for child in (
        rewire(g, rng, guidance)[0],
        swap_op(g, rng, guidance)[0],
        change_width(g, rng, 0.25, 4, 64)[0],
        sample_genotype(g, rng, guidance),
    ):
        validate(child.to_dict())
        assert child.to_json()  # serialisable
        assert Genotype.from_json(child.to_json()).key() == child.key()


def test_guided_rewire_removes_weak_edges_more_often():
    g = _genotype()
    edges = edge_list(4)
    strong = {(0, 2), (1, 2), (0, 3), (0, 4), (0, 5)}  # half of the used edges: strong
    rows = []
    for e in edges:
        w = [0.02] * len(OPS)
        w[3] = 0.9 if e in strong else 0.1
        rows.append(w)
    guidance = Guidance.from_alphas(
        {"op_names": list(OPS), "edges": edges, "normal": rows, "reduce": rows}
    )
    rng = np.random.default_rng(0)
    removed = {"strong": 0, "weak": 0}
    for _ in range(1500):
        _, info = rewire(g, rng, guidance)
        removed["strong" if tuple(info["removed"]) in strong else "weak"] += 1
    # node 2 has no other source, so only (0,3), (0,4), (0,5) count among strong ones;
    # weights 0.1 + 1e-3 vs 0.9 + 1e-3: a weak edge should be picked ~9x as often per edge.
    used = {(i, j) for i, j, _ in g.normal.edges}
    n_strong = len([e for e in used if e in strong and e[1] != 2])
    n_weak = len([e for e in used if e not in strong and e[1] != 2])
    per_strong = removed["strong"] / n_strong
    per_weak = removed["weak"] / n_weak
    assert per_weak > 4 * per_strong, removed
    assert removal_weights(g, "normal", guidance)[0] == 0.0  # node 2 cannot be rewired


def test_uniform_guidance_explores_new_sources():
    g = _genotype()
    rng = np.random.default_rng(1)
    added = {tuple(rewire(g, rng, Guidance.uniform(OPS))[1]["added"]) for _ in range(300)}
    used = {(i, j) for c in (g.normal, g.reduce) for i, j, _ in c.edges}
    assert added - used == set(edge_list(4)) - used - {(i, 2) for i in range(2)}
