"""A tiny evolution on the built-in data: it improves on its seed, its Pareto front is
non-dominated, and a SIGKILLed-then-resumed run ends with the uninterrupted run's population."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from hybridnas.engine.checkpoint import CheckpointError, load_checkpoint
from hybridnas.engine.distributed import DistContext
from hybridnas.engine.tracking import Tracker
from hybridnas.search.evolution import CHECKPOINT, chain_genotype, load_state, run_evolution
from hybridnas.space.genotype import Genotype

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "tracking=none",
    "model.stage_widths=[8,8,8]",
    "model.num_cells=3",
    "model.stem_channels=8",
    "evolution.population=4",
    "evolution.sample_size=2",
    "evolution.cycles=4",
    "evolution.children_per_cycle=2",
    "evolution.conet_every=2",
    "evolution.conet_trial_stages=1",
    "evolution.faithfulness_samples=0",
    "evolution.latency_min_run_s=0.01",
    "evolution.proxy.stage_clips=[48,48]",
    "evolution.proxy.val_clips=64",
    "evolution.proxy.batch_size=16",
    "evolution.proxy.lr=0.1",
]


def _cfg(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "recipes"), version_base="1.3"):
        return compose("search", overrides=[*TINY, *overrides])


def _run(run_dir: Path, overrides=()):
    cfg = _cfg([f"out_dir={run_dir}", *overrides])
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(run_dir, None, enabled=True)
    return run_evolution(cfg, DistContext(), run_dir, tracker, chain_genotype(cfg))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny convs gain nothing from two, and two thrash on a shared box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, one_thread):
    run_dir = tmp_path_factory.mktemp("evo_full")
    best = _run(run_dir, ["evolution.faithfulness_samples=3", "evolution.faithfulness_clips=48"])
    return run_dir, best


def test_evolution_improves_on_seed_and_front_is_non_dominated(full_run):
    run_dir, best = full_run
    history = [json.loads(line) for line in (run_dir / "evolution_history.jsonl").open()]
    seed = history[0]
    assert seed["origin"] == "derived"
    # Children bred by tournament + mutation (not the seed population, not CONet width trials):
    # on this config one of them beats the seed; none exist if mutation returns its parent.
    bred = [h for h in history if "mutation" in h and h["mutation"]["kind"] != "conet"]
    assert bred, "no cycle produced a new genotype by mutation"
    assert max(h["fitness"] for h in bred) > seed["fitness"], (
        seed["fitness"],
        [h["fitness"] for h in bred],
    )
    assert best.key() == max(history, key=lambda h: h["fitness"])["key"] != seed["key"]
    assert Genotype.load(run_dir / "genotype.json").key() == best.key()
    assert Genotype.load(run_dir / "genotype_differentiable.json").key() == seed["key"]

    front = json.loads((run_dir / "pareto.json").read_text())
    assert front and (run_dir / "pareto.png").stat().st_size > 0
    for p in front:
        Genotype.from_dict(p["genotype"])
        for h in history:  # nothing evaluated dominates a point of the front
            ge = (
                h["accuracy"] >= p["accuracy"]
                and h["latency_ms"] <= p["latency_ms"]
                and h["flops"] <= p["flops"]
            )
            gt = (
                h["accuracy"] > p["accuracy"]
                or h["latency_ms"] < p["latency_ms"]
                or h["flops"] < p["flops"]
            )
            assert not (ge and gt)


def test_faithfulness_tau_is_computed_and_in_range(full_run):
    faith = json.loads((full_run[0] / "faithfulness.json").read_text())
    assert len(faith["proxy"]) == len(faith["reference"]) == 3
    # An uncomputable tau (tied accuracies) is written as null, never as a made-up 0.
    assert faith["tau"] is not None, faith
    assert math.isfinite(faith["tau"]) and -1.0 <= faith["tau"] <= 1.0, faith


def _wait_for_cycle(path: Path, cycle: int, proc: subprocess.Popen, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, "the evolution process ended before it could be killed"
        if path.is_file():
            try:
                if load_checkpoint(path)["cycle"] >= cycle:
                    return
            except CheckpointError:
                pass
        time.sleep(0.2)
    raise TimeoutError(f"no checkpoint of cycle {cycle} within {timeout}s")


def test_killed_and_resumed_evolution_matches_uninterrupted(full_run, tmp_path):
    ref = load_state(full_run[0] / CHECKPOINT)
    run_dir = tmp_path / "evo_killed"
    env = {**os.environ, "BENCH_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "tools" / "bench_evolution.py"), *TINY, f"out_dir={run_dir}"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_cycle(run_dir / CHECKPOINT, 2, proc, timeout=240)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = load_state(run_dir / CHECKPOINT).cycle
    assert killed_at < 4
    _run(run_dir, ["resume=true"])
    resumed = load_state(run_dir / CHECKPOINT)
    assert resumed.cycle == ref.cycle == 4
    assert [p["key"] for p in resumed.population] == [p["key"] for p in ref.population]
    assert [p["fitness"] for p in resumed.population] == [p["fitness"] for p in ref.population]
    assert [h["key"] for h in resumed.history] == [h["key"] for h in ref.history]
    assert resumed.scaler == ref.scaler


def test_proxy_inherits_supernet_weight_slices():
    from hybridnas.search.proxy import ProxyConfig, build_proxy
    from hybridnas.space.supernet import Supernet, SupernetConfig

    ops = ["none", "skip", "conv3d_3x3x3", "conv2plus1d_3x3x3"]
    sc = SupernetConfig(op_names=ops, stage_widths=(8, 8, 8), num_cells=3, stem_channels=8)
    torch.manual_seed(0)
    supernet = Supernet(sc)
    cfg = _cfg(["model.op_names=[none,skip,conv3d_3x3x3,conv2plus1d_3x3x3]"])
    genotype = chain_genotype(cfg)
    state = supernet.state_dict()
    trained = build_proxy(genotype, ProxyConfig(width_scale=0.5), 0, (state, 4, ops))
    conv = trained.model.cells[0].ops[0]  # edge (0, 2) through conv3d_3x3x3
    src = state["cells.0.mixed_ops.0.ops.2." + next(iter(conv.state_dict()))]
    own = next(iter(conv.state_dict().values()))
    assert torch.equal(own, src[tuple(slice(0, n) for n in own.shape)])
