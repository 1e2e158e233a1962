"""The parts a network of the space is made of, the unit the latency table times.

A part is one module a network runs at batch 1, keyed by what decides its cost (shapes are
the part's input)::

    op:<name>:<c_in>:<c_out>:<st>x<sh>x<sw>:<T>x<H>x<W>    a candidate op (or a reducing pre0)
    pre:<c_in>:<c_out>:<T>x<H>x<W>                         ReLU-1x1x1 conv-BN cell preprocessing
    stem:<c_in>:<c_out>:<kernel>:<stride>:<T>x<H>x<W>      one stream's stem
    add:<c>:<T>x<H>x<W>                                    one sum of two node inputs
    cat:<k>:<c>:<T>x<H>x<W>                                the concat of k nodes of c channels
    head:<c>:<classes>:<T>x<H>x<W>                         pool, flatten, dropout, linear

``genotype_parts`` lists a genotype's parts (with repeats), ``space_parts`` every part a space
of skeletons can use, ``space_macros`` the skeletons the evolution's macro ranges reach.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from hybridnas.space.genotype import Genotype
from hybridnas.space.macro import MacroSpec, round_width
from hybridnas.space.network import CellPlan, cell_plan

Shape = tuple[int, int, int]


def shape_key(t: Sequence[int]) -> str:
    return "x".join(str(int(v)) for v in t)


def _down(shape: Shape, stride: Sequence[int]) -> Shape:
    return tuple(math.ceil(n / s) for n, s in zip(shape, stride, strict=True))  # type: ignore


def op_key(name: str, c_in: int, c_out: int, stride: Sequence[int], shape: Shape) -> str:
    return f"op:{name}:{c_in}:{c_out}:{shape_key(stride)}:{shape_key(shape)}"


@dataclass(frozen=True)
class CellSite(CellPlan):
    """One cell of a skeleton: its plan (widths, whether it reduces) and its input and node
    shapes (T, H, W)."""

    s0: Shape
    s1: Shape
    out: Shape


def cell_sites(macro: MacroSpec, multipliers: tuple[int, int]) -> list[CellSite]:
    """Where every cell sits; ``multipliers``: concatenated nodes of a (normal, reduce) cell."""
    shape = _down((macro.frames, macro.size, macro.size), macro.stem_stride)
    s0 = s1 = shape
    sites = []
    for p in cell_plan(macro.num_cells, macro.stage_widths, macro.stem_channels, multipliers):
        out = _down(s1, macro.reduction_stride) if p.reduction else s1
        sites.append(CellSite(**asdict(p), s0=s0, s1=s1, out=out))
        s0, s1 = s1, out
    return sites


def edge_input(site: CellSite, i: int, macro: MacroSpec) -> tuple[tuple[int, int, int], Shape]:
    """(stride, input shape) of an edge leaving node i of a cell."""
    if site.reduction and i < 2:
        return tuple(macro.reduction_stride), site.s1  # type: ignore[return-value]
    return (1, 1, 1), site.out


def skeleton_parts(macro: MacroSpec, site: CellSite, concat: int) -> list[str]:
    """The parts of one cell outside its edges: both preprocessings and the output concat."""
    if site.reduction_prev:
        pre0 = op_key("skip", site.c_pp, site.c, macro.reduction_stride, site.s0)
    else:
        pre0 = f"pre:{site.c_pp}:{site.c}:{shape_key(site.s0)}"
    pre1 = f"pre:{site.c_p}:{site.c}:{shape_key(site.s1)}"
    return [pre0, pre1, f"cat:{concat}:{site.c}:{shape_key(site.out)}"]


def stem_parts(macro: MacroSpec) -> list[str]:
    per_stream = macro.in_channels // len(macro.streams)
    key = (
        f"stem:{per_stream}:{macro.stem_channels}:{shape_key(macro.stem_kernel)}:"
        f"{shape_key(macro.stem_stride)}:{shape_key((macro.frames, macro.size, macro.size))}"
    )
    return [key] * len(macro.streams)


def head_part(macro: MacroSpec, site: CellSite, concat: int) -> str:
    return f"head:{concat * site.c}:{macro.num_classes}:{shape_key(site.out)}"


def genotype_parts(g: Genotype) -> list[str]:
    """Every part the network of ``g`` runs for one clip, with repeats."""
    m = g.macro
    sites = cell_sites(m, (len(g.normal.concat), len(g.reduce.concat)))
    parts = stem_parts(m)
    for site in sites:
        spec = g.reduce if site.reduction else g.normal
        parts += skeleton_parts(m, site, len(spec.concat))
        for i, _, op in spec.edges:
            stride, shape = edge_input(site, i, m)
            parts.append(op_key(op, site.c, site.c, stride, shape))
        fan_in = Counter(j for _, j, _ in spec.edges)
        parts += [f"add:{site.c}:{shape_key(site.out)}"] * sum(n - 1 for n in fan_in.values())
    spec = g.reduce if sites[-1].reduction else g.normal
    return [*parts, head_part(m, sites[-1], len(spec.concat))]


def space_parts(macros: Iterable[MacroSpec], op_names: Sequence[str], steps: int) -> list[str]:
    """Every distinct part a genotype of ``steps``-node cells over ``op_names`` could use on
    any of the skeletons ``macros``: each op on each edge shape and stride, the preprocessing
    and concat of every number of concatenated nodes (1 .. steps), stems and heads."""
    keys: dict[str, None] = {}
    for m in macros:
        for kn in range(1, steps + 1):
            for kr in range(1, steps + 1):
                sites = cell_sites(m, (kn, kr))
                for key in stem_parts(m):
                    keys[key] = None
                for site in sites:
                    k = kr if site.reduction else kn
                    for key in skeleton_parts(m, site, k):
                        keys[key] = None
                    keys[f"add:{site.c}:{shape_key(site.out)}"] = None
                    for i in (0, 2):
                        stride, shape = edge_input(site, i, m)
                        for op in op_names:
                            keys[op_key(op, site.c, site.c, stride, shape)] = None
                keys[head_part(m, sites[-1], kr if sites[-1].reduction else kn)] = None
    return list(keys)


def space_macros(base: MacroSpec, ranges: Any) -> list[MacroSpec]:
    """The skeletons the evolution can reach in one macro step from ``base``, and their
    combinations: every frames x size of ``ranges`` (a ``macro_mutations.MacroRanges``), the
    widths and stem x 1 and each of its ``width_mults``, and every depth in ``num_cells``."""
    lo, hi = ranges.num_cells
    out = {}
    for frames in dict.fromkeys([base.frames, *ranges.frames]):
        for size in dict.fromkeys([base.size, *ranges.size]):
            for mult in dict.fromkeys([1.0, *ranges.width_mults]):
                for cells in range(lo, hi + 1):
                    m = replace(
                        base,
                        frames=int(frames),
                        size=int(size),
                        num_cells=cells,
                        stage_widths=tuple(round_width(w * mult) for w in base.stage_widths),
                        stem_channels=round_width(base.stem_channels * mult),
                    )
                    out[m] = None
    return list(out)
