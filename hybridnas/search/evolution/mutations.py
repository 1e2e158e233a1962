"""Mutations of a genotype for the evolutionary stage, guided by the supernet's learned alphas.

Five kinds, each returning a new valid ``Genotype`` and a small description of what changed:

- ``rewire``: replace one input of a node (AssembleNet): the edge to drop is drawn with
  probability rising as its learned strength falls, and its new source with probability rising
  with the strength learned for that connection (plus a uniform share, so untried
  connections still get tried).
- ``swap_op``: change the op on one edge (EvaNet), drawn from the edge's alphas mixed with uniform.
- ``change_width``: grow or shrink one stage's width by a factor, rounded and clamped.
- ``add_input``: give a node one more input (up to ``max_inputs``), its source drawn as in
  ``rewire`` and its op by the alphas.
- ``drop_input``: remove one input of a node that has several, weak ones more often.

``Guidance`` holds the learned weights. The op weights are always the supernet's alphas (the
differentiable stage's ``alphas.json``; uniform without a supernet). The connection strengths
are the alphas too, the same for every individual, unless ``with_connections`` replaces them
by the connection weights one individual learned in its own proxy training (AssembleNet;
``evolution.rewire_guidance=connections``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hybridnas.search.evolution.macro_mutations import (
    MacroRanges,
    change_clip,
    change_depth,
    scale_width,
)
from hybridnas.space.genotype import CELL_TYPES, CellSpec, Genotype
from hybridnas.space.macro import round_width

MUTATIONS = (
    "rewire",
    "swap_op",
    "change_width",
    "add_input",
    "drop_input",
    "change_clip",
    "change_depth",
    "scale_width",
)


@dataclass(frozen=True)
class Guidance:
    """Learned per-edge op weights: ``alphas[cell][(i, j)]`` = {op: softmaxed alpha}.

    ``op_names`` is the op vocabulary mutations draw from (``none`` is never drawn).
    An edge absent from ``alphas`` counts as uniform.
    """

    op_names: tuple[str, ...]
    alphas: dict[str, dict[tuple[int, int], dict[str, float]]] = field(default_factory=dict)
    connections: dict[str, dict[tuple[int, int], float]] | None = None
    drop: str = "weighted"  # how a removal uses strengths: "weighted" or "weakest" (_removal)

    @property
    def ops(self) -> tuple[str, ...]:
        """Ops a mutation may place on an edge."""
        return tuple(o for o in self.op_names if o != "none")

    def op_weights(self, cell: str, edge: tuple[int, int]) -> dict[str, float]:
        """{op: weight} over ``ops`` for one (i, j) edge (uniform when unknown)."""
        row = self.alphas.get(cell, {}).get(edge)
        if row is None:
            return {o: 1.0 for o in self.ops}
        return {o: float(row.get(o, 0.0)) for o in self.ops}

    def strength(self, cell: str, edge: tuple[int, int]) -> float:
        """Edge strength in [0, 1]: with ``connections``, the learned connection weight (0.5
        for a connection the individual does not have); else the largest non-none alpha (as in
        DARTS derivation), 0.5 if the supernet said nothing about the edge."""
        if self.connections is not None:
            return self.connections.get(cell, {}).get(edge, 0.5)
        row = self.alphas.get(cell, {}).get(edge)
        if row is None:
            return 0.5
        return max(float(v) for o, v in row.items() if o != "none")

    def with_connections(self, learned: dict[str, list] | None) -> Guidance:
        """These op weights with connection strengths from one individual's learned weights,
        {"normal": [[i, j, weight], ...], ...} (``read_connection_weights``); a node input
        that appears twice (not possible in a valid genotype) keeps its last weight. None:
        unchanged."""
        if learned is None:
            return self
        connections = {
            cell: {(int(i), int(j)): float(w) for i, j, w in rows} for cell, rows in learned.items()
        }
        return replace(self, connections=connections)

    @classmethod
    def uniform(cls, op_names: Sequence[str]) -> Guidance:
        return cls(tuple(op_names))

    @classmethod
    def from_alphas(cls, doc: dict[str, Any]) -> Guidance:
        """From the ``alphas.json`` document of the differentiable stage."""
        names = tuple(doc["op_names"])
        edges = [tuple(e) for e in doc["edges"]]
        alphas = {
            cell: {
                e: dict(zip(names, map(float, row), strict=True))
                for e, row in zip(edges, doc[cell], strict=True)
            }
            for cell in CELL_TYPES
            if cell in doc
        }
        return cls(names, alphas)


def load_guidance(run_dir: str | Path, op_names: Sequence[str]) -> Guidance:
    """``run_dir/alphas.json`` if the differentiable stage wrote one, else uniform guidance."""
    path = Path(run_dir) / "alphas.json"
    if path.is_file():
        return Guidance.from_alphas(json.loads(path.read_text()))
    return Guidance.uniform(op_names)


# ---------------------------------------------------------------- helpers


def _draw(rng: np.random.Generator, weights: Sequence[float]) -> int:
    """Index drawn with probability proportional to weights (uniform if they sum to 0)."""
    w = np.asarray(weights, dtype=np.float64).clip(min=0)
    p = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    return int(rng.choice(len(w), p=p))


def _mix_uniform(weights: Sequence[float], explore: float) -> list[float]:
    """(1 - explore) * normalised weights + explore * uniform."""
    w = np.asarray(weights, dtype=np.float64).clip(min=0)
    w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    return list((1 - explore) * w + explore / len(w))


def _fix_concat(edges: tuple[tuple[int, int, str], ...], concat: tuple[int, ...]) -> CellSpec:
    """Concatenate every node that would otherwise feed nothing (a rewire can orphan one)."""
    used = {i for i, _, _ in edges}
    nodes = {j for _, j, _ in edges}
    dangling = [n for n in nodes if n not in used and n not in concat]
    return CellSpec(edges=edges, concat=tuple(sorted(set(concat) | set(dangling))))


def _with_cell(genotype: Genotype, cell: str, spec: CellSpec) -> Genotype:
    return genotype.replace(**{cell: spec})


# ---------------------------------------------------------------- the mutations


def can_remove(spec: CellSpec, j: int, kind: str) -> bool:
    """Can a ``kind`` mutation (``rewire`` or ``drop_input``) remove an input of node j? A
    rewire needs an earlier node j does not take yet; a drop needs j to keep an input."""
    inputs = {s for s, _ in spec.inputs_of(j)}
    return len(inputs) > 1 if kind == "drop_input" else bool(set(range(j)) - inputs)


def _removal(strengths: list[float | None], drop: str, explore: float) -> list[float]:
    """Draw weights for removing one of several edges, from their strengths (None: this edge
    may not go). ``weighted``: 1 - strength. ``weakest`` (AssembleNet drops its weak
    connections outright): the weakest edge (ties share) with 1 - explore, the rest of the
    share uniform over the removable edges."""
    if drop == "weighted":
        return [0.0 if s is None else 1.0 - s + 1e-3 for s in strengths]
    removable = [s for s in strengths if s is not None]
    if not removable:
        return [0.0] * len(strengths)
    hits = [s is not None and s <= min(removable) + 1e-9 for s in strengths]
    return [
        (1 - explore) * hit / sum(hits) + explore * (s is not None) / len(removable)
        for hit, s in zip(hits, strengths, strict=True)
    ]


def removal_weights(
    genotype: Genotype, cell: str, guidance: Guidance, explore: float = 0.2
) -> list[float]:
    """Probability of each edge of ``cell`` being the one a rewire replaces (weak edges more
    likely; see ``_removal``). Edges whose node has no other possible source get 0."""
    spec = genotype.cell(cell)
    strengths = [
        guidance.strength(cell, (i, j)) if can_remove(spec, j, "rewire") else None
        for i, j, _ in spec.edges
    ]
    return _removal(strengths, guidance.drop, explore)


def rewire(
    genotype: Genotype, rng: np.random.Generator, guidance: Guidance, explore: float = 0.2
) -> tuple[Genotype, dict[str, Any]]:
    """Replace one input of one node: weak edge out, a (guided) new source in, op kept."""
    cells = [c for c in CELL_TYPES if sum(removal_weights(genotype, c, guidance, explore)) > 0]
    if not cells:
        raise ValueError("no edge can be rewired: every node already takes every earlier node")
    cell = cells[int(rng.integers(len(cells)))]
    spec = genotype.cell(cell)
    k = _draw(rng, removal_weights(genotype, cell, guidance, explore))
    i, j, op = spec.edges[k]
    taken = {s for s, _ in spec.inputs_of(j)}
    new_i = _new_source(rng, guidance, cell, j, [s for s in range(j) if s not in taken], explore)
    edges = list(spec.edges)
    edges[k] = (new_i, j, op)
    child = _with_cell(genotype, cell, _fix_concat(tuple(edges), spec.concat))
    return child, {"kind": "rewire", "cell": cell, "removed": [i, j], "added": [new_i, j], "op": op}


def swap_op(
    genotype: Genotype, rng: np.random.Generator, guidance: Guidance, explore: float = 0.2
) -> tuple[Genotype, dict[str, Any]]:
    """Change the op of one uniformly drawn edge to another op, drawn by its alphas + uniform."""
    cell = CELL_TYPES[int(rng.integers(2))]
    spec = genotype.cell(cell)
    k = int(rng.integers(len(spec.edges)))
    i, j, old = spec.edges[k]
    weights = guidance.op_weights(cell, (i, j))
    choices = [o for o in guidance.ops if o != old]
    new = choices[_draw(rng, _mix_uniform([weights[o] for o in choices], explore))]
    edges = list(spec.edges)
    edges[k] = (i, j, new)
    child = _with_cell(genotype, cell, CellSpec(tuple(edges), spec.concat))
    return child, {"kind": "swap_op", "cell": cell, "edge": [i, j], "old": old, "new": new}


def _new_source(
    rng: np.random.Generator,
    guidance: Guidance,
    cell: str,
    j: int,
    sources: list[int],
    explore: float,
) -> int:
    """One of ``sources`` for node j, by connection strength mixed with uniform."""
    weights = _mix_uniform([guidance.strength(cell, (s, j)) for s in sources], explore)
    return sources[_draw(rng, weights)]


def add_input(
    genotype: Genotype,
    rng: np.random.Generator,
    guidance: Guidance,
    explore: float = 0.2,
    max_inputs: int = 3,
) -> tuple[Genotype, dict[str, Any]]:
    """Give one node (with fewer than ``max_inputs`` inputs and an unused earlier node) one
    more input: the node uniformly, the source as in ``rewire``, the op by its alphas."""
    open_nodes = [
        (cell, j)
        for cell in CELL_TYPES
        for j in sorted({j for _, j, _ in genotype.cell(cell).edges})
        if len(genotype.cell(cell).inputs_of(j)) < min(max_inputs, j)
    ]
    if not open_nodes:
        raise ValueError(f"no node can take another input (max_inputs={max_inputs})")
    cell, j = open_nodes[int(rng.integers(len(open_nodes)))]
    spec = genotype.cell(cell)
    taken = {s for s, _ in spec.inputs_of(j)}
    i = _new_source(rng, guidance, cell, j, [s for s in range(j) if s not in taken], explore)
    ow = guidance.op_weights(cell, (i, j))
    op = list(ow)[_draw(rng, _mix_uniform(list(ow.values()), explore))]
    edges = tuple(sorted((*spec.edges, (i, j, op)), key=lambda e: (e[1], e[0])))
    child = _with_cell(genotype, cell, CellSpec(edges, spec.concat))
    return child, {"kind": "add_input", "cell": cell, "added": [i, j], "op": op}


def drop_input(
    genotype: Genotype, rng: np.random.Generator, guidance: Guidance, explore: float = 0.2
) -> tuple[Genotype, dict[str, Any]]:
    """Remove one input of a node that has two or more, weak connections more often (see
    ``_removal``); a source left feeding nothing joins the concat."""
    droppable = {
        cell: [
            guidance.strength(cell, (i, j)) if can_remove(spec, j, "drop_input") else None
            for i, j, _ in spec.edges
        ]
        for cell, spec in ((c, genotype.cell(c)) for c in CELL_TYPES)
    }
    cells = [c for c in CELL_TYPES if any(s is not None for s in droppable[c])]
    if not cells:
        raise ValueError("no node has an input to spare")
    cell = cells[int(rng.integers(len(cells)))]
    spec = genotype.cell(cell)
    k = _draw(rng, _removal(droppable[cell], guidance.drop, explore))
    i, j, op = spec.edges[k]
    edges = spec.edges[:k] + spec.edges[k + 1 :]
    child = _with_cell(genotype, cell, _fix_concat(edges, spec.concat))
    return child, {"kind": "drop_input", "cell": cell, "removed": [i, j], "op": op}


def change_width(
    genotype: Genotype,
    rng: np.random.Generator,
    step: float = 0.25,
    min_width: int = 4,
    max_width: int = 256,
    divisor: int = 4,
) -> tuple[Genotype, dict[str, Any]]:
    """Multiply one stage's width by (1 +- step), rounded to ``divisor``, clamped; a move that
    lands on the same width goes the other way."""
    widths = list(genotype.stage_widths)
    s = int(rng.integers(len(widths)))
    sign = 1 if rng.random() < 0.5 else -1
    for direction in (sign, -sign):
        new = min(
            max_width, max(min_width, round_width(widths[s] * (1 + direction * step), divisor))
        )
        if new != widths[s]:
            break
    old, widths[s] = widths[s], new
    child = genotype.replace(stage_widths=tuple(widths))
    return child, {"kind": "change_width", "stage": s, "old": old, "new": new}


def mutate(
    genotype: Genotype,
    rng: np.random.Generator,
    guidance: Guidance,
    *,
    probs: Sequence[float] = (0.4, 0.4, 0.2),
    explore: float = 0.2,
    width_step: float = 0.25,
    min_width: int = 4,
    max_width: int = 256,
    max_inputs: int = 2,
    tries: int = 10,
    macro: MacroRanges | None = None,
) -> tuple[Genotype, dict[str, Any]]:
    """One mutation of kind drawn by ``probs`` over ``MUTATIONS`` (rewire, swap_op,
    change_width, add_input, drop_input, change_clip, change_depth, scale_width; missing
    trailing entries are 0; the macro kinds move within ``macro``); retried until the
    child differs from the parent (a width at its bound, say, cannot move). A kind that
    refuses this parent (add_input at ``max_inputs``, drop_input of a single input) is not
    drawn again for it: with ``max_inputs=1`` those two could otherwise use up every try."""
    probs = [*probs, *[0.0] * (len(MUTATIONS) - len(probs))]
    parent_key = genotype.key()
    for _ in range(tries):
        if not any(probs):
            break
        index = _draw(rng, probs)
        kind = MUTATIONS[index]
        try:
            if kind == "rewire":
                child, info = rewire(genotype, rng, guidance, explore)
            elif kind == "swap_op":
                child, info = swap_op(genotype, rng, guidance, explore)
            elif kind == "add_input":
                child, info = add_input(genotype, rng, guidance, explore, max_inputs)
            elif kind == "drop_input":
                child, info = drop_input(genotype, rng, guidance, explore)
            elif kind == "change_clip":
                child, info = change_clip(genotype, rng, macro or MacroRanges())
            elif kind == "change_depth":
                child, info = change_depth(genotype, rng, macro or MacroRanges())
            elif kind == "scale_width":
                child, info = scale_width(genotype, rng, macro or MacroRanges(), min_width,
                                          max_width)  # fmt: skip
            else:
                child, info = change_width(genotype, rng, width_step, min_width, max_width)
        except ValueError:
            probs[index] = 0.0
            continue
        if child.key() != parent_key:
            return child, info
    raise ValueError(f"no mutation changed the genotype in {tries} tries")


def sample_genotype(
    template: Genotype,
    rng: np.random.Generator,
    guidance: Guidance,
    temperature: float = 1.0,
) -> Genotype:
    """A genotype drawn from the learned alphas: per node two distinct inputs drawn by edge
    strength, each with an op drawn by its alphas (weights ** (1 / temperature)). Macro
    skeleton, node count and concat come from ``template``."""
    cells = {}
    for cell in CELL_TYPES:
        spec = template.cell(cell)
        nodes = sorted({j for _, j, _ in spec.edges})
        edges = []
        for j in nodes:
            sources = list(range(j))
            w = [guidance.strength(cell, (s, j)) ** (1 / temperature) for s in sources]
            first = sources[_draw(rng, w)]
            rest = [s for s in sources if s != first]
            second = rest[_draw(rng, [w[s] for s in rest])]
            for i in sorted((first, second)):
                ow = guidance.op_weights(cell, (i, j))
                ops = list(ow)
                edges.append((i, j, ops[_draw(rng, [ow[o] ** (1 / temperature) for o in ops])]))
        cells[cell] = _fix_concat(tuple(edges), spec.concat)
    return template.replace(normal=cells["normal"], reduce=cells["reduce"])
