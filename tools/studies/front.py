"""The front benchmark: accuracy against measured latency, found nets against hand-designed ones.

    python tools/bench.py front                                   # baselines (+ placeholder)
    python tools/bench.py front --found runs/<search>/family      # add the found family
    python tools/bench.py front --random runs/<random>/family     # add random search's family

Every row (a network) is trained with one common recipe (``recipes/bench/front.yaml``) for
each of its seeds on each task; each finished (task, row, seed) is appended to
``OUT/rows.jsonl`` at once, so a killed run continues where it stopped and rows added later
never retrain the finished ones. Latency: all rows' networks built in one process and timed in
interleaved rounds (batch 1, one thread), median ms per clip (``OUT/latency.json``, measured
again whenever the set of rows changes, so the ratios always come from one side-by-side run).
``front.json``, ``front.png`` and ``front.md`` (tools/studies/front_report.py) are rewritten
after every row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf
from torch import nn

from hybridnas.groundtruth.recipe import (
    Clips,
    accuracy,
    load_clips,
    recompute_bn_stats,
    train_network,
)
from hybridnas.measure.counts import count_flops, count_params, measure_latency
from hybridnas.models import build_model, resolve_genotype
from hybridnas.models.baselines import SMALL_INPUT_STRIDES, create_frame2d, create_tsm

ROOT = Path(__file__).resolve().parents[2]
RECIPE_PATH = ROOT / "recipes" / "bench" / "front.yaml"
OUT_DIR = ROOT / "tools" / "studies" / "results" / "front"
_NOT_HASHED = ("tasks", "latency_rounds", "latency_min_run_time")


@dataclass(frozen=True)
class FrontRecipe:
    """The common recipe (fields of ``recipes/bench/front.yaml``); ``task`` is set per task.
    Its field names match :class:`GroundTruthRecipe`'s, so groundtruth's data loader and
    training loop run it unchanged."""

    frames: int = 8
    size: int = 32
    render_size: int = 32
    data_seed: int = 0
    num_train: int = 1500
    num_search_val: int = 1000
    num_test: int = 500
    train_clips: int = 1500
    val_clips: int = 0
    epochs: int = 4
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 0.05
    grad_clip: float = 5.0
    dropout: float = 0.2
    bn_stats_clips: int = 500
    task: str = "which_moves"
    tasks: tuple[str, ...] = ("which_moves", "motion_code")
    latency_rounds: int = 7
    latency_min_run_time: float = 0.1

    @classmethod
    def load(cls, path: str | Path = RECIPE_PATH, overrides: tuple[str, ...] = ()) -> FrontRecipe:
        """The recipe of a YAML file, with ``key=value`` overrides (typed by OmegaConf)."""
        cfg = OmegaConf.merge(
            OmegaConf.structured(cls), OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides))
        )
        recipe = OmegaConf.to_object(cfg)
        return dataclasses.replace(recipe, tasks=tuple(recipe.tasks))

    def hash(self) -> str:
        """Short SHA-256 of the training fields (not the task, tasks or latency settings)."""
        doc = {k: v for k, v in asdict(self).items() if k not in (*_NOT_HASHED, "task")}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class RowSpec:
    """One row of the front: a network and how many seeds it is trained with.

    ``model``: ``c3d``, ``r2plus1d_18``, ``x3d_xs_ti``, ``tsm``, ``frame2d`` or ``genotype``;
    ``knobs``: its size (``width``, ``width_factor`` or, for a genotype, ``width_mult``);
    ``genotype``: a genotype JSON (or ``builtin``) for ``model="genotype"``."""

    name: str
    kind: str  # found | baseline | random
    family: str
    model: str
    knobs: dict[str, float] = field(default_factory=dict)
    seeds: int = 2
    genotype: str | None = None
    digest: str | None = None  # SHA-256 prefix of the genotype file: a changed file is refused

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def baseline_rows() -> list[RowSpec]:
    """The hand-designed families, three sizes each, 2 seeds (3 for ``c3d_w10``)."""
    sizes = {
        ("c3d", "c3d", "width"): (6, 8, 10),
        ("r2plus1d_18", "r2plus1d_18", "width"): (4, 8, 12),
        ("x3d_xs", "x3d_xs_ti", "width_factor"): (0.25, 0.5, 0.75),
        ("tsm", "tsm", "width"): (8, 16, 24),
        ("frame2d", "frame2d", "width"): (8, 12, 16),
    }
    rows = []
    for (family, model, knob), values in sizes.items():
        for v in values:
            name = f"{family}_{'w' if knob == 'width' else 'x'}{v:g}"
            seeds = 3 if name == "c3d_w10" else 2
            rows.append(RowSpec(name, "baseline", family, model, {knob: v}, seeds))
    return rows


def placeholder_found_rows() -> list[RowSpec]:
    """Stand-ins for the found family until a search exports one: the shipped genotype
    (``genotype=builtin``, found by SDAS + evolution) at width x0.5 and x1, 3 seeds each."""
    return [
        RowSpec(
            f"builtin_x{m:g}",
            "found",
            "builtin_genotype",
            "genotype",
            {"width_mult": m},
            3,
            "builtin",
        )  # fmt: skip
        for m in (0.5, 1.0)
    ]


def genotype_rows(paths: list[str], kind: str, family: str, seeds: int = 3) -> list[RowSpec]:
    """One row per genotype JSON (a folder: its numbered ``<k>.json`` members, e.g.
    ``runs/<search>/family``), named ``<family>_<file stem>``."""
    files: list[Path] = []
    for p in map(Path, paths):
        files += sorted(f for f in p.glob("*.json") if f.stem.isdigit()) if p.is_dir() else [p]
    if not files:
        raise ValueError(f"no genotype JSON under {paths}")
    return [
        RowSpec(f"{family}_{f.stem}", kind, family, "genotype", {}, seeds, str(f), _digest(f))
        for f in files
    ]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def build_row(spec: RowSpec, recipe: FrontRecipe, num_classes: int = 10) -> nn.Module:
    """The row's network for (B, 3, frames, size, size) clips -> (B, num_classes) logits."""
    shape = {"num_classes": num_classes, "frames": recipe.frames, "size": recipe.size}
    k, drop = spec.knobs, recipe.dropout
    if spec.model == "c3d":
        return build_model("c3d", **shape, c3d_width=int(k["width"]), dropout=drop)
    if spec.model == "r2plus1d_18":
        return build_model(
            "r2plus1d_18", **shape, r2plus1d_width=int(k["width"]), dropout=drop,
            spatial_strides=SMALL_INPUT_STRIDES,
        )  # fmt: skip
    if spec.model == "x3d_xs_ti":
        return build_model(
            "x3d_xs_ti", **shape, x3d_width_factor=float(k["width_factor"]), dropout=drop,
            spatial_strides=SMALL_INPUT_STRIDES,
        )  # fmt: skip
    if spec.model == "tsm":
        return create_tsm(
            num_classes=num_classes, frames=recipe.frames, width=int(k["width"]), dropout=drop
        )
    if spec.model == "frame2d":
        return create_frame2d(num_classes=num_classes, width=int(k["width"]), dropout=drop)
    if spec.model == "genotype":
        cfg = {"genotype": spec.genotype, "width_mult": k.get("width_mult")}
        g = resolve_genotype(cfg, **shape)
        return build_model("genotype", **shape, genotype=g, dropout=drop)
    raise ValueError(f"unknown front model {spec.model!r}")


def predicted_ms(spec: RowSpec, model: nn.Module) -> float | None:
    """The latency table's prediction for a genotype row (this device's cached one-thread
    table; parts it lacks are measured into it); None for a baseline, whose parts the table,
    built from the search space, does not hold."""
    genotype = getattr(model, "genotype", None)
    if spec.model != "genotype" or genotype is None:
        return None
    from hybridnas.measure.latency_table import open_table

    return open_table().predict_ms(genotype)


# ---------------------------------------------------------------- training


def train_row(
    spec: RowSpec, recipe: FrontRecipe, seed: int, clips: dict[str, Clips]
) -> dict[str, Any]:
    """Train one (row, seed) on ``recipe.task``'s clips; the JSONL record of the result."""
    torch.manual_seed(seed)
    model = build_row(spec, recipe)
    start = time.perf_counter()
    losses = train_network(model, clips["train"], recipe, seed)  # type: ignore[arg-type]
    if recipe.bn_stats_clips:
        recompute_bn_stats(model, clips["train"].x[: recipe.bn_stats_clips], recipe.batch_size)
    return {
        "task": recipe.task,
        "name": spec.name,
        "seed": seed,
        "acc": accuracy(model, clips["test"]),
        "train_loss": losses[-1],
        "seconds": time.perf_counter() - start,
        "params": count_params(model),
        "mflops": count_flops(model, (3, recipe.frames, recipe.size, recipe.size)) / 1e6,
        "recipe": recipe.hash(),
        "spec": spec.to_dict(),
    }


def read_rows(path: Path, recipe_hash: str) -> list[dict[str, Any]]:
    """The JSONL's records trained with this recipe (others are ignored, never mixed)."""
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r["recipe"] == recipe_hash]


def pending(
    specs: list[RowSpec],
    tasks: tuple[str, ...],
    done: set[tuple[str, str, int]],
    ms: dict[str, float] | None = None,
) -> list[tuple[str, int, RowSpec]]:
    """(task, seed, row) still to train: task by task, seed-major (every row's seed 0 first),
    within a seed the fastest nets (``ms``) first, so a stopped run holds the most rows."""
    ms = ms or {}
    ordered = sorted(specs, key=lambda s: ms.get(s.name, 0.0))
    todo = []
    for task in tasks:
        for seed in range(max(s.seeds for s in specs)):
            todo += [(task, seed, s) for s in ordered if seed < s.seeds]
    return [t for t in todo if (t[0], t[2].name, t[1]) not in done]


def all_specs(specs: list[RowSpec], records: list[dict[str, Any]]) -> list[RowSpec]:
    """The plan's rows plus any row already in the JSONL (rows of an earlier plan stay); a
    planned row whose name the JSONL holds for another network is refused, never mixed."""
    out = {s.name: s for s in specs}
    for r in records:
        stored = RowSpec(**r["spec"])
        if out.setdefault(r["name"], stored) != stored:
            raise ValueError(
                f"row {r['name']!r} is in rows.jsonl as {stored} but planned as "
                f"{out[r['name']]}: give the new network another name (e.g. --found-family)"
            )
    return list(out.values())


# ---------------------------------------------------------------- latency


def measure_front_latency(specs: list[RowSpec], recipe: FrontRecipe, seed: int = 0) -> dict:
    """Every row's network built in this process, then ``recipe.latency_rounds`` rounds; in
    each round every net (shuffled order) is timed by ``measure_latency`` (batch 1, one
    thread). ms = median of a net's per-round medians; every round's value is kept."""
    torch.set_num_threads(1)
    load_before = list(os.getloadavg())  # 1/5/15-min load: the box is shared
    models = {s.name: build_row(s, recipe).eval() for s in specs}
    shape = (3, recipe.frames, recipe.size, recipe.size)
    rng = np.random.default_rng(seed)
    per_round: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(recipe.latency_rounds):
        for i in rng.permutation(len(specs)):
            name = specs[i].name
            r = measure_latency(
                models[name], shape, threads=1, min_run_time=recipe.latency_min_run_time
            )
            per_round[name].append(r.median_ms)
    return {
        "ms": {n: float(np.median(v)) for n, v in per_round.items()},
        "ms_predicted": {s.name: predicted_ms(s, models[s.name]) for s in specs},
        "rounds": per_round,
        "threads": 1,
        "batch_size": 1,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_before": load_before,
        "load_after": list(os.getloadavg()),
    }


def latency_for(specs: list[RowSpec], recipe: FrontRecipe, path: Path, force: bool) -> dict:
    """The stored side-by-side measurement if it covers exactly these rows, else a new one."""
    names = sorted(s.name for s in specs)
    if path.is_file() and not force:
        stored = json.loads(path.read_text())
        if sorted(stored["ms"]) == names:
            return stored
    print(f"[front] measuring latency of {len(specs)} nets side by side", flush=True)
    lat = measure_front_latency(specs, recipe)
    path.write_text(json.dumps(lat, indent=1))
    return lat


# ---------------------------------------------------------------- the command


def run_front(
    specs: list[RowSpec],
    recipe: FrontRecipe,
    out: Path = OUT_DIR,
    *,
    report_only: bool = False,
    remeasure: bool = False,
    judge_family: str | None = None,
) -> dict:
    """Train what ``OUT/rows.jsonl`` lacks (appending each record as it finishes), measure
    latency, and write front.json / front.png / front.md after every row (claims on the found
    rows of ``judge_family``, None: all); returns front.json."""
    from studies.front_report import write_front

    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    records = read_rows(rows_path, recipe.hash())
    specs = all_specs(specs, records)
    lat = latency_for(specs, recipe, out / "latency.json", remeasure)
    doc = write_front(records, specs, lat, recipe, out, judge_family)
    if report_only:
        return doc
    done = {(r["task"], r["name"], r["seed"]) for r in records}
    clips: dict[str, dict[str, Clips]] = {}
    for task, seed, spec in pending(specs, recipe.tasks, done, lat["ms"]):
        task_recipe = dataclasses.replace(recipe, task=task)
        if task not in clips:
            clips = {task: load_clips(task_recipe)}  # type: ignore[arg-type]
        record = train_row(spec, task_recipe, seed, clips[task])
        with rows_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        records.append(record)
        print(
            f"[front] {task} {spec.name} seed {seed}: top-1 {record['acc']:.3f} "
            f"({record['seconds']:.0f} s)",
            flush=True,
        )
        doc = write_front(records, specs, lat, recipe, out, judge_family)
    return doc
