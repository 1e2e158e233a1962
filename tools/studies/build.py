"""Build the ground-truth table: train uniformly drawn genotypes with the recipe, in parallel.

::

    jobs (arch index, seed) --> N worker processes (1 torch thread each) --> table.jsonl

The table is append-only JSONL written by the parent process only, one line per finished
job, flushed at once: a killed build loses only the jobs in flight, and the same command
continues where it stopped (jobs already in the file under the same recipe hash are skipped).
Repeats with a second seed are spread through the job list, so a build cut short still has
its share of seed pairs.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hybridnas.groundtruth.recipe import (
    Clips,
    GroundTruthRecipe,
    arch_id,
    load_clips,
    sample_uniform,
    train_and_score,
)
from hybridnas.space.genotype import Genotype

SAMPLE_SEED = 0  # which genotypes the table draws (fixed: the table is one sample of the space)

_clips: dict[str, Clips] | None = None


def job_order(n_archs: int, n_pairs: int) -> list[tuple[int, int]]:
    """(arch index, seed) jobs: every arch with seed 0, and archs 0..n_pairs-1 again with
    seed 1, each repeat placed right after every ``n_archs // n_pairs``-th seed-0 job."""
    every = max(1, n_archs // max(n_pairs, 1))
    jobs: list[tuple[int, int]] = []
    for i in range(n_archs):
        jobs.append((i, 0))
        if i % every == every - 1 and (i // every) < n_pairs:
            jobs.append((i // every, 1))
    done_pairs = {i for i, s in jobs if s == 1}
    jobs += [(i, 1) for i in range(n_pairs) if i not in done_pairs]
    return jobs


def table_genotypes(recipe: GroundTruthRecipe, n_archs: int) -> list[Genotype]:
    """The table's architectures in build order, on the recipe's skeleton."""
    return [recipe.conform(g) for g in sample_uniform(recipe, n_archs, SAMPLE_SEED)]


def read_done(path: Path, recipe_hash: str) -> set[tuple[str, int]]:
    """(arch id, seed) pairs already in the table under this recipe."""
    if not path.is_file():
        return set()
    done = set()
    for line in path.read_text().splitlines():
        if line.strip():
            e = json.loads(line)
            if e.get("recipe") == recipe_hash:
                done.add((e["arch"], int(e["seed"])))
    return done


def _init_worker(recipe: GroundTruthRecipe) -> None:
    import torch

    torch.set_num_threads(1)
    global _clips
    _clips = load_clips(recipe)


def _run_job(args: tuple[dict[str, Any], GroundTruthRecipe, int]) -> dict[str, Any]:
    doc, recipe, seed = args
    try:
        return train_and_score(Genotype.from_dict(doc), recipe, seed, _clips)
    except Exception as err:  # reported by the parent, never written as an entry
        return {"error": f"{type(err).__name__}: {err}", "genotype": doc, "seed": seed}


def build_table(
    out: str | Path,
    *,
    n_archs: int = 150,
    n_pairs: int = 30,
    workers: int = 2,
    recipe: GroundTruthRecipe | None = None,
) -> Path:
    """Train every missing (arch, seed) job and append its entry to ``out``; returns ``out``.
    Raises ``RuntimeError`` after the build if any job failed (the others are kept)."""
    recipe = recipe or GroundTruthRecipe()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    genotypes = table_genotypes(recipe, n_archs)
    done = read_done(out, recipe.hash())
    todo = [
        (genotypes[i].to_dict(), recipe, seed)
        for i, seed in job_order(n_archs, n_pairs)
        if (arch_id(genotypes[i]), seed) not in done
    ]
    print(f"[bench] ground truth: {len(done)} entries done, {len(todo)} to train -> {out}")
    if todo:
        # Built here first: a worker whose initializer raises is replaced by the pool forever,
        # so data settings the generator refuses would hang the build instead of stopping it.
        load_clips(recipe)
    failures = []
    with out.open("a") as f, tqdm(total=len(todo), unit="arch", smoothing=0.1) as bar:
        for entry in _results(todo, workers, recipe):
            if "error" in entry:
                failures.append(entry)
                tqdm.write(f"[bench] job failed (seed {entry['seed']}): {entry['error']}")
            else:
                f.write(json.dumps(entry) + "\n")
                f.flush()
                os.fsync(f.fileno())
            bar.update(1)
    if failures:
        raise RuntimeError(f"{len(failures)} of {len(todo)} jobs failed; rerun to retry them")
    return out


def _results(
    todo: list[tuple[dict[str, Any], GroundTruthRecipe, int]],
    workers: int,
    recipe: GroundTruthRecipe,
) -> Iterator[dict[str, Any]]:
    if workers <= 1:
        _init_worker(recipe)
        yield from map(_run_job, todo)
        return
    ctx = mp.get_context("spawn")  # fresh interpreters: no forked OpenMP or torch thread state
    with ctx.Pool(
        workers, initializer=_init_worker, initargs=(recipe,), maxtasksperchild=20
    ) as pool:
        yield from pool.imap_unordered(_run_job, todo)
