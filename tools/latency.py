"""The per-device latency table: build it, or predict and measure one genotype.

    python tools/latency.py build [--threads N] [--device cuda] [recipe overrides ...]
    python tools/latency.py genotype=runs/<search>/genotype.json [--threads N]

``build`` measures every part a network of the search space (recipes/search.yaml with the
overrides: model.* and the evolution's macro ranges) is made of, once, into the cached table
of this device, torch version and thread count ($HYBRIDNAS_CACHE/latency/table-<key>.json);
a table already there only gets the parts it lacks (``--fresh``: all measured again). Absolute
times follow the machine's load at build time: build on a quiet machine. ``genotype=PATH``
prints one JSON line, {"predicted_ms", "measured_ms", "flops", "params", "table"}, for that
genotype at batch 1 (measured by the table's clock: the thread's CPU time at one CPU thread).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch
import torch.utils.benchmark as benchmark
from studies.harness import compose

import hybridnas  # noqa: F401  (compat shims)
from hybridnas.config import SearchRun
from hybridnas.measure.counts import count_flops, count_params
from hybridnas.measure.latency_parts import space_macros, space_parts
from hybridnas.measure.latency_table import clock, open_table
from hybridnas.search.evolution.macro_mutations import macro_ranges
from hybridnas.space.genotype import Genotype
from hybridnas.space.macro import MacroSpec
from hybridnas.space.network import build_network


def build(args: argparse.Namespace) -> None:
    run = SearchRun.from_cfg(compose("search", args.overrides))
    table = open_table(args.device, args.threads, path=args.table)
    if args.fresh:  # every part measured again, e.g. on a quieter machine
        table.entries = {}
        table.path.unlink(missing_ok=True)
    base = MacroSpec.from_config(vars(run.model), run.data, num_classes=10)
    macros = space_macros(base, macro_ranges(run))
    parts = space_parts(macros, run.model.op_names, run.model.steps)
    start = time.perf_counter()
    new = table.ensure(parts, progress=True)
    print(
        f"[latency] {len(parts)} parts over {len(macros)} skeletons: {new} measured in "
        f"{time.perf_counter() - start:.0f} s, {len(table.entries)} in {table.path}"
    )


def genotype(path: str, args: argparse.Namespace) -> None:
    g = Genotype.load(path)
    table = open_table(args.device, args.threads, path=args.table)
    predicted = table.predict_ms(g)
    torch.manual_seed(0)
    net = build_network(g).eval().to(args.device)
    shape = (g.in_channels, g.frames, g.size, g.size)
    x = torch.randn(1, *shape, device=args.device)

    def run() -> None:
        with torch.inference_mode():
            net(x)

    device = torch.device(args.device)
    timer = benchmark.Timer(stmt="run()", globals={"run": run}, num_threads=args.threads,
                            timer=clock(device, args.threads))  # fmt: skip
    timer.timeit(3)
    measured = timer.blocked_autorange(min_run_time=1.0).median * 1e3
    doc = {
        "predicted_ms": round(predicted, 4),
        "measured_ms": round(measured, 4),
        "flops": count_flops(net, shape),
        "params": count_params(net),
        "table": table.digest,
    }
    print(json.dumps(doc))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", nargs="+", help="build [overrides ...] | genotype=PATH")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--table", default=None, help="a table file instead of the cached one")
    ap.add_argument("--fresh", action="store_true", help="build: measure every part again")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    first, rest = args.what[0], args.what[1:]
    if first == "build":
        args.overrides = rest
        build(args)
    elif first.startswith("genotype="):
        genotype(first.split("=", 1)[1], args)
    else:
        ap.error(f"expected 'build' or 'genotype=PATH', got {first!r}")


if __name__ == "__main__":
    main()
