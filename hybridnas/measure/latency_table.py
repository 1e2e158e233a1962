"""A frozen per-device latency table: a network's predicted time per clip is the sum of its parts.

FBNet, ProxylessNAS and Once-for-All predict latency from a lookup table measured once on the
device; the search then reads a file instead of a stopwatch, so it is deterministic. A part is
one module a network of the space runs at batch 1, keyed by what decides its cost (see
latency_parts.py: each op at each width, stride and input shape, the cells' preprocessing,
node sums and concat, stems, head). On a CPU at one thread every part runs in the calling
thread, and the clock is that thread's CPU time (``clock``): a shared machine's other
processes then preempt a part without adding to its time; with more threads or a GPU it is
wall time. ``measure_parts`` times parts in isolation, round-robin over rounds in a shuffled
order (load drifts hit every part alike), and keeps each part's median over the rounds
(``QUANTILE``). The clock is what matters on a shared machine: 40 networks of
the default space timed with their parts under a load of 7.5 on 2 cores ranked against the
sum of their parts at Spearman 0.78 by wall-clock medians (0.86 by lower quartiles), and at
0.991 by thread CPU time (0.989 by lower quartiles).
A table file is keyed by device, torch version, threads and a hash of the op and cell source
code (``table_key``), so an edit to an op invalidates the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.benchmark as benchmark
from torch import nn

from hybridnas.measure.latency_parts import (
    genotype_parts,
)
from hybridnas.ops import create_op
from hybridnas.ops.choice import CALLS_TO_CHOOSE
from hybridnas.space.cells import ReLUConvBN
from hybridnas.space.genotype import Genotype
from hybridnas.space.network import ClassifierHead, build_stem

FORMAT = "hybridnas.latency_table"
VERSION = 1
SOURCE_DIRS = ("ops",)  # hybridnas/<dir>/*.py: the op code whose change invalidates a table
SOURCE_FILES = (
    "space/cells.py",
    "space/network.py",
    "measure/latency_parts.py",
    "measure/latency_table.py",
)
QUANTILE = 50  # percentile of a part's per-round times the table keeps (see the docstring)


# ---------------------------------------------------------------- measuring parts


class _Add(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x


class _Cat(nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x] * self.k, dim=1)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split("x"))


def build_part(key: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The module a part key names and its (1, C, T, H, W) input shape."""
    kind, *f = key.split(":")
    if kind == "op":
        name, c_in, c_out, stride, shape = f
        module = create_op(name, int(c_in), int(c_out), _ints(stride))
        return module, (1, int(c_in), *_ints(shape))
    if kind == "pre":
        return ReLUConvBN(int(f[0]), int(f[1])), (1, int(f[0]), *_ints(f[2]))
    if kind == "stem":
        c_in, c_out, kernel, stride, shape = f
        stem = build_stem(int(c_in), int(c_out), _ints(kernel), _ints(stride))
        return stem, (1, int(c_in), *_ints(shape))
    if kind == "add":
        return _Add(), (1, int(f[0]), *_ints(f[1]))
    if kind == "cat":
        return _Cat(int(f[0])), (1, int(f[1]), *_ints(f[2]))
    if kind == "head":
        return ClassifierHead(int(f[0]), int(f[1])), (1, int(f[0]), *_ints(f[2]))
    raise ValueError(f"unknown latency-table part {key!r}")


def clock(device: torch.device, threads: int) -> Callable[[], float]:
    """The clock parts and networks are timed by: the calling thread's CPU time on a CPU at
    one thread (torch computes in that thread), else wall time."""
    return time.thread_time if device.type == "cpu" and threads == 1 else time.perf_counter


def part_timer(key: str, device: torch.device, threads: int) -> benchmark.Timer:
    """A ``torch.utils.benchmark.Timer`` of one call of the part ``key`` (eval, inference)."""
    torch.manual_seed(0)
    module, shape = build_part(key)
    module = module.eval().to(device)
    x = torch.randn(*shape, device=device)

    def run() -> None:
        with torch.inference_mode():
            module(x)

    return benchmark.Timer(
        stmt="run()", globals={"run": run}, num_threads=threads, timer=clock(device, threads)
    )


def calibrate(timer: benchmark.Timer, block_s: float) -> int:
    """Warm ``timer`` up (past every op's kernel trial, ``ops.choice``); the number of calls
    that makes one timed block about ``block_s``."""
    timer.timeit(CALLS_TO_CHOOSE)
    once = max(timer.timeit(1).median, 1e-6)
    return max(1, min(1000, int(block_s / once)))


def interleaved_times(
    timers: dict[str, tuple[benchmark.Timer, int]],
    rounds: int,
    progress: Callable[[int], None] | None = None,
    quantile: float = QUANTILE,
) -> dict[str, float]:
    """{name: ms per call, the ``quantile`` percentile over rounds}: ``rounds`` rounds each
    time one block (``number`` calls) of every timer, in an order shuffled per round (fixed
    seed), so load drifts hit all alike."""
    names = list(timers)
    samples: dict[str, list[float]] = {k: [] for k in names}
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for k in rng.permutation(len(names)):
            timer, number = timers[names[int(k)]]
            samples[names[int(k)]].append(timer.timeit(number).median)
        if progress:
            progress(len(names))
    return {k: float(np.percentile(v, quantile)) * 1e3 for k, v in samples.items()}


def measure_parts(
    keys: Sequence[str],
    *,
    device: str | torch.device = "cpu",
    threads: int = 1,
    rounds: int = 7,
    block_s: float = 0.002,
    progress: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """{key: ms per call} of each part in isolation at batch 1 (eval, inference mode):
    warm-up, a call count per part making a block about ``block_s``, then
    ``interleaved_times``. ``progress(n)`` gets n parts of work as it goes."""
    device = torch.device(device)
    timers = {}
    for key in keys:
        timer = part_timer(key, device, threads)
        timers[key] = (timer, calibrate(timer, block_s))
        if progress:
            progress(1)
    return interleaved_times(timers, rounds, progress)


# ---------------------------------------------------------------- the table


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def ops_source_hash() -> str:
    """SHA-256 (first 16 hex digits) of the op, cell and table source files."""
    root = Path(__file__).resolve().parent.parent
    files = [p for d in SOURCE_DIRS for p in sorted((root / d).glob("*.py"))]
    h = hashlib.sha256()
    for p in [*files, *(root / f for f in SOURCE_FILES)]:
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def table_key(device: str | torch.device = "cpu", threads: int = 1) -> dict[str, Any]:
    """What a table's numbers depend on: device, torch version, threads, op source."""
    device = torch.device(device)
    return {
        "device": _device_name(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "threads": int(threads),
        "clock": clock(device, threads).__name__,
        "ops_hash": ops_source_hash(),
    }


def key_digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def default_table_dir() -> Path:
    """``$HYBRIDNAS_CACHE/latency`` (default ``~/.cache/hybridnas/latency``)."""
    from hybridnas.data.builtin import default_cache_dir

    return default_cache_dir() / "latency"


@dataclass
class LatencyTable:
    """Part key -> ms per call at batch 1 on one device, and the key the numbers belong to.

    ``predict_ms(genotype)`` sums a genotype's parts; a part the table lacks is measured,
    added and (with ``path``) saved, so a table grows to cover widths the build did not list
    and every later read of it agrees."""

    key: dict[str, Any]
    entries: dict[str, float] = field(default_factory=dict)
    path: Path | None = None
    rounds: int = 7

    @property
    def digest(self) -> str:
        """Short hash of ``key``: names the table in genotype meta and file names."""
        return key_digest(self.key)

    def ensure(self, keys: Iterable[str], progress: bool = False) -> int:
        """Measure the parts of ``keys`` the table lacks; save. Returns how many were new."""
        missing = list(dict.fromkeys(k for k in keys if k not in self.entries))
        if not missing:
            return 0
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(missing) * (self.rounds + 1), desc="latency table", unit="part")
        device = torch.device("cuda" if self.key["device_type"] == "cuda" else "cpu")
        got = measure_parts(
            missing,
            device=device,
            threads=self.key["threads"],
            rounds=self.rounds,
            progress=bar.update if bar else None,
        )
        if bar:
            bar.close()
        # rounded as the file stores them: the run that measures predicts what a rerun reads
        self.entries.update({k: round(v, 6) for k, v in got.items()})
        self.save()
        return len(missing)

    def part_ms(self, key: str) -> float:
        if key not in self.entries:
            self.ensure([key])
        return self.entries[key]

    def predict_ms(self, genotype: Genotype) -> float:
        """Predicted ms per clip of ``genotype``'s network at batch 1: the sum of its parts."""
        parts = genotype_parts(genotype)
        self.ensure(parts)
        return float(sum(self.entries[k] for k in parts))

    def to_dict(self) -> dict[str, Any]:
        entries = dict(sorted(self.entries.items()))
        return {"format": FORMAT, "version": VERSION, "key": self.key, "entries": entries}

    def save(self) -> None:
        """Write atomically, merged with what another process added to the file meanwhile."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            other = read_table(self.path)
            if other.key == self.key:
                self.entries = {**other.entries, **self.entries}
        with tempfile.NamedTemporaryFile(
            "w", dir=self.path.parent, delete=False, suffix=".tmp"
        ) as f:
            f.write(json.dumps(self.to_dict(), indent=0, sort_keys=True))
        os.replace(f.name, self.path)


def read_table(path: str | os.PathLike) -> LatencyTable:
    """A table file; refuses a file of another format."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"latency table {path} cannot be read: {err}") from None
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise ValueError(f"{path} is not a {FORMAT} version {VERSION} file")
    entries = {k: float(v) for k, v in doc["entries"].items()}
    return LatencyTable(doc["key"], entries, path)


def open_table(
    device: str | torch.device = "cpu",
    threads: int = 1,
    directory: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
) -> LatencyTable:
    """This device's table: ``path`` if given (its key must match this device), else the
    cached file of this key in ``directory`` (default ``default_table_dir()``), or a new empty
    one there."""
    key = table_key(device, threads)
    if path is not None:
        path = Path(path)
        if path.is_file():
            table = read_table(path)
            if table.key != key:
                raise ValueError(
                    f"latency table {path} was measured for {table.key}, not this setting {key}"
                )
            return table
        return LatencyTable(key, {}, path)
    directory = Path(directory) if directory is not None else default_table_dir()
    file = directory / f"table-{key_digest(key)}.json"
    return read_table(file) if file.is_file() else LatencyTable(key, {}, file)
