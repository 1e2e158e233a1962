"""Issue 25: faults a long search meets in practice, each on the real tools and files.

1. a torn multi-part (DeepSpeed) checkpoint; 2. two writers of one run, and workers orphaned by
a killed torchrun; 3. hostile genotypes; 4. one-class data; 5. the built-in tasks' checks;
6. a full disk during a save; 7. refused runs leaving files, resuming a finished run.
Refusals before training run the tools' ``run`` in-process; the multi-process cases are slow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import videos
from helpers import (
    TINY_DATA,
    TINY_SEARCH,
    TINY_TRAIN,
    cfg_of,
    final_alphas,
    run_genotype,
    search_cmd,
    tool_env,
)
from helpers import tool as load_tool

from hybridnas.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_multipart,
    previous_path,
    save_checkpoint,
    save_multipart,
)
from hybridnas.engine.distributed import DistContext
from hybridnas.engine.runlock import LOCK_FILE, RunLock, RunLockedError
from hybridnas.errors import exit_on_user_error
from hybridnas.models import BUILTIN_GENOTYPE
from hybridnas.space.genotype import MAX_JSON_BYTES, Genotype, GenotypeError

ROOT = Path(__file__).resolve().parent.parent
ONE = DistContext()  # a world of one


def one_line(capsys) -> str:
    """The tool's single ``hybridnas: error:`` line; fails on a traceback or a second one."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    # a progress bar may share the line (it ends in \r, not \n)
    lines = [line for line in err.splitlines() if "hybridnas: error:" in line]
    assert len(lines) == 1, err[-3000:]
    return lines[0][lines[0].index("hybridnas: error:") :]


def refused(tool: str, overrides: list[str], out: Path, capsys) -> tuple[int, str]:
    """Run ``tools/<tool>.py``'s ``run`` in-process under the tools' error path: (exit code,
    its one error line)."""
    cfg = cfg_of(tool, [*overrides, f"out_dir={out}"])
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error(out):
        load_tool(tool).run(cfg)
    return exit_info.value.code, one_line(capsys)


SEARCH = [*TINY_SEARCH, "tracking=none", "search.epochs=2"]
TRAIN = [*TINY_TRAIN, "train.epochs=1", "train.steps_per_epoch=1"]


# ---------------------------------------------------------------- 1. torn checkpoints


def _engine_saver(payload: bytes):
    """A part written the way DeepSpeed writes its own: files under folder/tag."""

    def save(folder: str, tag: str) -> None:
        (Path(folder) / tag).mkdir(parents=True, exist_ok=True)
        (Path(folder) / tag / "optim_states.pt").write_bytes(payload)

    return save


def test_multipart_checkpoint_names_its_parts_and_keeps_the_previous(tmp_path):
    path = tmp_path / "checkpoints" / "search_last.pt"
    for step in range(3):
        save_multipart(
            path, {"w": torch.full((2,), step)}, f"s{step}", ONE, _engine_saver(b"%d" % step)
        )
    engines = sorted(p.name for p in (tmp_path / "checkpoints" / "deepspeed").iterdir())
    assert engines == ["search_last_s1", "search_last_s2"]  # older parts pruned
    state, tag = load_multipart(path, ONE, engine=True)
    assert tag == "search_last_s2" and state["w"].tolist() == [2, 2]
    assert load_checkpoint(previous_path(path))["manifest"]["step"] == "s1"


def test_torn_checkpoint_falls_back_to_the_last_complete_one(tmp_path, capsys):
    path = tmp_path / "search_last.pt"
    for step in range(2):
        save_multipart(
            path, {"w": torch.full((2,), step)}, f"s{step}", ONE, _engine_saver(b"%d" % step)
        )
    # the engine part one step ahead of the file that names it: what a kill between the two
    # writes left in the in-place layout
    (tmp_path / "deepspeed" / "search_last_s1" / "optim_states.pt").write_bytes(b"2")
    state, tag = load_multipart(path, ONE, engine=True)
    assert tag == "search_last_s0" and state["w"].tolist() == [0, 0]
    assert "do not match its checksum" in capsys.readouterr().out
    # the next save keeps the whole previous checkpoint instead of rotating the torn one over it
    save_multipart(path, {"w": torch.full((2,), 1)}, "s1b", ONE, _engine_saver(b"x"))
    assert load_checkpoint(previous_path(path))["manifest"]["step"] == "s0"
    shutil.rmtree(tmp_path / "deepspeed" / "search_last_s0")
    (tmp_path / "deepspeed" / "search_last_s1b" / "optim_states.pt").write_bytes(b"y")
    with pytest.raises(CheckpointError, match="no complete checkpoint is left") as err:
        load_multipart(path, ONE, engine=True)
    assert "\n" not in str(err.value) and "is missing" in str(err.value)


def _published_copies(proc: subprocess.Popen, ckpt: Path, dest: Path) -> list[Path]:
    """Copy every ``ckpt`` published while ``proc`` runs (each save is a new inode: an
    os.replace), in order."""
    copies, inode = [], None
    while proc.poll() is None:
        try:
            with ckpt.open("rb") as f:  # the open inode stays whole when replaced meanwhile
                ino = os.fstat(f.fileno()).st_ino
                if ino != inode:
                    inode = ino
                    copies.append(dest / f"published{len(copies)}.pt")
                    copies[-1].write_bytes(f.read())
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    return copies


@pytest.mark.slow  # ~2-3 min on 2 shared cores: a 2-rank DeepSpeed search and its resume
def test_torn_deepspeed_checkpoint_resumes_into_the_uninterrupted_result(tmp_path):
    out = tmp_path / "ds"
    cmd = search_cmd(
        out, "tracking=none", "search.epochs=3", "engine=deepspeed", "zero_stage=2",
        "search.ckpt_every_steps=1", nproc=2,
    )  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=tool_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    ckpt = out / "checkpoints" / "search_last.pt"
    copies = _published_copies(proc, ckpt, tmp_path)
    assert proc.wait() == 0, proc.stderr.read()[-3000:]
    reference = (run_genotype(out).key(), final_alphas(out))
    # an older search_last.pt over the finished run's engine state, the torn state: one
    # from epoch 1, where alphas train on the weights (the in-place layout resumed it silently
    # into other alphas)
    early = [
        c
        for c in copies
        if (load_checkpoint(c)["epoch"], load_checkpoint(c)["batch_in_epoch"]) == (1, 1)
    ]
    shutil.copyfile(early[0], ckpt)
    for name in ("genotype.json", "finished.json"):
        (out / name).unlink(missing_ok=True)
    resumed = subprocess.run(
        [*cmd, "resume=true"], env=tool_env(tmp_path), capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert run_genotype(out).key() == reference[0]
    for a, b in zip(final_alphas(out), reference[1], strict=True):
        assert torch.equal(a, b)
    assert "resuming from the previous complete checkpoint" in resumed.stdout


# ---------------------------------------------------------------- 2. one writer per run

_HOLDER = """
import sys, time
from hybridnas.engine.runlock import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    """Another process holding ``run_dir``'s lock (as a running search does)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(run_dir)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_of_a_run_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    load_tool("train").run(cfg_of("train", [*TRAIN, f"out_dir={out}"]))
    (out / "finished.json").unlink()  # as if the first run were still going
    holder = _hold_lock(out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    try:
        code, line = refused("train", [*TRAIN, "train.epochs=2", "resume=true"], out, capsys)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and f"pid {holder.pid} on host" in line and "being written" in line
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_stale_lock_of_a_killed_writer_is_taken_over(tmp_path):
    holder = _hold_lock(tmp_path)
    with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
        RunLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = RunLock(tmp_path).acquire()  # the kernel dropped the dead holder's lock
    try:
        assert lock.took_over and f"pid {holder.pid}" in lock.took_over
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None and time.time() < deadline, f"no {path} appeared"
        time.sleep(0.05)


@pytest.mark.slow  # ~40 s: a search to run and a second one to refuse
def test_a_resume_while_the_run_still_writes_is_refused(tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(
        search_cmd(out, "tracking=none", "search.epochs=200"), env=tool_env(tmp_path),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for(out / "checkpoints" / "search_last.pt", first)
        second = subprocess.run(
            search_cmd(out, "tracking=none", "search.epochs=200", "resume=true"),
            env=tool_env(tmp_path), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert first.poll() is None  # the first run was writing all along
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    (line,) = [ln for ln in second.stderr.splitlines() if "hybridnas: error:" in ln]
    assert f"being written by pid {first.pid} on host" in line
    assert "resumed search" not in second.stdout


@pytest.mark.slow  # ~60 s: a 2-rank search started, then its launcher's group killed
def test_killing_torchruns_process_group_ends_its_workers(tmp_path):
    out = tmp_path / "run"
    launcher = subprocess.Popen(
        search_cmd(out, "tracking=none", "search.epochs=60", nproc=2),
        env=tool_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    workers: list[psutil.Process] = []
    try:
        _wait_for(out / "checkpoints" / "search_last.pt", launcher)
        workers = psutil.Process(launcher.pid).children()
        assert len(workers) == 2
        os.killpg(launcher.pid, signal.SIGKILL)  # torchrun's group, not the workers' sessions
        launcher.wait()
        # orphans trained on (about 5 steps a second here) and wrote genotype.json
        _, alive = psutil.wait_procs(workers, timeout=5)
        running = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert not running, f"orphaned workers still running: {[p.pid for p in running]}"
    finally:
        for p in workers:
            if p.is_running():
                p.kill()
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    metrics = (out / "metrics.jsonl").read_bytes()
    time.sleep(2)
    assert (out / "metrics.jsonl").read_bytes() == metrics and not (out / "genotype.json").exists()


# ---------------------------------------------------------------- 3. hostile genotypes


def _doc() -> dict:
    return json.loads(Path(BUILTIN_GENOTYPE).read_text())


def _huge_node(doc):
    doc["cells"]["normal"]["edges"][0][1] = 10**12


def _many_nodes(doc):
    cell = doc["cells"]["normal"]
    cell["edges"] = [[j - 1, j, "skip"] for j in range(2, 10_002)]
    cell["concat"] = [10_001]


def _wide(doc):
    doc["stage_widths"][-1] = 10**9


def _long_clip(doc):
    doc["clip"]["frames"] = 10**6


HOSTILE = {
    "huge_node_index": (_huge_node, "over the limit of 16 intermediate nodes"),
    "ten_thousand_nodes": (_many_nodes, "10000 edges, over the limit"),
    "huge_width": (_wide, "'stage_widths[2]' = 1000000000 is over the limit"),
    "huge_frames": (_long_clip, "'clip.frames' = 1000000 is over the limit"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_genotype_is_refused_in_one_line_in_milliseconds(tmp_path, name):
    change, message = HOSTILE[name]
    doc = _doc()
    change(doc)
    path = tmp_path / "g.json"
    path.write_text(json.dumps(doc))
    start = time.perf_counter()
    with pytest.raises(GenotypeError, match=re.escape(message)) as err:
        Genotype.load(path)
    assert time.perf_counter() - start < 0.5 and "\n" not in str(err.value)
    assert len(str(err.value)) < 300


def test_deep_and_big_json_are_refused_before_parsing(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(GenotypeError, match="nests 200000 deep, over the limit of 32"):
        Genotype.load(deep)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({**_doc(), "meta": {"pad": "x" * MAX_JSON_BYTES}}))
    with pytest.raises(GenotypeError, match="over the 1048576-byte limit"):
        Genotype.load(big)
    digits = tmp_path / "digits.json"
    digits.write_text('{"version": ' + "9" * 100_000 + "}")
    with pytest.raises(GenotypeError, match="not valid JSON"):
        Genotype.load(digits)


def test_search_refuses_a_hostile_genotype_before_its_run_folder(tmp_path, capsys):
    doc = _doc()
    _huge_node(doc)
    (tmp_path / "g.json").write_text(json.dumps(doc))
    out = tmp_path / "run"
    overrides = [*SEARCH, "stage=evolution", f"genotype={tmp_path / 'g.json'}"]
    code, line = refused("search", overrides, out, capsys)
    assert code == 2 and "over the limit of 16 intermediate nodes" in line
    assert not out.exists()


# ---------------------------------------------------------------- 4. one-class data


def _one_class_videos(root: Path, classes: tuple[str, ...] = ("only",)) -> Path:
    """A folder dataset whose clips are all of class ``classes[0]`` (other class folders
    empty): 16 train and 4 val videos."""
    for c in classes:
        for split in ("train", "val"):
            (root / split / c).mkdir(parents=True, exist_ok=True)
    for k in range(16):
        videos.write_video(root / "train" / classes[0] / f"t{k}.mp4", label=0, frames=12)
    for k in range(4):
        videos.write_video(root / "val" / classes[0] / f"v{k}.mp4", label=0, frames=12)
    return root


FOLDER = ["data=folder", "data.frames=4", "data.size=16", "data.workers=0", "data.batch_size=4"]
SEARCH_NO_DATA = [o for o in SEARCH if o not in TINY_DATA]
TRAIN_NO_DATA = [o for o in TRAIN if not o.startswith("data.")]


def test_train_on_one_class_is_refused_before_training(tmp_path, capsys):
    root = _one_class_videos(tmp_path / "videos")
    out = tmp_path / "run"
    overrides = [*TRAIN_NO_DATA, *FOLDER, f"data.root={root}"]
    code, line = refused("train", overrides, out, capsys)
    assert code == 2 and "the train split has 1 class(es) (only: 16)" in line
    assert not out.exists()


def test_search_on_labels_of_one_class_is_refused_before_training(tmp_path, capsys):
    root = _one_class_videos(tmp_path / "videos", classes=("a", "b"))
    out = tmp_path / "run"
    overrides = [*SEARCH_NO_DATA, *FOLDER, f"data.root={root}"]
    code, line = refused("search", overrides, out, capsys)
    assert code == 2 and "split's 8 clips are all one class (a: 8) of 2" in line
    assert "train (weight half)" in line and not out.exists()


# ---------------------------------------------------------------- 5. built-in tasks' checks

TASKS = {
    "flash_gap_short": (["data.task=flash_gap", "data.frames=4"], "needs data.frames >= 11"),
    "motion_code_short": (["data.task=motion_code", "data.frames=4"], "needs data.frames >= 6"),
    "digit_over_canvas": (
        ["data.task=flash_gap", "data.frames=12", "data.digit_px=20"],
        "data.digit_px=20 is larger than the 16px canvas",
    ),
    "bogus_task": (["data.task=bogus"], "config key 'data.task' must be one of"),
}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_builtin_task_check_is_one_line_and_writes_nothing(tmp_path, capsys, name):
    extra, message = TASKS[name]
    out = tmp_path / "run"
    code, line = refused("search", [*SEARCH, *extra], out, capsys)
    assert code == 2 and message in line
    assert not out.exists()


def test_refused_search_leaves_no_log_or_hydra_record(tmp_path):
    """Under Hydra, as a user runs it: the job log Hydra opens before the tool can refuse
    and the folder it made are gone again."""
    out = tmp_path / "run"
    proc = subprocess.run(
        search_cmd(out, "tracking=none", "data.task=bogus"),
        env=tool_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "config key 'data.task' must be one of" in proc.stderr
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


# ---------------------------------------------------------------- 6. a full disk


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 320 KiB tmpfs (needs root): room for a run's small files, not its checkpoint."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_during_a_save_keeps_the_previous_file(tiny_disk):
    path = tiny_disk / "last.pt"
    save_checkpoint(path, {"w": torch.ones(10)})
    with pytest.raises(OSError, match="No space left on device") as err:
        save_checkpoint(path, {"w": torch.ones(200_000)})  # 800 KB
    assert err.value.filename == str(path)
    assert load_checkpoint(path)["w"].tolist() == [1.0] * 10
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["last.pt"]  # no temp file left


def test_full_disk_during_training_is_one_line(tiny_disk, capsys):
    out = tiny_disk / "run"
    cfg = cfg_of("train", [*TRAIN, f"out_dir={out}"])
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error(out):
        load_tool("train").run(cfg)
    line = one_line(capsys)
    assert exit_info.value.code == 1 and "No space left on device writing" in line
    assert "resume=true" in line


# ---------------------------------------------------------------- 7. a finished run


def test_resuming_a_finished_run_says_so_and_appends_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    train = load_tool("train")
    train.run(cfg_of("train", [*TRAIN, f"out_dir={out}"]))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix != ".log"}
    capsys.readouterr()
    assert train.run(cfg_of("train", [*TRAIN, "resume=true", f"out_dir={out}"])) is None
    assert "is finished" in capsys.readouterr().out
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix != ".log"}
    assert after == before
    rows = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("_kind") == "summary" for r in rows) == 1
    # more epochs is not the finished run: it continues
    st = train.run(cfg_of("train", [*TRAIN, "train.epochs=2", "resume=true", f"out_dir={out}"]))
    assert st.epoch == 2 and (out / "finished.json").is_file()
