"""Evolve a PatchMix policy (tube grid, tube pattern, pairing rule) with a fixed trained
model: no retraining. Fitness of a policy: minus the mean KL(mixed soft label || the fixed
model's prediction on the mixed clip) over held-out clips (the search_val split, which
training never sees), with the same random draws for every policy; a lower KL means a more
label-consistent mix. The chosen policy is written as YAML for ``train.patchmix.policy``:

    python tools/patchmix_search.py --checkpoint runs/<run>/checkpoints/last.pt
    python tools/train.py recipe=train_builtin genotype=builtin train.mix=patchmix \\
        train.patchmix.policy=runs/patchmix_search/policy.yaml

Without ``--checkpoint`` a fixed model is first trained briefly (``--train-args``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hybridnas.config.train import PAIRINGS, PATTERNS, check_policy  # noqa: E402
from hybridnas.data import build_dataset  # noqa: E402
from hybridnas.data.patchmix import PatchMix  # noqa: E402
from hybridnas.models import load_trained  # noqa: E402

GRID_CHOICES = (1, 2, 3, 4)
BRIEF = "recipe=train_builtin genotype=builtin data.size=16 data.digit_px=6 train.epochs=3"


@dataclass(frozen=True)
class Policy:
    """One candidate: tubes per axis (g_t, g_h, g_w), pattern, pairing rule."""

    grid: tuple[int, int, int]
    pattern: str
    pairing: str

    def canonical(self) -> Policy:
        """Stripes ignore the tube counts of the other two axes: those set to 1, so that
        policies that mix alike are one candidate (evaluated once)."""
        axis = {"stripes_t": 0, "stripes_h": 1, "stripes_w": 2}.get(self.pattern)
        if axis is None:
            return self
        grid = tuple(g if i == axis else 1 for i, g in enumerate(self.grid))
        return Policy(grid, self.pattern, self.pairing)

    def valid(self) -> bool:
        try:
            check_policy(self.grid, self.pattern, self.pairing, partners=(0,))
        except ValueError:
            return False
        return True


def random_policy(rng: random.Random) -> Policy:
    while True:
        p = Policy(
            tuple(rng.choice(GRID_CHOICES) for _ in range(3)),
            rng.choice(PATTERNS),
            rng.choice(PAIRINGS),
        )
        if p.valid():
            return p.canonical()


def mutate(p: Policy, rng: random.Random) -> Policy:
    """One gene changed: a grid axis, the pattern or the pairing; retried until valid."""
    while True:
        gene = rng.randrange(5)
        grid = list(p.grid)
        if gene < 3:
            grid[gene] = rng.choice([g for g in GRID_CHOICES if g != grid[gene]])
        child = Policy(
            tuple(grid),
            rng.choice(PATTERNS) if gene == 3 else p.pattern,
            rng.choice(PAIRINGS) if gene == 4 else p.pairing,
        )
        if child.valid() and child.canonical() != p:
            return child.canonical()


@torch.no_grad()
def predictions(model: torch.nn.Module, clips: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """(N, classes) softmax of the fixed model over (N, C, T, H, W) clips."""
    return torch.cat(
        [model(clips[i : i + batch]).float().softmax(1) for i in range(0, len(clips), batch)]
    )


def confusion_partners(probs: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[int]:
    """Per class, the other class the fixed model gives most probability to on its clips."""
    mass = torch.zeros(num_classes, num_classes).index_add_(0, labels, probs)
    mass.fill_diagonal_(-1.0)
    return mass.argmax(1).tolist()


@torch.no_grad()
def fitness(
    policy: Policy,
    model: torch.nn.Module,
    clips: torch.Tensor,
    labels: torch.Tensor,
    partners: list[int],
    seed: int,
    batch: int = 64,
) -> float:
    """Minus the mean KL(soft label || prediction) on the clips mixed by ``policy``."""
    torch.manual_seed(seed)  # common random numbers: every policy sees the same draws
    mixer = PatchMix(
        len(partners), policy.grid, policy.pattern, policy.pairing, 0.0, 0.0, tuple(partners)
    )
    total = 0.0
    for i in range(0, len(clips), batch):
        x, y = mixer(clips[i : i + batch], labels[i : i + batch])
        logp = model(x).float().log_softmax(1)
        total += float(F.kl_div(logp, y, reduction="sum"))
    return -total / len(clips)


def fixed_model(args: argparse.Namespace) -> Path:
    """The checkpoint given, or one trained briefly now with ``--train-args``."""
    if args.checkpoint:
        return Path(args.checkpoint)
    out = args.out / "fixed_model"
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), *args.train_args.split()]
    cmd += ["tracking=none", "engine=none", "threads=1", "overwrite=true", f"out_dir={out}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd, check=True, env=env)
    return out / "checkpoints" / "last.pt"


def held_out(ckpt: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` search_val clips (B, C, T, H, W) and labels, data settings as the run's."""
    cfg = OmegaConf.load(ckpt.parent.parent / "config.yaml")
    data = {
        k: v
        for k, v in OmegaConf.to_container(cfg.data, resolve=True).items()
        if k not in ("batch_size", "workers")
    }
    ds = build_dataset(data, "search_val")
    idx = range(min(n, len(ds)))
    return torch.stack([ds[i][0] for i in idx]), torch.tensor([ds[i][1] for i in idx])


def evolve(args: argparse.Namespace, score) -> tuple[Policy, list[dict]]:
    """Regularised evolution: tournament of ``--sample`` -> mutate -> replace the oldest."""
    rng = random.Random(args.seed)
    seen: dict[Policy, float] = {}

    def evaluate(p: Policy) -> float:
        if p not in seen:
            seen[p] = score(p)
            print(f"  {p.grid} {p.pattern:12s} {p.pairing:11s} fitness {seen[p]:.4f}", flush=True)
        return seen[p]

    population = []
    while len(population) < args.population:
        p = random_policy(rng)
        if p not in population:
            population.append(p)
            evaluate(p)
    for _ in range(args.generations * args.population):
        parent = max(rng.sample(population, args.sample), key=evaluate)
        population = [*population[1:], mutate(parent, rng)]
        evaluate(population[-1])
    best = max(seen, key=seen.get)
    ranked = sorted(seen, key=seen.get, reverse=True)
    return best, [{**asdict(p), "grid": list(p.grid), "fitness": seen[p]} for p in ranked]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="a tools/train.py checkpoint (the fixed model)")
    p.add_argument(
        "--train-args", default=BRIEF, help="tools/train.py overrides of the brief fixed model"
    )
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "patchmix_search")
    p.add_argument("--clips", type=int, default=256, help="held-out search_val clips per fitness")
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--generations", type=int, default=3, help="x population children")
    p.add_argument("--sample", type=int, default=3, help="tournament size")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    ckpt = fixed_model(args)
    trained_s = time.time() - start
    model, spec, _ = load_trained(ckpt)
    clips, labels = held_out(ckpt, args.clips)
    probs = predictions(model, clips)
    partners = confusion_partners(probs, labels, spec.num_classes)
    clean_acc = float((probs.argmax(1) == labels).float().mean())
    print(f"fixed model {ckpt}: held-out top-1 {clean_acc:.3f}; confusion partners {partners}")
    search_start = time.time()
    best, ranked = evolve(args, lambda pol: fitness(pol, model, clips, labels, partners, args.seed))
    record = {
        "policy": {**asdict(best), "grid": list(best.grid), "partners": partners},
        "fitness": ranked[0]["fitness"],
        "search": {
            "checkpoint": str(ckpt),
            "fixed_model_heldout_top1": clean_acc,
            "clips": len(labels),
            "evaluations": len(ranked),
            "population": args.population,
            "generations": args.generations,
            "seed": args.seed,
            "fixed_model_train_s": round(trained_s, 1) if not args.checkpoint else 0.0,
            "search_s": round(time.time() - search_start, 1),
            "threads": 1,
        },
        "ranked": ranked,
    }
    OmegaConf.save(OmegaConf.create(record), args.out / "policy.yaml")
    print(json.dumps({k: record[k] for k in ("policy", "fitness", "search")}, indent=1))
    print(f"wrote {args.out / 'policy.yaml'}")


if __name__ == "__main__":
    main()
