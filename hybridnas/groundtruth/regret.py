"""Where a found genotype stands among random ones: train its cells with the ground-truth
recipe and place its test accuracy in the table's distribution::

    regret("runs/<search>/genotype.json", seeds=(0, 1))  # {"percentile", "test_acc", ...}

``python tools/bench.py regret PATH --seeds 0,1`` runs it from the command line.
"""

from __future__ import annotations

from pathlib import Path

import torch

from hybridnas.groundtruth.recipe import GroundTruthRecipe, load_clips, train_and_score
from hybridnas.groundtruth.table import TABLE_PATH, GroundTruth
from hybridnas.models import BUILTIN_GENOTYPE
from hybridnas.space.genotype import Genotype


def regret(genotype_path: str, seeds: tuple[int, ...] = (0,), table: Path = TABLE_PATH) -> dict:
    """Train a found genotype's cells with the ground-truth recipe (the table's seeds) and place
    its mean test accuracy in the table's random distribution."""
    torch.set_num_threads(1)
    gt = GroundTruth.load(table)
    recipe = GroundTruthRecipe()
    if gt.entries and gt.entries[0]["recipe"] != recipe.hash():
        raise SystemExit(
            f"the table was built with recipe {gt.entries[0]['recipe']}, this code's recipe is "
            f"{recipe.hash()}: rebuild the table (python tools/bench.py groundtruth)"
        )
    genotype = Genotype.load(BUILTIN_GENOTYPE if genotype_path == "builtin" else genotype_path)
    clips = load_clips(recipe)
    runs = [train_and_score(genotype, recipe, s, clips) for s in seeds]
    acc = sum(r["test_acc"] for r in runs) / len(runs)
    return {
        "genotype": genotype_path,
        "arch": runs[0]["arch"],
        "test_acc": acc,
        "seed_accs": [r["test_acc"] for r in runs],
        "percentile": gt.percentile(acc),
        "table_median": float(sorted(gt.accuracies())[len(gt) // 2]),
        "table_max": float(gt.accuracies().max()),
        "flops": runs[0]["flops"],
        "params": runs[0]["params"],
    }
