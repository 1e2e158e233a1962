"""Ops benchmark: every registered op at the shapes the default supernet gives it.

    python tools/bench.py ops                        # this code, 1 thread and all threads
    python tools/bench.py ops --against 14565e5      # and, side by side, the ops of a commit

Each op is timed in isolation on a batch of clips, forward (eval, inference mode) and
forward+backward (train mode), in interleaved rounds in one process (every op once per round,
so load that drifts during the run hits all ops alike); the figure is the median ms per clip.
With ``--against`` the same ops are built from the package as it was at that commit (imported
side by side under its own modules), so "before" and "after" come from the same rounds.
"""

from __future__ import annotations

import importlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from hybridnas.ops.choice import CALLS_TO_CHOOSE

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_OP = "conv3d_3x3x3"


@dataclass(frozen=True)
class OpShape:
    """Where an op sits in the supernet: its channels, stride and input (C, T, H, W)."""

    cell: str
    channels: int
    stride: tuple[int, int, int]
    clip: tuple[int, int, int, int]

    @property
    def label(self) -> str:
        c, t, h, w = self.clip
        s = "x".join(map(str, self.stride))
        return f"{self.cell} C{c} {t}x{h}x{w} s{s}"


def default_op_shapes() -> list[OpShape]:
    """The distinct (channels, stride, input) an edge op meets in the default recipe's
    supernet, found by running it once with hooks on its mixed ops."""
    from hybridnas.config import SearchRun
    from hybridnas.search.differentiable.loop import supernet_config
    from hybridnas.space.cells import MixedOp
    from hybridnas.space.supernet import Supernet
    from studies.harness import compose

    cfg = SearchRun.from_cfg(compose("search", ["tracking=none"]))
    net = Supernet(supernet_config(cfg, 10)).eval()
    seen: dict[tuple, OpShape] = {}

    def hook(cell: str) -> Callable:
        def record(module: MixedOp, args: tuple, _out: torch.Tensor) -> None:
            clip = tuple(args[0].shape[1:])
            key = (module.stride, clip)
            seen.setdefault(key, OpShape(cell, clip[0], module.stride, clip))

        return record

    for cell in net.cells:
        kind = "reduce" if cell.reduction else "normal"
        for op in cell.mixed_ops:
            op.register_forward_hook(hook(kind))
    d = cfg.data
    arch = net.new_architecture()
    with torch.no_grad():
        net(torch.zeros(1, 3, d.frames, d.size, d.size), arch)
    return list(seen.values())


@contextmanager
def package_at(commit: str) -> Iterator[Callable[[str], ModuleType]]:
    """``hybridnas`` as it was at ``commit``, imported beside this one: inside the block the
    name resolves to the old package, and the yielded ``load("space.network")`` imports its
    submodules; after it, the name is this package again. Objects built inside keep working
    afterwards (their modules hold their own globals)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "archive", commit, "hybridnas"], cwd=ROOT, capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        current = _take_package_modules()
        sys.path.insert(0, tmp)
        try:
            yield lambda name: importlib.import_module(f"hybridnas.{name}")
        finally:
            sys.path.remove(tmp)
            _take_package_modules()
            sys.modules.update(current)


def _take_package_modules() -> dict[str, ModuleType]:
    taken = {k: m for k, m in sys.modules.items() if k == "hybridnas" or k.startswith("hybridnas.")}
    for k in taken:
        del sys.modules[k]
    return taken


def interleaved_ms(
    jobs: dict[str, Callable[[], object]], rounds: int = 15, block_s: float = 0.004
) -> dict[str, float]:
    """Median ms per call of each job, timed in ``rounds`` round-robin passes over all jobs;
    each pass times a block of calls long enough (``block_s``) to be above timer noise."""
    repeats = {}
    for name, job in jobs.items():
        for _ in range(CALLS_TO_CHOOSE):
            job()  # warm-up: allocator, oneDNN primitive caches, each signature's kernel trial
        t = time.perf_counter()
        job()
        repeats[name] = max(1, int(block_s / max(time.perf_counter() - t, 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(rounds):
        for name, job in jobs.items():
            n = repeats[name]
            t = time.perf_counter()
            for _ in range(n):
                job()
            times[name].append((time.perf_counter() - t) / n * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}


def _forward_job(op: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    op = op.eval()

    def run() -> object:
        with torch.inference_mode():
            return op(x)

    return run


def _train_job(op: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    op = op.train()
    x = x.clone().requires_grad_(True)

    def run() -> object:
        y = op(x)
        if y.requires_grad:
            y.backward(torch.ones_like(y))
        return y

    return run


def op_costs(create_op: Callable, name: str, shape: OpShape) -> dict[str, float]:
    """FLOPs (MFLOPs per clip, forward) and parameters of op ``name`` at ``shape``."""
    from hybridnas.measure.counts import count_flops, count_params

    op = create_op(name, shape.channels, shape.channels, shape.stride)
    return {"mflops": count_flops(op, shape.clip) / 1e6, "params": count_params(op)}


#: What is timed: (mode, batch or None for the run's batch, job builder).
MODES = (("forward_b1", 1, "forward"), ("forward", None, "forward"), ("train", None, "train"))


def bench_ops(
    ops: list[str],
    shapes: list[OpShape],
    threads: int,
    batch: int = 8,
    rounds: int = 15,
    against: str | None = None,
) -> list[dict]:
    """One row per (op, shape, mode, version): median ms per clip at ``threads`` threads.
    Modes: ``forward_b1`` (inference on one clip, what latency means), ``forward`` and
    ``train`` (forward+backward) on a batch of ``batch`` clips."""
    from hybridnas.ops import create_op

    builders = {"new": create_op}
    if against:
        with package_at(against) as load:
            builders["old"] = load("ops").create_op
            old_ops = set(load("ops").list_ops())
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    jobs: dict[str, Callable] = {}
    meta: dict[str, dict] = {}
    job_of = {"forward": _forward_job, "train": _train_job}
    for shape in shapes:
        for name in ops:
            for version, build in builders.items():
                if version == "old" and name not in old_ops:
                    continue
                for mode, mode_batch, kind in MODES:
                    n = mode_batch or batch
                    op = build(name, shape.channels, shape.channels, shape.stride)
                    key = f"{version}|{name}|{shape.label}|{mode}"
                    jobs[key] = job_of[kind](op, torch.randn(n, *shape.clip))
                    meta[key] = {"op": name, "shape": shape.label, "mode": mode}
                    meta[key] |= {"version": version, "threads": threads, "batch": n}
    medians = interleaved_ms(jobs, rounds)
    return [{**meta[k], "ms_per_clip": ms / meta[k]["batch"]} for k, ms in medians.items()]


def network_ms(
    genotype_path: Path, threads: int, against: str | None, rounds: int = 15
) -> dict[str, float]:
    """ms per clip (batch 1, eval) of the network of a genotype, built by this code and, with
    ``against``, by the code at that commit, timed side by side; and the outputs' largest
    difference under the same weights."""
    from hybridnas.space.genotype import Genotype
    from hybridnas.space.network import build_network

    genotype = Genotype.load(genotype_path)
    torch.manual_seed(0)
    nets = {"new": build_network(genotype).eval()}
    if against:
        with package_at(against) as load:
            old_genotype = load("space.genotype").Genotype.load(genotype_path)
            old_net = load("space.network").build_network(old_genotype)
        old_net.load_state_dict(nets["new"].state_dict())
        nets["old"] = old_net.eval()
    torch.set_num_threads(threads)
    x = torch.randn(1, genotype.in_channels, genotype.frames, genotype.size, genotype.size)
    result = interleaved_ms({k: _forward_job(n, x) for k, n in nets.items()}, rounds)
    if against:
        with torch.inference_mode():
            result["max_abs_diff"] = float((nets["new"](x) - nets["old"](x)).abs().max())
    return result


def run_ops(
    threads: list[int], batch: int, rounds: int, against: str | None, genotype: Path | None
) -> dict:
    """The whole benchmark: every registered op at every default shape, per thread count,
    and (with ``genotype``) that network's ms per clip new vs ``against``."""
    from hybridnas.ops import create_op, list_ops

    shapes = default_op_shapes()
    names = list_ops()
    costs = {f"{n}|{s.label}": op_costs(create_op, n, s) for n in names for s in shapes}
    rows: list[dict] = []
    networks = []
    for n in threads:
        print(f"[ops] {len(names)} ops x {len(shapes)} shapes at {n} thread(s) ...", flush=True)
        rows += bench_ops(names, shapes, n, batch, rounds, against)
        if genotype is not None:
            networks.append({"threads": n, **network_ms(genotype, n, against, rounds * 2)})
    return {
        "against": against,
        "batch": batch,
        "rounds": rounds,
        "shapes": [s.label for s in shapes],
        "costs": costs,
        "rows": rows,
        "networks": networks,
        "genotype": str(genotype) if genotype else None,
        "torch": torch.__version__,
        "load": list(__import__("os").getloadavg()),
    }
