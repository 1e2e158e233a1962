"""Random search for a family: macro draws within the evolution's ranges."""

import numpy as np

from hybridnas.search.evolution.mutations import MacroRanges
from hybridnas.search.evolution.random_search import random_macro
from hybridnas.space.genotype import CellSpec, Genotype


def test_random_macro_draws_every_axis_within_its_range():
    cell = CellSpec(edges=((0, 2, "conv3d_3x3x3"), (1, 2, "skip")), concat=(2,))
    base = Genotype(cell, cell, stage_widths=(8, 16, 32), stem_channels=16)
    ranges = MacroRanges(
        frames=(4, 8), frame_stride=(1, 2), size=(24, 32), num_cells=(3, 5),
        width_mults=(0.75, 1.25), span=8,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    draws = [random_macro(base, rng, ranges) for _ in range(200)]
    assert all(g.frames * g.frame_stride <= 8 for g in draws)
    assert {(g.frames, g.frame_stride) for g in draws} == {(4, 1), (4, 2), (8, 1)}
    assert {g.size for g in draws} == {24, 32}
    assert {g.num_cells for g in draws} == {3, 4, 5}
    assert {g.stage_widths for g in draws} == {(8, 16, 32), (8, 12, 24), (12, 20, 40)}
    assert all(g.cell("normal") == cell for g in draws)  # the cells are the caller's
