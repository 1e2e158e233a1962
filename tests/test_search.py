"""The differentiable stage end to end: search.py, kill-and-resume, ranks, W&B, config errors."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import torch
from helpers import (
    copy_run,
    final_alphas,
    one_line,
    run_cmd,
    run_genotype,
    search,
    search_cmd,
    snapshot,
    tool_env,
)
from hydra import compose, initialize_config_dir

from hybridnas.config import RECIPES, ConfigError, check_config
from hybridnas.engine.checkpoint import load_checkpoint
from hybridnas.engine.tracking import read_wandb_history
from hybridnas.search.differentiable.sdas import FixSchedule, fix_edges
from hybridnas.space.cells import edge_list
from hybridnas.space.supernet import Supernet, SupernetConfig

# ---------------------------------------------------------------- schedule (fast)


def test_linear_schedule_decides_everything_before_the_last_epoch():
    sched = FixSchedule(epochs=6, warmup_epochs=2, kind="linear", decide_at=1.0)
    counts = [sched.decided_after(e, 14) for e in range(6)]
    assert counts[:2] == [0, 0] and counts[-2:] == [14, 14]
    assert all(a <= b for a, b in zip(counts, counts[1:], strict=False))
    assert (
        FixSchedule(epochs=6, warmup_epochs=2, kind="none", decide_at=1.0).decided_after(5, 14) == 0
    )
    with pytest.raises(ValueError, match="warmup_epochs"):
        FixSchedule(epochs=3, warmup_epochs=3, kind="linear", decide_at=1.0)


def test_decide_at_ends_the_fixing_early():
    sched = FixSchedule(epochs=10, warmup_epochs=1, kind="linear", decide_at=3 / 8)
    counts = [sched.decided_after(e, 9) for e in range(10)]
    assert counts[0] == 0 and 0 < counts[1] < counts[2] < 9
    assert counts[3:] == [9] * 7  # epoch 4 onwards runs with every edge decided
    default = FixSchedule(epochs=10, warmup_epochs=1, kind="linear", decide_at=1.0)
    assert [default.decided_after(e, 9) for e in range(10)].index(9) == 8
    half = FixSchedule(epochs=10, warmup_epochs=1, kind="linear", decide_at=0.5)
    assert [half.decided_after(e, 9) for e in range(10)].index(9) == 4  # epoch 5 on: all fixed
    with pytest.raises(ValueError, match="decide_at"):
        FixSchedule(epochs=10, warmup_epochs=3, kind="linear", decide_at=0.0)


def test_fix_edges_keeps_two_inputs_per_node_and_caps_skips():
    ops = ["none", "skip", "max_pool_1x3x3", "conv3d_3x3x3"]
    net = Supernet(SupernetConfig(op_names=ops, steps=4, stage_widths=(4, 8, 8), num_cells=3))
    arch = net.new_architecture()
    with torch.no_grad():
        for a in arch.alphas:
            a.zero_()
            a[1] = 5.0  # skip is everyone's favourite
    events = fix_edges(arch, steps=4, target=14, max_skips=2)
    assert arch.num_free() == 0
    edges = edge_list(4)
    for cell in ("normal", "reduce"):
        fixed = [k for k in range(14) if arch.state(cell, k) >= 0]
        per_node = {j: sum(1 for k in fixed if edges[k][1] == j) for j in range(2, 6)}
        assert per_node == {2: 2, 3: 2, 4: 2, 5: 2}
        assert sum(arch.state(cell, k) == 1 for k in range(14)) == 2  # the skip cap
    assert {e["action"] for e in events} == {"fixed", "pruned"}


# ---------------------------------------------------------------- config errors (fast)


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
        return compose(config_name="search", overrides=list(overrides))


def test_config_errors_name_the_key():
    with pytest.raises(Exception, match="search.epochz"):
        _compose("search.epochz=3")
    with pytest.raises(ConfigError, match="'search.epochs' expects a number"):
        check_config(_compose("search.epochs=ten"), "search")
    with pytest.raises(ConfigError, match="'engine' must be one of"):
        check_config(_compose("engine=horovod"), "search")
    with pytest.raises(ConfigError, match="is for tools/train.py"):
        check_config(_compose("recipe=train_builtin"), "search")


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.op_names=[none,conv9d]", "model.op_names"),
        ("model.stage_widths=[8,16]", "model.stage_widths"),
        ("search.warmup_epochs=4", "search.warmup_epochs=4 must be in [0, search.epochs=4)"),
    ],
)
def test_bad_space_or_schedule_stops_before_training(tmp_path, override, message):
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        search(out, override)
    assert message in one_line(err.value)
    # refused before the run was written
    assert not (out / "config.yaml").exists() and not (out / "checkpoints").exists()


def test_an_unknown_scorer_stops_before_the_supernet_trains(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        search(out, "stage=hybrid", "evolution.fitness.scorer=synflw")
    assert "evolution.fitness.scorer='synflw': unknown ['synflw']" in one_line(err.value)
    assert not (out / "config.yaml").exists() and not (out / "checkpoints").exists()


# ---------------------------------------------------------------- end to end


def test_search_writes_a_genotype_that_trains_and_its_outputs(tiny_search):
    run = tiny_search
    g = run_genotype(run)
    for name in ("config.yaml", "cell_normal.png", "cell_reduce.png", "alpha_heatmap.png"):
        assert (run / name).stat().st_size > 0, name
    alphas = json.loads((run / "alphas.json").read_text())
    assert len(alphas["normal"]) == len(edge_list(2))
    from hybridnas.space.network import build_network

    model = build_network(g)
    x = torch.randn(2, 3, g.frames, g.size, g.size)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss)


def test_wandb_offline_run_holds_the_logged_keys(tiny_search):
    rows = read_wandb_history(tiny_search)
    keys = set().union(*(r.keys() for r in rows))
    for key in (
        "train/loss",
        "train/acc",
        "val/acc",
        "lr/weights",
        "time/epoch_s",
        "sdas/decided_edges",
    ):
        assert key in keys, key
    assert any(k.startswith("alpha/normal/0-2/") for k in keys)
    decided = [r["sdas/decided_edges"] for r in rows if "sdas/decided_edges" in r]
    assert decided[0] == 0 and decided[-1] > 0  # edges got fixed as the search went


@pytest.mark.slow
def test_killed_and_resumed_search_matches_uninterrupted(tiny_search, tmp_path):
    out = tmp_path / "killed"
    # a checkpoint after every step gives a wide mid-epoch window to kill in, even on a fast box
    cmd = search_cmd(out, "tracking=none", "search.ckpt_every_steps=1")
    proc = subprocess.Popen(
        cmd, env=tool_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    ckpt = out / "checkpoints" / "search_last.pt"
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if ckpt.is_file():
            state = load_checkpoint(ckpt)
            if state["epoch"] >= 1 and state["batch_in_epoch"] > 0:
                proc.send_signal(signal.SIGKILL)
                killed_at = (state["epoch"], state["batch_in_epoch"])
                break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert killed_at is not None, "the run ended before it could be killed mid-epoch"
    assert not (out / "genotype.json").exists()
    resumed = run_cmd([*cmd, "resume=true"], tmp_path, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed search at epoch" in resumed.stdout
    assert run_genotype(out).key() == run_genotype(tiny_search).key()
    for a, b in zip(final_alphas(out), final_alphas(tiny_search), strict=True):
        assert torch.equal(a, b)


def test_existing_run_is_not_clobbered(tiny_search, tmp_path):
    run = copy_run(tiny_search, tmp_path)
    before = snapshot(run)
    with pytest.raises(ConfigError) as err:
        search(run)
    assert "resume=true" in one_line(err.value) and "overwrite=true" in str(err.value)
    assert snapshot(run) == before


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["engine=ddp", "engine=deepspeed zero_stage=2"])
def test_two_ranks_hold_identical_alphas_and_write_one_genotype(tmp_path, engine):
    out = tmp_path / "dist"
    cmd = search_cmd(out, "tracking=none", "search.epochs=3", *engine.split(), nproc=2)
    proc = run_cmd(cmd, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json.loads((out / "alphas.json").read_text())["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    run_genotype(out)  # valid
