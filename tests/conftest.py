"""Shared test settings and runs: no test reaches a network, torch stays on few threads, the
built-in data is cached once per session (not in ~/.cache), and the tiny runs several modules
check are made once per session (helpers.py has the settings and the ways to run a tool)."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see hybridnas/__init__.py

import fcntl  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

# tools/ on the path, as for `python tools/bench.py`: the studies package (tools/studies/)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import run_cmd, search_cmd, train  # noqa: E402

# Torch threads of the tests that run in this process: 2 at most, and under pytest-xdist (-n 2)
# one per worker, or the workers' OpenMP threads stall each other (see
# hybridnas.engine.distributed); HYBRIDNAS_TEST_THREADS=N chooses (e.g. to check a learning
# test at 1 and at 2 threads).
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
THREADS = 1 if WORKER else max(1, min(2, os.cpu_count() or 1))
torch.set_num_threads(int(os.environ.get("HYBRIDNAS_TEST_THREADS", THREADS)))


def session_root(tmp_path_factory) -> Path:
    """The session's temporary folder; under pytest-xdist the one the workers' folders are in."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if WORKER else root


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """One built-in data cache for the session's in-process runs: each tiny data set is built
    once (by whichever xdist worker needs it first), and the user's ~/.cache is neither read
    nor written."""
    before = os.environ.get("HYBRIDNAS_CACHE")
    path = session_root(tmp_path_factory) / "hybridnas_cache"  # written atomically: shareable
    path.mkdir(exist_ok=True)
    os.environ["HYBRIDNAS_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("HYBRIDNAS_CACHE", None)
    else:
        os.environ["HYBRIDNAS_CACHE"] = before


@contextmanager
def made_once(tmp_path_factory, name: str):
    """A folder for a session-wide run ``name``, and whether it still has to be made (then the
    caller makes it inside the with block). Under pytest-xdist the workers share it: the first
    to get here makes it, holding a lock the others wait on, so it is made once per session."""
    root = session_root(tmp_path_factory)
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        make = not done.exists()
        if make:  # afresh, also after a worker failed to make it
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
        yield folder, make
        done.touch()


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory):
    """A finished tiny differentiable search (helpers.TINY_SEARCH, 4 epochs, W&B offline), run
    as a command, as a user runs it. Shared: copy it (helpers.copy_run) before changing it."""
    with made_once(tmp_path_factory, "tiny_search") as (tmp, make):
        out = tmp / "run"
        if make:
            proc = run_cmd(search_cmd(out, "tracking=offline"), tmp, timeout=600)
            assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / ".hydra" / "config.yaml").is_file()  # written by the tool
    return out


@pytest.fixture(scope="session")
def tiny_train(tmp_path_factory):
    """A finished tiny training run (helpers.train: 2 epochs x 3 steps, a checkpoint every
    step), run in this process. Shared: copy it (helpers.copy_run) before changing it."""
    with made_once(tmp_path_factory, "tiny_train") as (tmp, make):
        out = tmp / "run"
        if make:
            train(out)
    assert (out / "checkpoints" / "last.pt").is_file()
    return out
