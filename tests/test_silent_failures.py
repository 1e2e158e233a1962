"""Issue 13: runs that used to end "successfully" (or with a raw traceback) must stop with a
one-line error, and leave nothing misleading behind: diverged losses, a search that never
trains, an undecodable video in the evolution stage, overwrite / resume that mix two runs, and
evaluate.py scoring a model on clips it was not trained on.

Every test runs the real tools on tiny settings (the helpers of test_search / test_train)."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_checkpoint as tc
import test_search as ts
import test_train as tt
import torch

from hybridnas.engine.checkpoint import (
    CheckpointError,
    DivergedError,
    load_checkpoint,
    nonfinite_tensors,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parent.parent


def search(tmp_path: Path, out: Path, *extra: str, timeout: int = 300):
    """tools/search.py on the tiny differentiable config of test_search (2 epochs)."""
    cmd = ts._search_cmd(out, "tracking=none", "search.epochs=2", *extra)
    return subprocess.run(
        cmd, env=ts._env(tmp_path), capture_output=True, text=True, timeout=timeout
    )


def train(tmp_path: Path, out: Path, *extra: str):
    """tools/train.py on the tiny config of test_train (2 epochs x 3 steps)."""
    return subprocess.run(
        tt.train_cmd(out, *extra), env=ts._env(tmp_path), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The tool's one-line error; fails if the run printed a traceback instead."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # a progress bar may share the line (it ends in \r, not \n)
    lines = [line for line in proc.stderr.splitlines() if "hybridnas: error:" in line]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0][lines[0].index("hybridnas: error:") :]


def snapshot(run: Path) -> dict[str, bytes]:
    """Contents of every file of a run folder (relative path -> bytes), except Hydra's job log,
    which every start appends to, and run.lock, which names the last process to lock it."""
    files = (p for p in sorted(run.rglob("*")) if p.is_file() and p.suffix not in (".log", ".lock"))
    return {str(p.relative_to(run)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> Path:
    """A finished tiny differentiable search (copy it before changing it)."""
    tmp = tmp_path_factory.mktemp("searched")
    proc = search(tmp, tmp / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp / "run" / ".hydra" / "config.yaml").is_file()  # written by the tool now
    return tmp / "run"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished tiny training run (copy it before changing it)."""
    tmp = tmp_path_factory.mktemp("trained")
    proc = train(tmp, tmp / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "run"


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A copy of a finished run, unmarked as finished: as if killed just before its end (a
    finished run's resume=true writes nothing, see test_faults)."""
    dest = tmp_path / run.name
    shutil.copytree(run, dest)
    (dest / "finished.json").unlink(missing_ok=True)
    return dest


# ---------------------------------------------------------------- 1. non-finite losses


def test_diverging_search_stops_before_any_nan_is_saved(tmp_path):
    out = tmp_path / "run"
    proc = search(tmp_path, out, "search.w_lr=1e6", "search.ckpt_every_steps=1")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "diverged" in error_line(proc) and "search.w_lr" in error_line(proc)
    for name in ("genotype.json", "alphas.json", "alpha_heatmap.png"):
        assert not (out / name).exists(), name
    ckpt = out / "checkpoints" / "search_last.pt"
    if ckpt.exists():  # what was saved before the divergence is finite
        assert nonfinite_tensors(load_checkpoint(ckpt)) == []


def test_diverging_training_stops_before_any_nan_is_saved(tmp_path):
    out = tmp_path / "run"
    proc = train(tmp_path, out, "train.lr=1e9")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "diverged" in error_line(proc)
    for name in ("last.pt", "best.pt"):
        if (out / "checkpoints" / name).exists():
            assert nonfinite_tensors(load_checkpoint(out / "checkpoints" / name)) == [], name


def test_save_checkpoint_refuses_non_finite_tensors(tmp_path):
    with pytest.raises(DivergedError, match=r"1 tensor\(s\) hold NaN/inf \(weights.b\)"):
        save_checkpoint(
            tmp_path / "x.pt", {"weights": {"a": torch.ones(2), "b": torch.ones(2) / 0}}
        )
    assert not (tmp_path / "x.pt").exists()


def test_evaluate_refuses_a_checkpoint_with_nan_weights(trained, tmp_path):
    # a checkpoint written before the guard existed: real weights, one tensor NaN
    ckpt = load_checkpoint(trained / "checkpoints" / "last.pt")
    for state in (ckpt["weights"]["model"], ckpt["ema"]):
        name = next(k for k, v in state.items() if v.is_floating_point())
        state[name] = torch.full_like(state[name], float("nan"))
    bad = tmp_path / "nan.pt"
    torch.save(ckpt, bad)
    evaluate = tt.tool("evaluate")
    cfg = tt.cfg_of("evaluate", [f"ckpt={bad}", f"out_dir={tmp_path / 'eval'}", "data.num_test=16"])
    with pytest.raises(CheckpointError, match=r"nan\.pt is unusable: 1 tensor\(s\) hold NaN/inf"):
        evaluate.run(cfg)
    assert not (tmp_path / "eval" / "metrics.json").exists()


# ---------------------------------------------------------------- 2. a search that never trains


def test_search_val_smaller_than_a_batch_is_refused(tmp_path):
    out = tmp_path / "run"
    proc = search(tmp_path, out, "data.num_search_val=4")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = error_line(proc)
    assert "search_val" in line and "has 4 clips" in line and "data.batch_size=8" in line
    assert not (out / "genotype.json").exists()


def test_train_split_smaller_than_a_batch_is_refused(tmp_path):
    out = tmp_path / "run"
    proc = train(tmp_path, out, "data.num_train=4")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = error_line(proc)
    assert "train split" in line and "has 4 clips" in line and "data.batch_size=" in line
    assert not (out / "checkpoints").exists()


# ---------------------------------------------------------------- 3. a bad video in evolution


@pytest.mark.slow  # ~40 s on a loaded 2-core box: video decoding plus a proxy evolution
def test_evolution_skips_a_video_that_fails_to_decode(tmp_path):
    from hybridnas.search.evolution import chain_genotype
    from hybridnas.stage_config import SearchRun

    sys.path.insert(0, str(Path(__file__).parent))
    from videos import write_truncated

    root = tt.make_kinetics(tmp_path / "k400")
    broken = next((root / "train" / "bowling").glob("*.mp4"))
    write_truncated(broken, label=1)
    overrides = [
        "data=kinetics400", f"data.root={root}", "data.frames=4", "data.size=32",
        "data.sampling_rate=2", "data.fps=8", "data.workers=0", "data.search_val_fraction=0.25",
        "model.stage_widths=[4,8,8]", "model.num_cells=3", "model.stem_channels=8",
        "stage=evolution", "tracking=none", "evolution.population=2", "evolution.cycles=1",
        "evolution.children_per_cycle=1", "evolution.conet_every=0",
        "evolution.faithfulness_samples=0", "evolution.latency_min_run_s=0.01",
        "evolution.proxy.stage_clips=[64]", "evolution.proxy.val_clips=64",
        "evolution.proxy.batch_size=2", "evolution.proxy.inherit=false",
    ]  # fmt: skip
    genotype = tmp_path / "genotype.json"
    chain_genotype(SearchRun.from_cfg(ts._compose(*overrides))).save(genotype)
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "tools" / "search.py"), f"out_dir={out}", *overrides]
    proc = subprocess.run(
        [*cmd, f"genotype={genotype}"], env=ts._env(tmp_path), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"skipping {broken}" in proc.stdout  # said (logged), then left out of the proxy data
    assert (out / "genotype.json").is_file() and (out / "evolution_history.jsonl").is_file()


# ---------------------------------------------------------------- 4. overwrite


def test_overwrite_starts_in_a_clean_folder(searched, tmp_path):
    run = copy_run(searched, tmp_path)
    # what a previous hybrid run leaves and a differentiable run does not write
    (run / "pareto.json").write_text("[]")
    (run / "evolution_history.jsonl").write_text("{}\n")
    old = snapshot(run)
    proc = search(tmp_path, run, "overwrite=true", "search.epochs=1", "search.warmup_epochs=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "moved the previous run to" in proc.stdout
    assert not (run / "pareto.json").exists() and not (run / "evolution_history.jsonl").exists()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if "train/loss" in r] == [0]  # not after the old run's
    (aside,) = tmp_path.glob(f"{run.name}.replaced-*")
    assert snapshot(aside) == old  # the old run is kept, untouched, beside the new one


# ---------------------------------------------------------------- 5. resume validation


def test_search_resume_with_other_settings_is_refused_before_writing(searched, tmp_path):
    run = copy_run(searched, tmp_path)
    before = snapshot(run)
    proc = search(tmp_path, run, "resume=true", "search.a_lr=0.01", "search.epochs=3")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = error_line(proc)
    assert "search.a_lr: 0.003 -> 0.01" in line and "search.epochs: 2 -> 3" in line
    assert snapshot(run) == before  # config.yaml, classes.json, .hydra/ as they were


def test_train_resume_of_another_model_is_refused_before_writing(trained, tmp_path):
    run = copy_run(trained, tmp_path)
    before = snapshot(run)
    proc = train(tmp_path, run, "resume=true", "model.stage_widths=[4,8,16]")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = error_line(proc)
    assert "another genotype" in line and "model.stage_widths: [4, 8, 8] -> [4, 8, 16]" in line
    assert snapshot(run) == before


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    out = tmp_path / "run"
    proc = search(tmp_path, out, "resume=true")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "holds no checkpoint" in error_line(proc)
    assert not (out / "config.yaml").exists() and not (out / "checkpoints").exists()


# ---------------------------------------------------------------- 6. one-line errors


def test_search_without_data_root_is_one_line(tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "search.py"), "data=kinetics400", "tracking=none"]
    proc = subprocess.run(
        [*cmd, f"out_dir={tmp_path / 'a'}"], env=ts._env(tmp_path), capture_output=True, text=True
    )
    assert proc.returncode == 2 and "needs data.root" in error_line(proc)


def test_search_resume_from_a_truncated_checkpoint_is_one_line(searched, tmp_path):
    run = copy_run(searched, tmp_path)
    for name in ("search_last.pt", "search_last_prev.pt"):  # no whole one to fall back to
        ckpt = run / "checkpoints" / name
        ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    proc = search(tmp_path, run, "resume=true")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "truncated" in error_line(proc)


def test_search_resume_with_other_widths_is_one_line(searched, tmp_path):
    run = copy_run(searched, tmp_path)
    (run / "config.yaml").unlink()  # no settings to compare: the checkpoint itself must refuse
    proc = search(tmp_path, run, "resume=true", "model.stage_widths=[4,8,16]")
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = error_line(proc)
    assert "another shape" in line and "size mismatch" in line
    assert len(proc.stderr.splitlines()) < 20


# ---------------------------------------------------------------- 7. evaluate, temp files, hints


def test_evaluate_warns_when_clips_differ_from_training(trained, tmp_path, capsys):
    evaluate = tt.tool("evaluate")
    ckpt = trained / "checkpoints" / "last.pt"
    common = [f"ckpt={ckpt}", "data.num_test=16"]
    evaluate.run(tt.cfg_of("evaluate", [*common, f"out_dir={tmp_path / 'same'}"]))
    assert "warning" not in capsys.readouterr().err
    evaluate.run(
        tt.cfg_of(
            "evaluate",
            [*common, "data.size=16", "data.digit_px=6", f"out_dir={tmp_path / 'other'}"],
        )
    )
    err = capsys.readouterr().err
    assert "trained on 8x32x32 clips" in err and "the data gives 8x16x16" in err


def test_a_save_killed_mid_write_leaves_no_temp_after_resume(searched, tmp_path):
    run = copy_run(searched, tmp_path)
    # what save_checkpoint's mkstemp leaves when the process is SIGKILLed before os.replace
    stale = run / "checkpoints" / ".search_last.pt.k9x2ab7q.tmp"
    stale.write_bytes(b"half a checkpoint")
    proc = search(tmp_path, run, "resume=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not stale.exists()


def test_the_next_save_removes_the_temp_file_of_a_killed_save(tmp_path):
    path = tmp_path / "big.pt"
    proc = subprocess.Popen([sys.executable, "-c", tc._SAVER, str(path), str(2_000_000)])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            path.exists() and list(tmp_path.glob(".big.pt.*.tmp"))
        ):
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)  # mid-save: its temp file is left behind
    finally:
        proc.kill()
        proc.wait()
    assert list(tmp_path.glob(".big.pt.*.tmp")), "the saver was not killed mid-save"
    other = tmp_path / ".best.pt.abc123.tmp"  # another checkpoint's: not this save's to remove
    other.write_bytes(b"x")
    save_checkpoint(path, {"w": torch.ones(1)})
    assert not list(tmp_path.glob(".big.pt.*.tmp")) and other.exists()


def test_load_errors_never_suggest_weights_only_false(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"weights": pathlib.PurePosixPath("x")}, path)  # a pickle weights_only refuses
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "PurePosixPath" in message
    for advice in ("weights_only", "will likely succeed", "can still be loaded"):
        assert advice not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # not in tracebacks
