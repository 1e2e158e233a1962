"""The macro skeleton shared by the supernet and by networks built from genotypes.

::

    clip (B, C_in, T, H, W)
      -> stem: Conv3d(kernel, stride) -> BN                      (B, stem, T, H, W)
      -> cell 0 .. cell N-1   (reduction cells at 1/3 and 2/3 depth halve H, W (and T))
      -> global average pool -> dropout -> Linear                (B, num_classes)

Each cell takes the outputs of the two previous cells. ``Network(genotype)`` is the fixed
network a genotype describes; the supernet reuses ``build_stems``, ``cell_inputs`` and
``cell_plan``.

Two streams (``genotype.streams == ("rgb", "motion")``): the clip stacks them on channels, each
goes through its own stem, and the two stem outputs are the first cell's two inputs, in the
order the genotype lists the streams::

    clip (B, 6, T, H, W) -> split -> rgb (B, 3, ...)    -> rgb stem    -> c_{k-2}  (node 0)
                                  -> motion (B, 3, ...) -> motion stem -> c_{k-1}  (node 1)
    cell 0 (nodes 0, 1 = rgb, motion):     its edges from 0 and 1 mix the streams
    cell 1 (nodes 0, 1 = motion, cell 0):  the second stream reaches cell 1 directly, as c_{k-2}
    cell 2 ... as in one stream

So the cross-stream connections are the DARTS cells' own edges: a node of the first cell fed
(directly or through earlier nodes) from both nodes 0 and 1 fuses the streams, one fed from
only one of them stays within that stream, and the second cell again chooses between the
second stream and the fused output. The search needs nothing new: the supernet's first two
cells search these edges like any other. The price of this simplicity: a cell type's edges
are shared by all its cells, so the edges that read the streams in cell 0 are the same edges
that read the two previous cells in the later cells of its type.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hybridnas.ops import ConvBN, FastConv3d
from hybridnas.space.cells import Cell
from hybridnas.space.genotype import Genotype, reduction_indices
from hybridnas.space.macro import MacroSpec


@dataclass(frozen=True)
class CellPlan:
    """Where one cell sits: its input widths, its node width and whether it reduces."""

    index: int
    c_pp: int
    c_p: int
    c: int
    reduction: bool
    reduction_prev: bool


def build_stem(in_channels: int, channels: int, kernel, stride) -> nn.Sequential:
    """Conv3d -> BN stem: (B, in_channels, T, H, W) -> (B, channels, T/st, H/sh, W/sw)."""
    padding = tuple(k // 2 for k in kernel)
    return ConvBN(
        FastConv3d(in_channels, channels, tuple(kernel), tuple(stride), padding, bias=False),
        nn.BatchNorm3d(channels),
    )


class StreamStems(nn.Module):
    """One stem per stream: (B, S * C, T, H, W) clips, streams stacked on channels in order ->
    (first stream's, last stream's) stem outputs, each (B, stem, T', H', W')."""

    def __init__(self, streams, in_channels: int, channels: int, kernel, stride) -> None:
        super().__init__()
        self.streams = tuple(streams)
        self.per_stream = in_channels // len(self.streams)
        self.stems = nn.ModuleDict(
            {s: build_stem(self.per_stream, channels, kernel, stride) for s in self.streams}
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        parts = torch.split(x, self.per_stream, dim=1)
        outs = [self.stems[s](part) for s, part in zip(self.streams, parts, strict=True)]
        return outs[0], outs[-1]


def build_stems(macro: MacroSpec) -> nn.Module:
    """The stem of ``macro``'s one stream (a plain ``build_stem``), or ``StreamStems``."""
    m = macro
    if len(m.streams) == 1:
        return build_stem(m.in_channels, m.stem_channels, m.stem_kernel, m.stem_stride)
    return StreamStems(m.streams, m.in_channels, m.stem_channels, m.stem_kernel, m.stem_stride)


def cell_inputs(stem: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first cell's (s0, s1): one stem's output twice, or the two streams' stems."""
    out = stem(x)
    return out if isinstance(out, tuple) else (out, out)


def cell_plan(
    num_cells: int,
    stage_widths: tuple[int, ...],
    stem_channels: int,
    multipliers: tuple[int, int],
) -> list[CellPlan]:
    """Per-cell widths: stage s uses ``stage_widths[s]``; a normal (reduction) cell outputs
    ``multipliers[0] * c`` (``multipliers[1] * c``) channels, its number of concatenated nodes."""
    reductions = reduction_indices(num_cells)
    plans, stage = [], 0
    c_pp = c_p = stem_channels
    reduction_prev = False
    for i in range(num_cells):
        reduction = i in reductions
        stage += int(reduction)
        c = stage_widths[stage]
        plans.append(CellPlan(i, c_pp, c_p, c, reduction, reduction_prev))
        c_pp, c_p, reduction_prev = c_p, multipliers[int(reduction)] * c, reduction
    return plans


class ClassifierHead(nn.Sequential):
    """(B, C, T, H, W) -> global average pool -> dropout -> (B, num_classes)."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__(
            nn.AdaptiveAvgPool3d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(channels, num_classes),
        )


class Network(nn.Module):
    """The fixed network of a genotype: (B, C, T, H, W) clips -> (B, num_classes) logits.

    ``connection_weights``: every cell sums its node inputs with learned sigmoid weights
    (AssembleNet; see ``Cell``), read back per cell type by ``read_connection_weights``."""

    def __init__(
        self,
        genotype: Genotype,
        *,
        num_classes: int | None = None,
        dropout: float = 0.0,
        connection_weights: bool = False,
    ) -> None:
        super().__init__()
        self.genotype = genotype
        self.num_classes = num_classes or genotype.num_classes
        g = genotype
        self.stem = build_stems(g.macro)
        self.cells = nn.ModuleList()
        multipliers = (len(g.normal.concat), len(g.reduce.concat))
        for p in cell_plan(g.num_cells, g.stage_widths, g.stem_channels, multipliers):
            cell = Cell(
                g.reduce if p.reduction else g.normal,
                c_pp=p.c_pp,
                c_p=p.c_p,
                c=p.c,
                reduction=p.reduction,
                reduction_prev=p.reduction_prev,
                reduction_stride=g.reduction_stride,
                connection_weights=connection_weights,
            )
            self.cells.append(cell)
            c_out = multipliers[int(p.reduction)] * p.c
        self.head = ClassifierHead(c_out, self.num_classes, dropout)

    def set_drop_path(self, prob: float) -> None:
        for cell in self.cells:
            cell.drop_prob = prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0, s1 = cell_inputs(self.stem, x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.head(s1)


def build_network(
    genotype: Genotype,
    *,
    num_classes: int | None = None,
    dropout: float = 0.0,
    connection_weights: bool = False,
) -> Network:
    """Build the fixed network a genotype describes (``connection_weights``: see Network)."""
    return Network(
        genotype, num_classes=num_classes, dropout=dropout, connection_weights=connection_weights
    )


def read_connection_weights(model: Network) -> dict[str, list[list]] | None:
    """The learned connection weights of a network built with ``connection_weights``, averaged
    over the cells of each type: {"normal": [[i, j, weight], ...], "reduce": [...]} in each
    cell spec's edge order; None for a network without them."""
    out: dict[str, list[list]] = {}
    reductions = model.genotype.reduction_indices()
    for cell_type in ("normal", "reduce"):
        cells = [
            c for k, c in enumerate(model.cells) if (k in reductions) == (cell_type == "reduce")
        ]
        weights = [c.connection_strengths() for c in cells]
        if not cells or weights[0] is None:
            continue
        mean = torch.stack(weights).mean(0).tolist()
        out[cell_type] = [
            [i, j, round(w, 6)] for (i, j, _), w in zip(cells[0].spec.edges, mean, strict=True)
        ]
    return out or None
