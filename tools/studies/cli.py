"""Ground-truth commands of tools/bench.py.

python tools/bench.py groundtruth --workers 2               # build (or continue) the table
python tools/bench.py regret runs/<search>/genotype.json     # percentile of a found genotype
python tools/bench.py gt-report                               # figures + numbers of the table
python tools/bench.py quality --seeds 0,1,2                  # search methods vs the table
python tools/bench.py schedule --repeats 3                   # SDAS schedules vs DARTS, time
python tools/bench.py proxy-sweep --variants '[{"lr": 0.2}]'  # trained-proxy variants, taus
python tools/bench.py ops --against 14565e5                  # every op's ms per clip, before/after
python tools/bench.py front --found runs/<search>/family   # accuracy vs latency front
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from hybridnas.groundtruth.regret import regret
from hybridnas.groundtruth.table import TABLE_PATH, GroundTruth
from studies.schedule_bench import VARIANTS
from studies.scorer_bench import ZERO_COST

COMMANDS = (
    "groundtruth",
    "regret",
    "gt-report",
    "scorers",
    "quality",
    "schedule",
    "proxy-sweep",
    "ops",
    "front",
)


def build_groundtruth(args: argparse.Namespace) -> None:
    """Build (or continue) a table; with recipe overrides (``--set``), print its spread next to
    the shipped table's on the same architectures."""
    from hybridnas.groundtruth.recipe import GroundTruthRecipe, arch_id, recipe_with
    from hybridnas.groundtruth.table import spread_summary
    from studies.build import build_table, table_genotypes

    try:
        recipe = recipe_with(args.set)
    except ValueError as err:
        raise SystemExit(f"tools/bench.py groundtruth: {err}") from None
    if args.set and args.out.resolve() == TABLE_PATH.resolve():
        raise SystemExit(
            "a recipe variant (--set) must not be written to the shipped table: pass --out"
        )
    try:
        out = build_table(
            args.out, n_archs=args.archs, n_pairs=args.pairs, workers=args.workers, recipe=recipe
        )
    except ValueError as err:  # e.g. data settings the clip generator cannot satisfy
        raise SystemExit(f"tools/bench.py groundtruth: {err}") from None
    if args.set:  # the same first archs of both tables (ids differ if the skeleton does)
        ids = {
            name: {arch_id(g) for g in table_genotypes(r, args.archs)}
            for name, r in (("variant", recipe), ("shipped", GroundTruthRecipe()))
        }
        tables = {
            "variant": GroundTruth.load(out, recipe=recipe.hash()),
            "shipped": GroundTruth.load(),
        }
        for name, gt in tables.items():
            s = spread_summary(gt, ids[name])
            print(
                f"[bench] {name}: {s['pairs']} pairs, seed SD {s['seed_sd']:.3f}, arch SD "
                f"{s['arch_sd']:.3f}, ratio {s['ratio']:.2f}x, mean top-1 {s['mean_acc']:.3f}"
            )


def run_scorers(
    names: list[str],
    n_archs: int,
    out: Path,
    supernet: Path | None,
    half: str | None = None,
    seed: int = 0,
) -> None:
    """Score the table's genotypes (of one ``half`` if given), merging into ``out`` (scores
    and ms per candidate). ``proxy`` is the evolution's trained proxy as the search runs it;
    every other name is a registered scorer (``proxy_1cycle`` trains on all the recipe's
    training clips). A context ``seed`` other than 0 (another init and clip order for the
    seeded scorers) files the scores as ``<name>@seed<seed>``."""
    import torch

    from studies.scorer_bench import score_context, score_table, table_genotypes

    torch.set_num_threads(1)
    ctx = dataclasses.replace(score_context(), seed=seed)
    if supernet is not None:
        from hybridnas.search.scorers.registry import load_supernet_context

        load_supernet_context(ctx, supernet)
    genotypes = table_genotypes(n_archs)
    if half is not None:
        keep = {r.arch for r in GroundTruth.load().archs(half)}
        genotypes = {a: g for a, g in genotypes.items() if a in keep}
    registered = [n for n in names if n != "proxy"]
    scores, cost = score_table(registered, genotypes, ctx)
    if "proxy" in names:
        from studies.scorer_bench import trained_proxy_scores

        scores["proxy"], cost["proxy"] = trained_proxy_scores(genotypes, ctx)
    if seed:
        scores = {f"{n}@seed{seed}": v for n, v in scores.items()}
        cost = {f"{n}@seed{seed}": v for n, v in cost.items()}
    doc = json.loads(out.read_text()) if out.is_file() else {"scores": {}, "ms": {}}
    for name, per_arch in scores.items():  # per architecture: scoring one half keeps the other
        doc["scores"].setdefault(name, {}).update(per_arch)
    doc["ms"].update(cost)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, sort_keys=True))


def run_proxy_sweep(variants: str, half: str, n_archs: int, out: Path) -> None:
    """Trained-proxy variants (a JSON list of ``ProxyVariant`` fields) on ``n_archs`` of one
    half's architectures (0: all): one row per (variant, reading) with its tau, to ``out``."""
    import torch

    from hybridnas.groundtruth.recipe import GroundTruthRecipe, load_clips
    from studies.proxy_sweep import ProxyVariant, subsample, sweep
    from studies.scorer_bench import table_genotypes

    torch.set_num_threads(1)
    gt = GroundTruth.load()
    genotypes = table_genotypes(len(gt))
    archs = subsample(gt, genotypes, half, n_archs or len(genotypes))
    specs = [
        ProxyVariant(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
        for spec in json.loads(variants)
    ]
    rows = sweep(specs, archs, load_clips(GroundTruthRecipe()), gt, half)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"half": half, "archs": sorted(archs), "rows": rows}, indent=1))


def run_ops_bench(args: argparse.Namespace) -> None:
    """``tools/bench.py ops``: write ops.json to ``--out`` and print the section."""
    import torch

    from hybridnas.models import BUILTIN_GENOTYPE
    from studies.ops_bench import run_ops
    from studies.ops_report import ops_section

    default_threads = torch.get_num_threads()
    threads = [int(t) or default_threads for t in args.threads.split(",")]
    genotype = {"builtin": BUILTIN_GENOTYPE, "": None}.get(args.genotype, args.genotype)
    doc = run_ops(threads, args.batch, args.rounds, args.against, genotype and Path(genotype))
    doc["genotype"] = args.genotype or None  # as the user named it, not a machine's path
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ops.json").write_text(json.dumps(doc, indent=1))
    print("\n".join(ops_section(args.out)))


def run_front_command(args: argparse.Namespace) -> None:
    """``front``: the plan's rows (baselines, the placeholder unless ``--no-placeholder``,
    ``--found`` / ``--random`` genotype files), trained and reported (tools/studies/front.py)."""
    from studies import front

    recipe = front.FrontRecipe.load(args.recipe or front.RECIPE_PATH, tuple(args.set))
    if args.tasks:
        recipe = dataclasses.replace(recipe, tasks=tuple(args.tasks.split(",")))
    specs = front.baseline_rows() if not args.only_genotypes else []
    if not args.no_placeholder:
        specs += front.placeholder_found_rows()
    if args.found:
        specs += front.genotype_rows(args.found, "found", args.found_family, args.seeds)
    if args.random:
        specs += front.genotype_rows(args.random, "random", args.random_family, args.seeds)
    front.run_front(
        specs,
        recipe,
        args.out or front.OUT_DIR,
        report_only=args.report_only,
        remeasure=args.remeasure,
        judge_family=args.judge_family or (args.found_family if args.found else None),
    )
    if args.benchmarks:
        from studies.front_report import sync_benchmarks

        sync_benchmarks(args.out or front.OUT_DIR, args.benchmarks)


def _front_parser(sub: argparse._SubParsersAction) -> None:
    f = sub.add_parser("front", help="accuracy vs measured latency: found vs baselines")
    f.add_argument("--found", nargs="*", default=[], help="genotype JSONs or folders of them")
    f.add_argument("--found-family", default="hybrid", help="family name of the --found rows")
    f.add_argument("--random", nargs="*", default=[], help="random search's genotype JSONs")
    f.add_argument("--random-family", default="random")
    f.add_argument("--seeds", type=int, default=3, help="training seeds of each genotype row")
    f.add_argument("--no-placeholder", action="store_true", help="no genotype=builtin rows")
    f.add_argument("--only-genotypes", action="store_true", help="plan no baseline rows")
    f.add_argument("--tasks", default="", help="comma list (default: the recipe's tasks)")
    f.add_argument("--recipe", type=Path, default=None, help="recipes/bench/front.yaml")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    f.add_argument("--out", type=Path, default=None, help="tools/studies/results/front")
    f.add_argument("--report-only", action="store_true", help="train nothing, rewrite reports")
    f.add_argument("--remeasure", action="store_true", help="measure latency again")
    f.add_argument(
        "--benchmarks",
        type=Path,
        default=None,
        help="then write the Front section into this BENCHMARKS.md",
    )
    f.add_argument(
        "--judge-family",
        default=None,
        help="claims on these found families only, a comma list (default: --found-family with "
        "--found, else all)",
    )


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tools/bench.py", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("groundtruth", help="build or continue the ground-truth table")
    g.add_argument("--out", type=Path, default=TABLE_PATH)
    g.add_argument("--archs", type=int, default=150)
    g.add_argument("--pairs", type=int, default=150)
    g.add_argument("--workers", type=int, default=2)
    g.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="probe a recipe variant (e.g. --set epochs=12): use another --out",
    )
    r = sub.add_parser("regret", help="percentile of a genotype in the random distribution")
    r.add_argument("genotype", help="a genotype.json, a search run folder, or 'builtin'")
    r.add_argument("--seeds", default="0", help="comma list of seeds (the table's are 0 and 1)")
    r.add_argument("--table", type=Path, default=TABLE_PATH)
    r.add_argument("--json", type=Path, default=None, help="also write the result here")
    sc = sub.add_parser("scorers", help="score the table's genotypes with every scorer")
    sc.add_argument("--names", default=",".join(ZERO_COST))
    sc.add_argument("--archs", type=int, default=150)
    sc.add_argument("--out", type=Path, default=Path("tools/studies/results/scores.json"))
    sc.add_argument("--supernet", type=Path, default=None, help="a search run folder (oneshot)")
    sc.add_argument("--half", choices=("calibration", "evaluation"), default=None)
    sc.add_argument("--seed", type=int, default=0, help="context seed (scores: <name>@seed<N>)")
    ps = sub.add_parser("proxy-sweep", help="trained-proxy variants against the table")
    ps.add_argument("--variants", required=True, help="JSON list of ProxyVariant fields")
    ps.add_argument("--half", choices=("calibration", "evaluation"), default="calibration")
    ps.add_argument("--archs", type=int, default=30, help="subsample of the half (0: all)")
    ps.add_argument("--out", type=Path, default=Path("runs/proxy_sweep.json"))
    q = sub.add_parser("quality", help="search methods x seeds, found cells placed in the table")
    q.add_argument("--methods", default="hybrid,sdas,sdas_pt,darts,random,evolution")
    q.add_argument("--seeds", default="0,1,2")
    q.add_argument("--gt-seeds", default="0,1", help="ground-truth training seeds per genotype")
    q.add_argument("--out", type=Path, default=Path("runs/bench_gt_quality"))
    q.add_argument("--search-only", action="store_true", help="searches now, regrets later")
    q.add_argument("--merge", type=Path, nargs="*", default=[], help="other results folders")
    q.add_argument("--summary-only", action="store_true", help="run nothing, summarise")
    q.add_argument("--summary", type=Path, default=Path("tools/studies/results/quality_gt.json"))
    t = sub.add_parser("schedule", help="SDAS schedules vs DARTS: total search time")
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--variants", default=",".join(VARIANTS))
    t.add_argument("--out", type=Path, default=Path("runs/bench_schedule"))
    t.add_argument("--summary", type=Path, default=Path("tools/studies/results/schedule.json"))
    o = sub.add_parser("ops", help="every op at the default shapes, side by side with a commit")
    o.add_argument("--against", help="a commit whose ops are timed beside this code's")
    o.add_argument("--threads", default="1,0", help="comma list; 0 = torch's default")
    o.add_argument("--batch", type=int, default=8)
    o.add_argument("--rounds", type=int, default=15)
    o.add_argument("--genotype", default="builtin", help="a network to time too ('' for none)")
    o.add_argument("--out", type=Path, default=Path("tools/studies/results"))
    p = sub.add_parser("gt-report", help="figures and statistics of the table")
    p.add_argument("--table", type=Path, default=TABLE_PATH)
    p.add_argument("--out", type=Path, default=Path("tools/studies/results"))
    p.add_argument("--truth", choices=("mean", "seed0"), default="mean", help="an arch's accuracy")
    _front_parser(sub)
    return ap


def main(argv: list[str]) -> None:
    args = _parser().parse_args(argv)

    if args.cmd == "groundtruth":
        build_groundtruth(args)
    elif args.cmd == "regret":
        seeds = tuple(int(s) for s in args.seeds.split(","))
        result = regret(args.genotype, seeds, args.table)
        print(
            f"{args.genotype}: test top-1 {result['test_acc']:.3f} over seeds {list(seeds)} -> "
            f"percentile {result['percentile']:.1f} of {len(GroundTruth.load(args.table))} "
            f"random architectures (median {result['table_median']:.3f}, "
            f"best {result['table_max']:.3f})"
        )
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    elif args.cmd == "quality":
        from studies.gt_quality import run_quality, write_summary

        summary = run_quality(
            args.out,
            args.methods.split(","),
            [int(s) for s in args.seeds.split(",")],
            tuple(int(s) for s in args.gt_seeds.split(",")),
            args.search_only,
            tuple(args.merge),
            args.summary_only,
        )
        write_summary(summary, args.summary)
    elif args.cmd == "schedule":
        from studies.schedule_bench import run_schedule
        from studies.schedule_bench import write_summary as write_schedule

        write_schedule(run_schedule(args.out, args.repeats, args.variants.split(",")), args.summary)
    elif args.cmd == "scorers":
        run_scorers(
            args.names.split(","), args.archs, args.out, args.supernet, args.half, args.seed
        )
    elif args.cmd == "proxy-sweep":
        run_proxy_sweep(args.variants, args.half, args.archs, args.out)
    elif args.cmd == "ops":
        run_ops_bench(args)
    elif args.cmd == "front":
        run_front_command(args)
    else:
        from studies.gt_report import write_gt_report
        from studies.report import write_report

        write_gt_report(GroundTruth.load(args.table, truth=args.truth), args.out)
        if (args.out / "results.json").is_file():
            write_report(args.out, args.out)
