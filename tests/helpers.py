"""Helpers the test modules share: the tiny settings of the tools, how to run a tool in this
process (its ``run(cfg)``) or as the user does (a fresh interpreter, for the exit code and the
one-line message), and small file utilities. Fixtures built on these live in conftest.py.

Test modules import this module (``from helpers import ...``), never each other."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"

# ---------------------------------------------------------------- tiny settings

#: The tiny built-in data every tiny search shares.
TINY_DATA = [
    "data.num_train=48",
    "data.num_search_val=48",
    "data.num_test=16",
    "data.batch_size=8",
    "data.frames=4",
    "data.size=16",
    "data.digit_px=6",
]
#: A tiny differentiable search: seconds on a shared CPU.
TINY_SEARCH = [
    *TINY_DATA,
    "model.op_names=[none,skip,max_pool_1x3x3,conv3d_3x3x3,dil_temporal_d2]",
    "model.steps=2",
    "model.stage_widths=[4,8,8]",
    "model.num_cells=3",
    "model.stem_channels=8",
    "search.epochs=4",
    "search.warmup_epochs=1",
    "stage=differentiable",
]
#: A tiny genotype network on tiny built-in data: seconds per training run on a shared CPU.
TINY_TRAIN = [
    "genotype=builtin",
    "model.num_cells=3",
    "model.stage_widths=[4,8,8]",
    "model.stem_channels=8",
    "model.stem_stride=[1,2,2]",
    "data.num_train=64",
    "data.num_search_val=8",  # not used by training; the built-in data builds every split
    "data.num_test=16",
    "data.batch_size=8",
    "train.steps_per_epoch=3",
    "tracking=none",
    "engine=none",
]
#: What evaluate.py needs of the built-in data to score TINY_TRAIN's checkpoints (the test
#: split at the training clip size; the other splits as small as they go, since every split
#: of the built-in data is built).
TINY_EVAL_DATA = ["data.num_train=8", "data.num_search_val=8", "data.num_test=16"]

# ---------------------------------------------------------------- tools in this process


def tool(name: str):
    """tools/<name>.py as a module (its ``run(cfg)`` is what its command line calls)."""
    spec = importlib.util.spec_from_file_location(f"hn_tool_{name}", ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cfg_of(config: str, overrides: list[str] | tuple[str, ...] = ()):
    """recipes/<config>.yaml composed with ``overrides``, as the tool's Hydra main sees it."""
    with initialize_config_dir(config_dir=str(RECIPES), version_base="1.3"):
        return compose(config, overrides=list(overrides))


@contextlib.contextmanager
def one_thread():
    """What a tool run as a command sees under the tests' OMP_NUM_THREADS=1: one torch thread,
    and the caller's thread count back afterwards (the tools set it for the whole process)."""
    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        if env is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env


def run_tool(name: str, overrides: list[str] | tuple[str, ...]):
    """``tools/<name>.py overrides...`` in this process: its ``run(cfg)`` on one thread.
    Returns what run returns; a refusal raises the error the command line turns into its one
    line (see hybridnas.errors)."""
    config = {"search": "search", "train": "train", "evaluate": "evaluate"}[name]
    with one_thread():
        return tool(name).run(cfg_of(config, overrides))


def search(out: Path, *extra: str, data: list[str] = TINY_DATA):
    """tools/search.py on TINY_SEARCH in this process, without tracking (``data``: the data
    overrides in place of TINY_DATA's)."""
    tiny = [a for a in TINY_SEARCH if a not in TINY_DATA]
    return run_tool("search", ["recipe=sdas_video", f"out_dir={out}", *data, *tiny,
                               "tracking=none", *extra])  # fmt: skip


def train(out: Path, *extra: str):
    """tools/train.py on TINY_TRAIN in this process (2 epochs x 3 steps)."""
    return run_tool("train", [*TINY_TRAIN, "train.epochs=2", "train.ckpt_every_steps=1",
                              f"out_dir={out}", *extra])  # fmt: skip


def one_line(err: BaseException) -> str:
    """The message a tool prints for ``err``, checked to fit on one line."""
    message = str(err)
    assert message and "\n" not in message, message
    return message


# ---------------------------------------------------------------- tools as commands


def tool_env(tmp_path: Path) -> dict:
    """The environment of a tool run as a command: offline W&B, its own data cache, 1 thread."""
    env = dict(os.environ, WANDB_MODE="offline", HYBRIDNAS_CACHE=str(tmp_path / "cache"))
    env["OMP_NUM_THREADS"] = "1"
    return env


def search_cmd(out: Path, *extra: str, nproc: int = 0) -> list[str]:
    """The command line of a TINY_SEARCH search (``nproc``: under torchrun with that many)."""
    launcher = [sys.executable, str(ROOT / "tools" / "search.py")]
    if nproc:
        launcher = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            "--master_port", str(29500 + os.getpid() % 1000), str(ROOT / "tools" / "search.py"),
        ]  # fmt: skip
    return [*launcher, "recipe=sdas_video", f"out_dir={out}", *TINY_SEARCH, *extra]


def train_cmd(out: Path, *extra: str) -> list[str]:
    """The command line of :func:`train`."""
    return [
        sys.executable,
        str(ROOT / "tools" / "train.py"),
        *TINY_TRAIN,
        "train.epochs=2",
        "train.ckpt_every_steps=1",
        f"out_dir={out}",
        *extra,
    ]


def run_cmd(cmd: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, env=tool_env(tmp_path), capture_output=True, text=True, timeout=timeout
    )


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The tool's one-line error; fails if the run printed a traceback instead."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    # a progress bar may share the line (it ends in \r, not \n)
    lines = [line for line in proc.stderr.splitlines() if "hybridnas: error:" in line]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0][lines[0].index("hybridnas: error:") :]


# ---------------------------------------------------------------- run folders and files


def snapshot(run: Path) -> dict[str, bytes]:
    """Contents of every file of a run folder (relative path -> bytes), except Hydra's job log,
    which every start appends to, and run.lock, which names the last process to lock it."""
    files = (p for p in sorted(run.rglob("*")) if p.is_file() and p.suffix not in (".log", ".lock"))
    return {str(p.relative_to(run)): p.read_bytes() for p in files}


def copy_run(run: Path, tmp_path: Path) -> Path:
    """A copy of a shared run folder to change (in ``tmp_path``, same name), unmarked as
    finished: as if killed just before its end (a finished run's resume=true writes nothing,
    see test_faults)."""
    dest = tmp_path / run.name
    shutil.copytree(run, dest)
    (dest / "finished.json").unlink(missing_ok=True)
    return dest


class Saver:
    """A child process saving ever newer versions of a checkpoint of ``n`` floats to ``path``
    (``{"version": v, "w": v * ones(n)}``) until it is killed. A fork of this process, so no
    interpreter and torch import to wait for; like a DataLoader worker it runs on one thread."""

    def __init__(self, path: Path, n: int) -> None:
        self.pid = os.fork()
        if self.pid == 0:  # the child: save until killed, never return into pytest
            try:
                from hybridnas.engine.checkpoint import save_checkpoint

                torch.set_num_threads(1)
                for version in range(10**6):
                    save_checkpoint(
                        path, {"version": version, "w": torch.full((n,), float(version))}
                    )
            finally:
                os._exit(1)

    def kill(self) -> int:
        """SIGKILL it (if it still runs) and reap it; returns what Popen.returncode would be:
        -9 when the kill ended it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)


def make_kinetics(root: Path, classes=("abseiling", "bowling", "juggling balls")) -> Path:
    """The official layout: annotations/{train,validate,test}.csv + <id>_<start>_<end>.mp4."""
    from videos import write_video

    per_split = {"train": 4, "validate": 1, "test": 1}
    for split, n in per_split.items():
        rows = []
        for c, label in enumerate(classes):
            for k in range(n):
                yid = f"{split[:2]}{c}{k}yt_abcd"  # 11 characters, like a YouTube id
                write_video(root / split / label / f"{yid}_{10:06d}_{13:06d}.mp4", c, frames=24)
                rows.append([label, yid, 10, 13, split])
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        with (root / "annotations" / f"{split}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            w.writerows(rows)
    return root


def final_alphas(run: Path) -> list[torch.Tensor]:
    """The architecture parameters of a search run's last checkpoint, in name order."""
    from hybridnas.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run / "checkpoints" / "search_last.pt")
    return [v for k, v in sorted(ckpt["arch"].items())]


def run_genotype(run: Path):
    """The genotype a run wrote."""
    from hybridnas.space.genotype import Genotype

    return Genotype.load(run / "genotype.json")
