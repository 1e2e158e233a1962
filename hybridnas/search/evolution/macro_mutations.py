"""Macro mutations of the evolution (TinyVideoNets / X3D axes): the clip (frames, frame
stride, size), the depth (number of cells) and one multiplier on every width, each within the
recipe's ranges (``MacroRanges``). Each returns (child, info) like the mutations of
mutations.py, and raises ``ValueError`` when it cannot move the genotype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hybridnas.config import EvolutionConfig
from hybridnas.space.genotype import Genotype
from hybridnas.space.macro import round_width

_EVOLUTION = EvolutionConfig()  # the default recipe's ranges


@dataclass(frozen=True)
class MacroRanges:
    """Where the macro mutations (TinyVideoNets / X3D axes) may take a genotype: clip frames,
    frame stride and size from these choices with ``frames x frame_stride <= span`` (the
    frames the evolution's clips hold), ``num_cells`` in [min, max], and the multipliers
    ``scale_width`` applies to every stage width and the stem."""

    frames: tuple[int, ...] = (8,)  # without a recipe the clip keeps its frames and size
    frame_stride: tuple[int, ...] = tuple(_EVOLUTION.macro_frame_stride)
    size: tuple[int, ...] = (32,)
    num_cells: tuple[int, int] = tuple(_EVOLUTION.macro_num_cells)  # type: ignore[assignment]
    width_mults: tuple[float, ...] = tuple(_EVOLUTION.macro_width_mults)
    span: int = 8


def macro_ranges(run: Any) -> MacroRanges:
    """The ranges a ``SearchRun``'s recipe sets: frames and side as the data's x
    ``evolution.macro_frame_scales`` / ``macro_size_scales``; clips span
    max(frames) x max(stride) frames when the clip may move (``mutation_probs`` entry 6)."""
    e, frames, size = run.evolution, run.data.frames, run.data.size
    choices = tuple(sorted({max(1, round(frames * f)) for f in e.macro_frame_scales}))
    clip_moves = len(e.mutation_probs) > 5 and e.mutation_probs[5] > 0
    span = max(choices) * max(e.macro_frame_stride) if clip_moves else frames
    return MacroRanges(
        frames=choices,
        frame_stride=tuple(e.macro_frame_stride),
        size=tuple(sorted({max(1, round(size * s)) for s in e.macro_size_scales})),
        num_cells=tuple(e.macro_num_cells),
        width_mults=tuple(e.macro_width_mults),
        span=max(span, frames),
    )


def change_clip(
    genotype: Genotype, rng: np.random.Generator, ranges: MacroRanges
) -> tuple[Genotype, dict[str, Any]]:
    """Move one clip axis (frames, frame_stride or size) to another of its choices, keeping
    frames x frame_stride within ``ranges.span``."""
    g = genotype
    options = {
        "frames": [f for f in ranges.frames if f * g.frame_stride <= ranges.span],
        "frame_stride": [s for s in ranges.frame_stride if g.frames * s <= ranges.span],
        "size": list(ranges.size),
    }
    axes = [a for a, vals in options.items() if any(v != getattr(g, a) for v in vals)]
    if not axes:
        raise ValueError("no clip axis has another allowed value")
    axis = axes[int(rng.integers(len(axes)))]
    values = [v for v in options[axis] if v != getattr(g, axis)]
    new = int(values[int(rng.integers(len(values)))])
    child = g.replace(**{axis: new})
    return child, {"kind": "change_clip", "axis": axis, "old": getattr(g, axis), "new": new}


def change_depth(
    genotype: Genotype, rng: np.random.Generator, ranges: MacroRanges
) -> tuple[Genotype, dict[str, Any]]:
    """One cell more or fewer, within ``ranges.num_cells`` (3 or more cells keep 3 stages)."""
    lo, hi = ranges.num_cells
    n = genotype.num_cells
    moves = [m for m in (-1, 1) if lo <= n + m <= hi]
    if not moves:
        raise ValueError(f"num_cells {n} has no neighbour in [{lo}, {hi}]")
    new = n + moves[int(rng.integers(len(moves)))]
    return genotype.replace(num_cells=new), {"kind": "change_depth", "old": n, "new": new}


def scale_width(
    genotype: Genotype,
    rng: np.random.Generator,
    ranges: MacroRanges,
    min_width: int = 4,
    max_width: int = 256,
    divisor: int = 4,
) -> tuple[Genotype, dict[str, Any]]:
    """Every stage width and the stem times one of ``ranges.width_mults`` (X3D's width
    axis), rounded to ``divisor`` and clamped."""
    mult = float(ranges.width_mults[int(rng.integers(len(ranges.width_mults)))])

    def scaled(w: int) -> int:
        return min(max_width, max(min_width, round_width(w * mult, divisor)))

    widths = tuple(scaled(w) for w in genotype.stage_widths)
    child = genotype.replace(stage_widths=widths, stem_channels=scaled(genotype.stem_channels))
    return child, {"kind": "scale_width", "mult": mult, "old": list(genotype.stage_widths),
                   "new": list(widths)}  # fmt: skip
