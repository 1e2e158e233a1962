"""The supernet and its architecture parameters.

The architecture (alphas, edge-normalisation betas and which edges are fixed) lives in its
own module, ``Architecture``, outside the supernet. That is deliberate: DDP and DeepSpeed wrap
the supernet's weights only, so ZeRO never partitions an alpha and the alphas are kept equal
on every rank by hand (all-reduced gradients, broadcast at start). The supernet's forward
takes the architecture as an argument::

    logits = supernet(clips, arch)      # clips (B, C, T, H, W) -> logits (B, num_classes)

Every edge has one alpha vector (one ``nn.Parameter`` per edge, not one matrix per cell
type): a fixed edge's alpha then gets no gradient at all, so Adam leaves it untouched instead
of drifting it with momentum and weight decay.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from hybridnas.config import SpaceConfig
from hybridnas.ops import is_op
from hybridnas.space.cells import FREE, PRUNED, SearchCell, edge_list
from hybridnas.space.genotype import CELL_TYPES, CellSpec, Genotype, num_stages
from hybridnas.space.macro import MacroSpec, reads_macro, stream_problem
from hybridnas.space.network import ClassifierHead, build_stems, cell_inputs, cell_plan

_SPACE = SpaceConfig()  # the default search space


@reads_macro
@dataclass(init=False)
class SupernetConfig:
    """Everything that shapes a supernet: the op set, nodes per cell, PC-DARTS partial channels
    (``partial_k`` > 1) and edge normalisation, on the macro skeleton ``macro``.

    Like ``Genotype``, it reads the skeleton's fields through (``config.stage_widths``) and
    takes them as keywords: ``SupernetConfig(op_names=ops, stage_widths=(4, 8, 8))``.
    """

    op_names: list[str] = field(default_factory=lambda: list(_SPACE.op_names))
    steps: int = _SPACE.steps
    partial_k: int = _SPACE.partial_k
    edge_norm: bool = _SPACE.edge_norm
    macro: MacroSpec = field(default_factory=MacroSpec)

    def __init__(
        self,
        op_names: list[str] | None = None,
        steps: int = _SPACE.steps,
        partial_k: int = _SPACE.partial_k,
        edge_norm: bool = _SPACE.edge_norm,
        macro: MacroSpec | None = None,
        **macro_fields,
    ) -> None:
        self.op_names = list(_SPACE.op_names if op_names is None else op_names)
        self.steps, self.partial_k, self.edge_norm = steps, partial_k, edge_norm
        self.macro = replace(macro or MacroSpec(), **macro_fields)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the key of an impossible configuration."""
        unknown = [op for op in self.op_names if not is_op(op)]
        if unknown:
            raise ValueError(f"model.op_names: unknown op(s) {unknown}")
        if len(set(self.op_names)) != len(self.op_names) or len(self.op_names) < 2:
            raise ValueError("model.op_names: needs at least 2 distinct ops")
        if self.steps < 1:
            raise ValueError(f"model.steps must be >= 1, got {self.steps}")
        if self.num_cells < 1:
            raise ValueError(f"model.num_cells must be >= 1, got {self.num_cells}")
        problem = stream_problem(self.streams, self.in_channels)
        if problem:
            raise ValueError(f"data.streams {problem}")
        if len(self.stage_widths) != num_stages(self.num_cells):
            raise ValueError(
                f"model.stage_widths needs {num_stages(self.num_cells)} entries for "
                f"{self.num_cells} cells, got {list(self.stage_widths)}"
            )
        for w in self.stage_widths:
            if w < 1 or w % self.partial_k:
                raise ValueError(
                    f"model.stage_widths: width {w} must be positive and divisible by "
                    f"model.partial_k={self.partial_k}"
                )

    @property
    def num_edges(self) -> int:
        return len(edge_list(self.steps))


class Architecture(nn.Module):
    """Alphas (per cell type, per edge, one logit per op), optional betas, and edge decisions.

    ``edge_state`` (2, E) holds per edge: -1 free, -2 pruned, k >= 0 fixed to op k.
    """

    def __init__(self, num_edges: int, op_names: list[str], edge_norm: bool = False) -> None:
        super().__init__()
        self.op_names = list(op_names)
        self.num_edges = num_edges
        self.edge_norm = edge_norm
        n = len(CELL_TYPES) * num_edges
        self.alphas = nn.ParameterList(
            nn.Parameter(1e-3 * torch.randn(len(op_names))) for _ in range(n)
        )
        self.betas = nn.ParameterList(
            nn.Parameter(1e-3 * torch.randn(())) for _ in range(n if edge_norm else 0)
        )
        self.register_buffer("edge_state", torch.full((len(CELL_TYPES), num_edges), FREE))
        # (cell type, edge) -> op index whose mixing weight is zeroed; transient, not state
        self._masked: dict[tuple[str, int], int] = {}

    def _index(self, cell_type: str, edge: int) -> int:
        return CELL_TYPES.index(cell_type) * self.num_edges + edge

    def state(self, cell_type: str, edge: int) -> int:
        return int(self.edge_state[CELL_TYPES.index(cell_type), edge])

    def is_free(self, cell_type: str, edge: int) -> bool:
        return self.state(cell_type, edge) == FREE

    def fix(self, cell_type: str, edge: int, op_index: int) -> None:
        self.edge_state[CELL_TYPES.index(cell_type), edge] = op_index

    def prune(self, cell_type: str, edge: int) -> None:
        self.edge_state[CELL_TYPES.index(cell_type), edge] = PRUNED

    @contextmanager
    def masked_op(self, cell_type: str, edge: int, op_index: int) -> Iterator[None]:
        """Within the block, op ``op_index`` of free edge ``edge`` mixes with weight 0 (the
        others keep their softmax weights, not renormalised): the perturbation DARTS-PT
        measures. Nothing persistent changes; alphas, decisions and digests stay as they were."""
        if not self.is_free(cell_type, edge):
            raise ValueError(f"edge {edge} of the {cell_type} cell is decided: nothing to mask")
        self._masked[(cell_type, edge)] = op_index
        try:
            yield
        finally:
            del self._masked[(cell_type, edge)]

    def free_mask(self, cell_type: str) -> list[bool]:
        """Per edge, whether it is still free; one host read (no per-edge device sync)."""
        return [s == FREE for s in self.edge_state[CELL_TYPES.index(cell_type)].tolist()]

    def num_free(self) -> int:
        return int((self.edge_state == FREE).sum())

    def op_weights(self, cell_type: str) -> list[torch.Tensor | None]:
        """Softmaxed alphas per free edge, (num_ops,) each; None for decided edges."""
        free = self.free_mask(cell_type)
        weights = [
            torch.softmax(self.alphas[self._index(cell_type, k)], dim=-1) if free[k] else None
            for k in range(self.num_edges)
        ]
        for (masked_type, k), op in self._masked.items():
            if masked_type == cell_type:
                weights[k] = weights[k] * (torch.arange(len(weights[k])) != op).to(weights[k])
        return weights

    def edge_weights(self, cell_type: str, steps: int) -> list[torch.Tensor | None] | None:
        """Edge normalisation: per node, softmax of betas over its free incoming edges."""
        if not self.edge_norm:
            return None
        out: list[torch.Tensor | None] = [None] * self.num_edges
        edges, is_free = edge_list(steps), self.free_mask(cell_type)
        for j in range(2, 2 + steps):
            free = [k for k, (_, jj) in enumerate(edges) if jj == j and is_free[k]]
            if not free:
                continue
            betas = torch.stack([self.betas[self._index(cell_type, k)] for k in free])
            for k, w in zip(free, torch.softmax(betas, dim=0), strict=True):
                out[k] = w
        return out

    @torch.no_grad()
    def alpha_matrix(self, cell_type: str) -> torch.Tensor:
        """(E, num_ops) softmaxed alphas of every edge, fixed ones included, detached."""
        rows = [self.alphas[self._index(cell_type, k)] for k in range(self.num_edges)]
        return torch.softmax(torch.stack(rows), dim=-1)

    @torch.no_grad()
    def beta_vector(self, cell_type: str, steps: int) -> torch.Tensor:
        """(E,) edge-normalisation weights over each node's incoming edges (ones without), on
        the architecture's device (it multiplies device-side alphas)."""
        if not self.edge_norm:
            return torch.ones(self.num_edges, device=self.edge_state.device)
        edges, raw = (
            edge_list(steps),
            torch.stack([self.betas[self._index(cell_type, k)] for k in range(self.num_edges)]),
        )
        out = torch.empty(self.num_edges, device=raw.device)
        for j in range(2, 2 + steps):
            idx = [k for k, (_, jj) in enumerate(edges) if jj == j]
            out[idx] = torch.softmax(raw[idx], dim=0)
        return out


class Supernet(nn.Module):
    """All candidate ops on every edge of every cell; ``forward(clips, arch)`` -> logits."""

    def __init__(self, config: SupernetConfig) -> None:
        super().__init__()
        self.config = c = config
        m = c.macro
        self.stem = build_stems(m)
        self.cells = nn.ModuleList()
        for p in cell_plan(m.num_cells, m.stage_widths, m.stem_channels, (c.steps, c.steps)):
            self.cells.append(
                SearchCell(
                    steps=c.steps,
                    c_pp=p.c_pp,
                    c_p=p.c_p,
                    c=p.c,
                    reduction=p.reduction,
                    reduction_prev=p.reduction_prev,
                    reduction_stride=m.reduction_stride,
                    op_names=c.op_names,
                    partial_k=c.partial_k,
                )
            )
        self.head = ClassifierHead(c.steps * p.c, m.num_classes)
        self._applied_state: list[list[int]] | None = None

    def new_architecture(self) -> Architecture:
        """Fresh architecture parameters matching this supernet."""
        return Architecture(self.config.num_edges, self.config.op_names, self.config.edge_norm)

    def apply_edge_state(self, arch: Architecture) -> None:
        """Copy the architecture's edge decisions into the cells' mixed ops."""
        state = arch.edge_state.tolist()
        if state == self._applied_state:
            return
        for cell in self.cells:
            row = state[int(cell.reduction)]
            for op, s in zip(cell.mixed_ops, row, strict=True):
                op.state = s
        self._applied_state = state

    def forward(self, x: torch.Tensor, arch: Architecture) -> torch.Tensor:
        self.apply_edge_state(arch)
        steps = self.config.steps
        mixing = {t: (arch.op_weights(t), arch.edge_weights(t, steps)) for t in CELL_TYPES}
        s0, s1 = cell_inputs(self.stem, x)
        for cell in self.cells:
            weights, edge_weights = mixing["reduce" if cell.reduction else "normal"]
            s0, s1 = s1, cell(s0, s1, weights, edge_weights)
        return self.head(s1)


# ---------------------------------------------------------------- deriving genotypes


def edge_strengths(arch: Architecture, cell_type: str, steps: int) -> torch.Tensor:
    """(E,) strength of each edge: max over non-none ops of softmax(alpha), times its beta."""
    alphas = arch.alpha_matrix(cell_type).clone()
    if "none" in arch.op_names:
        alphas[:, arch.op_names.index("none")] = -1.0
    return alphas.max(dim=1).values * arch.beta_vector(cell_type, steps)


def best_op(arch: Architecture, cell_type: str, edge: int, banned: set[str] = frozenset()) -> int:
    """Index of the strongest op on an edge, never ``none`` nor a banned name."""
    weights = arch.alpha_matrix(cell_type)[edge]
    order = torch.argsort(weights, descending=True).tolist()
    for k in order:
        name = arch.op_names[k]
        if name != "none" and name not in banned:
            return k
    raise ValueError(f"edge {edge} of the {cell_type} cell has no allowed op")


def derive_cell(
    arch: Architecture, cell_type: str, steps: int, max_skips: int | None = None
) -> CellSpec:
    """DARTS derivation, respecting edges already fixed or pruned by a schedule.

    Per node: fixed edges are kept; the remaining slots (2 per node) go to the strongest free
    edges; each kept free edge takes its argmax op excluding ``none``. With ``max_skips``,
    skips beyond the cap (weakest first) take their next-best op.
    """
    edges = edge_list(steps)
    strength = edge_strengths(arch, cell_type, steps)
    chosen: list[tuple[int, int, int]] = []  # (edge index, node, op index)
    for j in range(2, 2 + steps):
        incoming = [k for k, (_, jj) in enumerate(edges) if jj == j]
        fixed = [k for k in incoming if arch.state(cell_type, k) >= 0]
        free = [k for k in incoming if arch.is_free(cell_type, k)]
        free.sort(key=lambda k: -float(strength[k]))
        keep = fixed + free[: max(0, 2 - len(fixed))]
        for k in sorted(keep):
            state = arch.state(cell_type, k)
            chosen.append((k, j, state if state >= 0 else best_op(arch, cell_type, k)))
    if max_skips is not None and "skip" in arch.op_names:
        chosen = _cap_skips(arch, cell_type, chosen, max_skips, strength)
    spec_edges = tuple((edges[k][0], j, arch.op_names[o]) for k, j, o in chosen)
    return CellSpec(edges=spec_edges, concat=tuple(range(2, 2 + steps)))


def _cap_skips(arch, cell_type, chosen, max_skips, strength):
    skip = arch.op_names.index("skip")
    skips = [c for c in chosen if c[2] == skip and arch.state(cell_type, c[0]) < 0]
    fixed_skips = sum(1 for c in chosen if c[2] == skip) - len(skips)
    allowed = max(0, max_skips - fixed_skips)
    skips.sort(key=lambda c: -float(strength[c[0]]))
    demote = {c[0] for c in skips[allowed:]}
    return [
        (k, j, best_op(arch, cell_type, k, {"skip"}) if k in demote else o) for k, j, o in chosen
    ]


def derive_genotype(
    supernet: Supernet, arch: Architecture, *, max_skips: int | None = None, **meta
) -> Genotype:
    """The genotype the current architecture parameters and edge decisions describe."""
    c = supernet.config
    cells = {t: derive_cell(arch, t, c.steps, max_skips) for t in CELL_TYPES}
    return Genotype(normal=cells["normal"], reduce=cells["reduce"], macro=c.macro, meta=meta)
