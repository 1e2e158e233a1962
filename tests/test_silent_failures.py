"""Runs that used to end "successfully" (or with a raw traceback) must stop with a one-line
error, and leave nothing misleading behind: diverged losses, a search that never trains, an
undecodable video in the evolution stage, overwrite / resume that mix two runs, and evaluate.py
scoring a model on clips it was not trained on.

The tools' ``run(cfg)`` runs in this process (helpers.search / helpers.train), on the tiny
settings and the shared runs of conftest.py. One refusal per tool runs the real command, for
what only a command shows: exit code 2, one ``hybridnas: error:`` line, no traceback; the
exit-code mapping itself is checked on hybridnas.errors here."""

from __future__ import annotations

import json
import pathlib
import sys
import time

import pytest
import torch
from helpers import (
    ROOT,
    TINY_EVAL_DATA,
    Saver,
    cfg_of,
    copy_run,
    error_line,
    make_kinetics,
    one_line,
    run_cmd,
    search,
    search_cmd,
    snapshot,
    tool,
    train,
    train_cmd,
)

from hybridnas.config import ConfigError
from hybridnas.engine.checkpoint import (
    CheckpointError,
    DivergedError,
    load_checkpoint,
    nonfinite_tensors,
    save_checkpoint,
)
from hybridnas.errors import exit_on_user_error
from hybridnas.space.genotype import GenotypeError

# ---------------------------------------------------------------- 0. how a tool ends


def test_user_errors_exit_2_a_diverged_run_1_with_one_line_and_bugs_keep_their_traceback(
    capsys,
):
    for err, code in [
        (ConfigError("bad key"), 2),
        (CheckpointError("bad file"), 2),
        (GenotypeError("bad genotype"), 2),
        (FileNotFoundError("no folder"), 2),
        (DivergedError("loss diverged"), 1),
    ]:
        with pytest.raises(SystemExit) as exit_, exit_on_user_error():
            raise err
        assert exit_.value.code == code, err
        assert capsys.readouterr().err == f"hybridnas: error: {err}\n"
    with pytest.raises(KeyError), exit_on_user_error():
        raise KeyError("a bug")


def test_a_refused_search_command_exits_2_with_one_line_and_writes_nothing(tiny_search, tmp_path):
    run = copy_run(tiny_search, tmp_path)
    before = snapshot(run)
    cmd = search_cmd(run, "tracking=none", "resume=true", "search.a_lr=0.01", "search.epochs=5")
    proc = run_cmd(cmd, tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = error_line(proc)
    assert "search.a_lr: 0.003 -> 0.01" in line and "search.epochs: 4 -> 5" in line
    assert snapshot(run) == before  # config.yaml, classes.json, .hydra/ as they were


def test_a_refused_train_command_exits_2_with_one_line_and_writes_nothing(tiny_train, tmp_path):
    run = copy_run(tiny_train, tmp_path)
    before = snapshot(run)
    proc = run_cmd(train_cmd(run, "resume=true", "model.stage_widths=[4,8,16]"), tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    line = error_line(proc)
    assert "another genotype" in line and "model.stage_widths: [4, 8, 8] -> [4, 8, 16]" in line
    assert snapshot(run) == before


# ---------------------------------------------------------------- 1. non-finite losses


def test_diverging_search_stops_before_any_nan_is_saved(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DivergedError) as err:
        search(out, "search.epochs=2", "search.w_lr=1e6", "search.ckpt_every_steps=1")
    assert "diverged" in one_line(err.value) and "search.w_lr" in str(err.value)
    for name in ("genotype.json", "alphas.json", "alpha_heatmap.png"):
        assert not (out / name).exists(), name
    ckpt = out / "checkpoints" / "search_last.pt"
    if ckpt.exists():  # what was saved before the divergence is finite
        assert nonfinite_tensors(load_checkpoint(ckpt)) == []


def test_diverging_training_stops_before_any_nan_is_saved(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(DivergedError) as err:
        train(out, "train.lr=1e9")
    assert "diverged" in one_line(err.value)
    for name in ("last.pt", "best.pt"):
        if (out / "checkpoints" / name).exists():
            assert nonfinite_tensors(load_checkpoint(out / "checkpoints" / name)) == [], name


def test_save_checkpoint_refuses_non_finite_tensors(tmp_path):
    with pytest.raises(DivergedError, match=r"1 tensor\(s\) hold NaN/inf \(weights.b\)"):
        save_checkpoint(
            tmp_path / "x.pt", {"weights": {"a": torch.ones(2), "b": torch.ones(2) / 0}}
        )
    assert not (tmp_path / "x.pt").exists()


def test_evaluate_refuses_a_checkpoint_with_nan_weights(tiny_train, tmp_path):
    # a checkpoint written before the guard existed: real weights, one tensor NaN
    ckpt = load_checkpoint(tiny_train / "checkpoints" / "last.pt")
    for state in (ckpt["weights"]["model"], ckpt["ema"]):
        name = next(k for k, v in state.items() if v.is_floating_point())
        state[name] = torch.full_like(state[name], float("nan"))
    bad = tmp_path / "nan.pt"
    torch.save(ckpt, bad)
    cfg = cfg_of("evaluate", [f"ckpt={bad}", f"out_dir={tmp_path / 'eval'}", *TINY_EVAL_DATA])
    with pytest.raises(CheckpointError, match=r"nan\.pt is unusable: 1 tensor\(s\) hold NaN/inf"):
        tool("evaluate").run(cfg)
    assert not (tmp_path / "eval" / "metrics.json").exists()


# ---------------------------------------------------------------- 2. a search that never trains


def test_search_val_smaller_than_a_batch_is_refused(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        search(out, "data.num_search_val=4")
    line = one_line(err.value)
    assert "search_val" in line and "has 4 clips" in line and "data.batch_size=8" in line
    assert not (out / "genotype.json").exists()


def test_train_split_smaller_than_a_batch_is_refused(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        train(out, "data.num_train=4")
    line = one_line(err.value)
    assert "train split" in line and "has 4 clips" in line and "data.batch_size=" in line
    assert not (out / "checkpoints").exists()


# ---------------------------------------------------------------- 3. a bad video in evolution


@pytest.mark.slow  # ~40 s on a loaded 2-core box: video decoding plus a proxy evolution
def test_evolution_skips_a_video_that_fails_to_decode(tmp_path):
    from videos import write_truncated

    from hybridnas.config import SearchRun
    from hybridnas.search.evolution.loop import chain_genotype

    root = make_kinetics(tmp_path / "k400")
    broken = next((root / "train" / "bowling").glob("*.mp4"))
    write_truncated(broken, label=1)
    overrides = [
        "data=kinetics400", f"data.root={root}", "data.frames=4", "data.size=32",
        "data.sampling_rate=2", "data.fps=8", "data.workers=0", "data.search_val_fraction=0.25",
        "model.stage_widths=[4,8,8]", "model.num_cells=3", "model.stem_channels=8",
        "stage=evolution", "tracking=none", "evolution.population=2", "evolution.cycles=1",
        "evolution.children_per_cycle=1", "evolution.conet_every=0",
        "evolution.faithfulness.samples=0", "evolution.latency_min_run_s=0.01",
        "evolution.proxy.stage_clips=[64]", "evolution.proxy.val_clips=64",
        "evolution.proxy.batch_size=2", "evolution.proxy.inherit=false",
    ]  # fmt: skip
    genotype = tmp_path / "genotype.json"
    chain_genotype(SearchRun.from_cfg(cfg_of("search", overrides))).save(genotype)
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "tools" / "search.py"), f"out_dir={out}", *overrides]
    proc = run_cmd([*cmd, f"genotype={genotype}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"skipping {broken}" in proc.stdout  # said (logged), then left out of the proxy data
    assert (out / "genotype.json").is_file() and (out / "evolution_history.jsonl").is_file()


# ---------------------------------------------------------------- 4. overwrite


def test_overwrite_starts_in_a_clean_folder(tiny_search, tmp_path, capsys):
    run = copy_run(tiny_search, tmp_path)
    # what a previous hybrid run leaves and a differentiable run does not write
    (run / "pareto.json").write_text("[]")
    (run / "evolution_history.jsonl").write_text("{}\n")
    old = snapshot(run)
    search(run, "overwrite=true", "search.epochs=1", "search.warmup_epochs=0")
    assert "moved the previous run to" in capsys.readouterr().out
    assert not (run / "pareto.json").exists() and not (run / "evolution_history.jsonl").exists()
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if "train/loss" in r] == [0]  # not after the old run's
    (aside,) = tmp_path.glob(f"{run.name}.replaced-*")
    assert snapshot(aside) == old  # the old run is kept, untouched, beside the new one


# ---------------------------------------------------------------- 5. resume validation


def test_search_resume_with_other_settings_is_refused_before_writing(tiny_search, tmp_path):
    run = copy_run(tiny_search, tmp_path)
    before = snapshot(run)
    with pytest.raises(ConfigError) as err:
        search(run, "resume=true", "search.a_lr=0.01", "model.num_cells=4")
    line = one_line(err.value)
    assert "search.a_lr: 0.003 -> 0.01" in line and "model.num_cells: 3 -> 4" in line
    assert snapshot(run) == before


def test_train_resume_of_another_model_is_refused_before_writing(tiny_train, tmp_path):
    run = copy_run(tiny_train, tmp_path)
    before = snapshot(run)
    with pytest.raises(CheckpointError) as err:
        train(run, "resume=true", "model.stage_widths=[4,8,16]")
    line = one_line(err.value)
    assert "another genotype" in line and "model.stage_widths: [4, 8, 8] -> [4, 8, 16]" in line
    assert snapshot(run) == before


def test_resume_without_a_checkpoint_is_refused(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as err:
        search(out, "resume=true")
    assert "holds no checkpoint" in one_line(err.value)
    assert not (out / "config.yaml").exists() and not (out / "checkpoints").exists()


# ---------------------------------------------------------------- 6. one-line errors


def test_search_without_data_root_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        search(tmp_path / "a", data=["data=kinetics400"])
    assert "needs data.root" in one_line(err.value)
    assert not (tmp_path / "a").exists()


def test_search_resume_from_a_truncated_checkpoint_is_one_line(tiny_search, tmp_path):
    run = copy_run(tiny_search, tmp_path)
    for name in ("search_last.pt", "search_last_prev.pt"):  # no whole one to fall back to
        ckpt = run / "checkpoints" / name
        if ckpt.is_file():
            ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        search(run, "resume=true")
    assert "truncated" in one_line(err.value)


def test_search_resume_with_other_widths_is_one_line(tiny_search, tmp_path):
    run = copy_run(tiny_search, tmp_path)
    (run / "config.yaml").unlink()  # no settings to compare: the checkpoint itself must refuse
    with pytest.raises(CheckpointError) as err:
        search(run, "resume=true", "model.stage_widths=[4,8,16]")
    line = one_line(err.value)
    assert "another shape" in line and "size mismatch" in line


# ---------------------------------------------------------------- 7. evaluate, temp files, hints


def test_evaluate_warns_when_clips_differ_from_training(tiny_train, tmp_path, capsys):
    evaluate = tool("evaluate")
    ckpt = tiny_train / "checkpoints" / "last.pt"
    common = [f"ckpt={ckpt}", *TINY_EVAL_DATA]
    evaluate.run(cfg_of("evaluate", [*common, f"out_dir={tmp_path / 'same'}"]))
    assert "warning" not in capsys.readouterr().err
    evaluate.run(
        cfg_of(
            "evaluate",
            [*common, "data.size=16", "data.digit_px=6", f"out_dir={tmp_path / 'other'}"],
        )
    )
    err = capsys.readouterr().err
    assert "trained on 8x32x32 clips" in err and "the data gives 8x16x16" in err


def test_a_save_killed_mid_write_leaves_no_temp_after_resume(tiny_search, tmp_path):
    run = copy_run(tiny_search, tmp_path)
    # what save_checkpoint's mkstemp leaves when the process is SIGKILLed before os.replace
    stale = run / "checkpoints" / ".search_last.pt.k9x2ab7q.tmp"
    stale.write_bytes(b"half a checkpoint")
    search(run, "resume=true")
    assert not stale.exists()


def test_the_next_save_removes_the_temp_file_of_a_killed_save(tmp_path):
    path = tmp_path / "big.pt"
    saver = Saver(path, 2_000_000)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            path.exists() and list(tmp_path.glob(".big.pt.*.tmp"))
        ):
            time.sleep(0.005)
    finally:
        saver.kill()  # mid-save: its temp file is left behind
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
