"""Neural search-space evolution (NSE): rounds of the differentiable search over an op pool.

One supernet holding every op of a large pool on every edge is capped by memory and time. NSE
searches the pool round by round instead (``search.nse.*``)::

    round 0:  supernet of keep + batch fresh pool ops   --SDAS search--> decisions, alphas
    round r:  supernet of the kept ops + batch fresh ops --SDAS search--> ...
              (the kept ops start from the weights round r-1 trained, copied exactly)
    end of a round: the ops the round's genotype uses most (ties: most alpha mass) are kept

Each round is one ``run_differentiable`` (its own folder ``nse/round_<r>``, checkpoints and
resume included), so a round costs ``search.epochs`` x ``search.steps_per_epoch`` steps.
``none`` is no candidate: every round's supernet holds it when the pool does. The last round's
genotype is the result; with ``multi_branch_k`` > 1 an edge whose alphas do not separate keeps
its top-k ops as a multi-branch edge (``a+b``, mixed by learned weights in the network).
``nse_history.json`` and ``nse_history.png`` record the pool, each round's ops, kept ops and
alphas.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hybridnas.config import ConfigError, SearchRun
from hybridnas.config.search import NSEConfig
from hybridnas.engine.distributed import DistContext, barrier
from hybridnas.engine.tracking import Tracker
from hybridnas.ops.registry import BRANCH_SEP, is_op, list_ops
from hybridnas.search.differentiable.architect import LossFn
from hybridnas.search.differentiable.loop import run_differentiable
from hybridnas.search.differentiable.state import SearchState
from hybridnas.space.cells import edge_list
from hybridnas.space.genotype import CELL_TYPES, CellSpec, Genotype
from hybridnas.space.supernet import Architecture, Supernet

#: An edge's alphas separate when its chosen op weighs at least this many times any other op;
#: ops closer than that join it as branches (multi_branch_k > 1).
SEPARATION = 2.0
_OP_KEY = re.compile(r"^(cells\.\d+\.mixed_ops\.\d+\.ops\.)(\d+)(\..+)$")


def pool_ops(n: NSEConfig) -> tuple[str, ...]:
    """The pool's ops other than ``none`` (which every round's supernet holds when the pool
    does): the ops rounds draw, rank and keep."""
    pool = tuple(list_ops()) if n.pool is None else n.pool
    return tuple(op for op in pool if op != "none")


def check_pool(n: NSEConfig) -> None:
    """Refuse, in one line, a pool naming an unregistered op or too small for keep + batch."""
    unknown = [op for op in n.pool or () if not is_op(op)]
    if unknown:
        raise ConfigError(f"search.nse.pool: unknown op(s) {unknown}; known: {list_ops()}")
    ops = pool_ops(n)
    if n.rounds and n.keep + n.batch > len(ops):
        raise ConfigError(
            f"search.nse.keep + search.nse.batch = {n.keep + n.batch} must be at most the "
            f"pool's {len(ops)} ops other than none"
        )


def draw_order(n: NSEConfig, seed: int) -> list[str]:
    """The pool's candidate ops in the order rounds draw them (a seeded permutation)."""
    ops = list(pool_ops(n))
    return [ops[k] for k in np.random.default_rng([seed, 26]).permutation(len(ops))]


def fresh_ops(order: list[str], kept: list[str], seen: set[str], n: NSEConfig) -> list[str]:
    """The round's new ops: ``batch`` of them (round 0: ``keep + batch``), never-seen ops first
    in draw order, then (the pool exhausted) ops seen before but not kept."""
    want = n.batch if kept else n.keep + n.batch
    unseen = [op for op in order if op not in seen]
    again = [op for op in order if op in seen and op not in kept]
    return (unseen + again)[:want]


def inherit_weights(old_ops: list[str], old_state: dict[str, torch.Tensor], new: Supernet) -> dict:
    """Copy into ``new`` every tensor of a previous round's supernet (its op names and state
    dict) that has a place in it: the stems, the cells' preprocessing, the head, and per edge the
    ops both supernets hold (matched by name). Returns the counts of copied and fresh tensors."""
    old_index = {name: k for k, name in enumerate(old_ops)}
    state = new.state_dict()
    copied = fresh = 0
    for key, tensor in state.items():
        source = _source_key(key, new.config.op_names, old_index)
        if source is None or source not in old_state:
            fresh += 1
            continue
        if old_state[source].shape != tensor.shape:
            shapes = f"{tuple(old_state[source].shape)} vs {tuple(tensor.shape)}"
            raise ValueError(f"NSE inheritance: {key} {shapes}: the rounds' skeletons differ")
        state[key] = old_state[source].to(tensor.device)
        copied += 1
    new.load_state_dict(state)
    return {"copied_tensors": copied, "fresh_tensors": fresh}


def _source_key(key: str, new_ops: list[str], old_index: dict[str, int]) -> str | None:
    match = _OP_KEY.match(key)
    if match is None:
        return key
    old = old_index.get(new_ops[int(match.group(2))])
    return None if old is None else f"{match.group(1)}{old}{match.group(3)}"


def rank_ops(arch: Architecture, genotype: Genotype) -> list[dict[str, Any]]:
    """The round's candidate ops (``none`` excluded), best first: by how many edges of the
    round's genotype use them (its decisions), then by alpha mass (mean softmax weight over
    every edge of both cell types)."""
    used: dict[str, int] = {}
    for cell_type in CELL_TYPES:
        for _, _, op in genotype.cell(cell_type).edges:
            for part in op.split(BRANCH_SEP):
                used[part] = used.get(part, 0) + 1
    mass = torch.stack([arch.alpha_matrix(t) for t in CELL_TYPES]).mean(dim=(0, 1))
    rows = [
        {"op": name, "decisions": used.get(name, 0), "alpha_mass": round(float(mass[k]), 6)}
        for k, name in enumerate(arch.op_names)
        if name != "none"
    ]
    return sorted(rows, key=lambda r: (-r["decisions"], -r["alpha_mass"]))


def widen_edges(genotype: Genotype, arch: Architecture, k: int) -> Genotype:
    """Each edge's op joined (``a+b``) by up to ``k - 1`` other ops its alphas do not separate
    from it (weight times ``SEPARATION`` above the chosen op's), strongest first."""
    if k < 2:
        return genotype
    steps = len(genotype.normal.concat)
    edges = edge_list(steps)
    cells = {}
    for cell_type in CELL_TYPES:
        weights = arch.alpha_matrix(cell_type)
        spec = genotype.cell(cell_type)
        new_edges = []
        for i, j, op in spec.edges:
            row = weights[edges.index((i, j))]
            chosen = float(row[arch.op_names.index(op)])
            others = [
                arch.op_names[o]
                for o in torch.argsort(row, descending=True).tolist()
                if arch.op_names[o] not in ("none", op) and float(row[o]) * SEPARATION > chosen
            ]
            new_edges.append((i, j, BRANCH_SEP.join([op, *others[: k - 1]])))
        cells[cell_type] = CellSpec(edges=tuple(new_edges), concat=spec.concat)
    return genotype.replace(normal=cells["normal"], reduce=cells["reduce"])


class RoundTracker:
    """The run's tracker with a round's steps shifted past the earlier rounds' (every round's
    loop counts from 0) and ``nse/round`` added to each logged row."""

    def __init__(self, tracker: Tracker, round_index: int, offset: int) -> None:
        self.tracker, self.round_index, self.offset = tracker, round_index, offset

    def log(self, metrics: dict, step: int) -> None:
        self.tracker.log({**metrics, "nse/round": self.round_index}, step=step + self.offset)

    def log_image(self, key: str, png_path: str | Path, step: int) -> None:
        self.tracker.log_image(f"nse/round_{self.round_index}/{key}", png_path, step + self.offset)

    def log_table(self, key: str, columns: list, rows: list, step: int) -> None:
        self.tracker.log_table(key, columns, rows, step + self.offset)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tracker, name)


def run_nse(
    cfg: SearchRun,
    ctx: DistContext,
    run_dir: Path,
    tracker: Tracker,
    loss_fn: LossFn = F.cross_entropy,
) -> tuple[Genotype, SearchState]:
    """Run ``search.nse.rounds`` rounds; return (and write) the last round's genotype, widened
    to multi-branch edges with ``multi_branch_k`` > 1, and the last round's state."""
    n = cfg.search.nse
    check_pool(n)
    order = draw_order(n, cfg.seed)
    kept: list[str] = []
    seen: set[str] = set()
    previous: tuple[list[str], dict[str, torch.Tensor]] | None = None
    history: list[dict[str, Any]] = []
    offset, seconds = 0, 0.0
    for r in range(n.rounds):
        fresh = fresh_ops(order, kept, seen, n)
        seen.update(fresh)
        ops = [*(["none"] if n.has_none else []), *kept, *fresh]
        round_cfg = replace(cfg, seed=cfg.seed + r, model=replace(cfg.model, op_names=tuple(ops)))
        inherited: dict = {}

        def prepare(st: SearchState, previous=previous, inherited=inherited) -> None:
            if previous is not None:
                inherited.update(inherit_weights(*previous, st.supernet))

        round_dir = run_dir / "nse" / f"round_{r}"
        round_dir.mkdir(parents=True, exist_ok=True)
        genotype, st = run_differentiable(
            round_cfg,
            ctx,
            round_dir,
            RoundTracker(tracker, r, offset),
            loss_fn,
            prepare=prepare,
        )
        ranking = rank_ops(st.arch, genotype)
        history.append(round_record(r, st, genotype, ranking, fresh, kept, n.keep, inherited))
        kept = [row["op"] for row in ranking[: n.keep]]
        trained = {k: v.detach().cpu().clone() for k, v in st.supernet.state_dict().items()}
        previous = (list(st.arch.op_names), trained)
        offset += st.global_step
        seconds += sum(st.epoch_times)
    genotype = widen_edges(genotype, st.arch, n.multi_branch_k)
    nse_meta = {"rounds": n.rounds, "kept": kept, "multi_branch_k": n.multi_branch_k}
    genotype = genotype.replace(
        meta={
            **genotype.meta,
            "seed": cfg.seed,
            "search_time_s": round(seconds, 2),
            "nse": nse_meta,
        }
    )
    if ctx.is_main:
        write_nse_outputs(run_dir, st, genotype, n, order, history, tracker)
    barrier(ctx)
    return genotype, st


def round_record(
    r: int,
    st: SearchState,
    genotype: Genotype,
    ranking: list[dict],
    fresh: list[str],
    inherited_ops: list[str],
    keep: int,
    inheritance: dict | None = None,
) -> dict[str, Any]:
    """One round of ``nse_history.json``."""
    return {
        "round": r,
        "ops": list(st.arch.op_names),
        "fresh": fresh,
        "inherited": inherited_ops,
        "inheritance": inheritance or {},
        "kept": [row["op"] for row in ranking[:keep]],
        "ranking": ranking,
        "alphas": {t: st.arch.alpha_matrix(t).tolist() for t in CELL_TYPES},
        "edge_state": st.arch.edge_state.tolist(),
        "genotype": genotype.to_dict(),
        "steps": st.global_step,
        "search_s": round(sum(st.epoch_times), 2),
    }


def write_nse_outputs(
    run_dir: Path,
    st: SearchState,
    genotype: Genotype,
    n: NSEConfig,
    order: list[str],
    history: list[dict],
    tracker: Tracker,
) -> None:
    """genotype.json and alphas.json (the last round's) in the run folder, the round history
    and its picture."""
    genotype.save(run_dir / "genotype.json")
    shutil.copyfile(st.run_dir / "alphas.json", run_dir / "alphas.json")
    doc = {
        "pool": list(pool_ops(n)),
        "draw_order": order,
        "config": {"rounds": n.rounds, "batch": n.batch, "keep": n.keep,
                   "multi_branch_k": n.multi_branch_k},
        "steps": st.cfg.model.steps,
        "edges": [list(e) for e in edge_list(st.cfg.model.steps)],
        "rounds": history,
        "genotype": genotype.to_dict(),
    }  # fmt: skip
    (run_dir / "nse_history.json").write_text(json.dumps(doc, indent=1))
    picture = plot_nse_history(doc, run_dir / "nse_history.png")
    tracker.log_json("genotype", genotype.to_dict())
    tracker.log_image("search/nse_history", picture, 0)
    tracker.summary(
        {"search/genotype": genotype.to_json(), "nse/kept": ",".join(history[-1]["kept"])}
    )


def plot_nse_history(doc: dict, path: Path) -> Path:
    """Heat map of the history: one row per pool op (in draw order), one column per round, the
    op's alpha mass in that round (blank: not in the round); kept ops marked K, the number of
    genotype edges using the op written beside."""
    from hybridnas.viz import _save, plt

    ops, rounds = doc["draw_order"], doc["rounds"]
    grid = np.full((len(ops), len(rounds)), np.nan)
    fig, ax = plt.subplots(figsize=(2.5 + 1.1 * len(rounds), 1.5 + 0.28 * len(ops)))
    for c, rec in enumerate(rounds):
        for row in rec["ranking"]:
            k = ops.index(row["op"])
            grid[k, c] = row["alpha_mass"]
            mark = ("K " if row["op"] in rec["kept"] else "") + str(row["decisions"])
            ax.text(c, k, mark, ha="center", va="center", fontsize=7, color="white")
    im = ax.imshow(grid, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(ops)))
    ax.set_yticklabels(ops, fontsize=7)
    ax.set_xticks(range(len(rounds)))
    ax.set_xticklabels([f"round {r['round']}" for r in rounds], fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.05, label="alpha mass (mean softmax weight)")
    ax.set_title("NSE rounds: K = kept (weights inherited), number = genotype edges", fontsize=8)
    return _save(fig, path)
