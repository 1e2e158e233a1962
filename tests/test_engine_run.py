"""The run scaffold (``engine.run.open_run``) and the one collective save/restore
(``engine.resume``): a run that fails inside the scaffold leaves no finished marker and
releases its lock; a finished one is marked and a resume of it writes nothing; a saved loop
state comes back with every RNG stream; wandb is imported only when a tracker opens a run."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, TINY_TRAIN, cfg_of

from hybridnas.engine.checkpoint import CheckpointError, save_checkpoint
from hybridnas.engine.distributed import DistContext
from hybridnas.engine.resume import restore_resumable, save_resumable
from hybridnas.engine.run import open_run
from hybridnas.engine.runlock import FINISHED_FILE, LOCK_FILE, RunLock


def tiny_train_cfg(out):
    return cfg_of("train", [*TINY_TRAIN, f"out_dir={out}"])


def lock_is_free(run_dir) -> bool:
    lock = RunLock(run_dir).acquire()  # raises RunLockedError while another holder has it
    lock.release()
    return True


def test_a_run_that_fails_inside_the_scaffold_is_not_marked_and_frees_its_lock(tmp_path):
    out = tmp_path / "run"
    with (
        pytest.raises(RuntimeError, match="the tool's work failed"),
        open_run(tiny_train_cfg(out), tool="train", strict_resume=False) as run,
    ):
        assert run.run_dir == out and (out / "config.yaml").is_file()
        assert json.loads((out / LOCK_FILE).read_text())["pid"] > 0  # held while it runs
        raise RuntimeError("the tool's work failed")
    assert not (out / FINISHED_FILE).exists()
    assert (out / LOCK_FILE).read_text() == ""  # no holder record: released, not died holding
    assert lock_is_free(out)


def test_a_finished_run_is_marked_and_its_resume_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    checks = []
    cfg = tiny_train_cfg(out)
    with open_run(
        cfg,
        tool="train",
        strict_resume=False,
        check=lambda c: checks.append("check") or "settings",
        accept=lambda settings, ctx: checks.append(settings) or "prepared",
    ) as run:
        assert (run.settings, run.prepared) == ("settings", "prepared")
        save_checkpoint(out / "checkpoints" / "last.pt", {"step": 1})  # something to resume
    assert checks == ["check", "settings"]
    assert json.loads((out / FINISHED_FILE).read_text())["tool"] == "train"
    assert lock_is_free(out)
    before = sorted(p.name for p in out.rglob("*"))
    cfg.resume = True
    with open_run(cfg, tool="train", strict_resume=False) as run:
        assert run is None
    assert "is finished" in capsys.readouterr().out
    assert sorted(p.name for p in out.rglob("*")) == before


def test_a_refused_config_stops_before_the_run_folder_exists(tmp_path):
    from hybridnas.config import ConfigError

    out = tmp_path / "run"
    with (
        pytest.raises(ConfigError, match="tools/train.py, not tools/search.py"),
        open_run(tiny_train_cfg(out), tool="search", strict_resume=True),
    ):
        pytest.fail("the body of a refused run ran")
    assert not out.exists()


def test_a_saved_state_comes_back_with_its_rng_and_without_the_bookkeeping(tmp_path):
    path = tmp_path / "checkpoints" / "loop_last.pt"
    ctx = DistContext()
    torch.manual_seed(3)
    random.seed(3)
    save_resumable(path, {"epoch": 2, "w": torch.ones(2)}, ctx, step="e2", diverged="x")
    expected = (torch.rand(3), random.random())
    got = {}
    state = restore_resumable(path, ctx, got.update)
    assert (torch.rand(3).tolist(), random.random()) == (expected[0].tolist(), expected[1])
    assert set(state) == set(got) == {"epoch", "w"}  # no "rng", no "manifest"
    save_resumable(path, {"epoch": 3}, ctx, step="e3", diverged="x")
    assert (path.parent / "loop_last_prev.pt").is_file()  # the previous one is kept whole


def test_a_diverged_state_is_refused_before_anything_is_written(tmp_path):
    from hybridnas.engine.checkpoint import DivergedError

    path = tmp_path / "loop_last.pt"
    with pytest.raises(DivergedError, match="search diverged at epoch 4: refusing to save"):
        state = {"w": torch.tensor([float("nan")])}
        save_resumable(path, state, DistContext(), step="e4", diverged="search diverged at epoch 4")
    assert not path.exists()
    with pytest.raises(CheckpointError, match="no such file"):
        restore_resumable(path, DistContext())


def test_importing_the_engine_and_the_loops_does_not_import_wandb():
    code = (
        "import sys, hybridnas.engine, hybridnas.engine.run, hybridnas.engine.resume; "
        "assert 'wandb' not in sys.modules, 'imported wandb'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
