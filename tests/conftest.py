"""Shared test settings and runs: no test reaches a network, torch stays on few threads, the
built-in data is cached once per session (not in ~/.cache), and the tiny runs several modules
check are made once per session (helpers.py has the settings and the ways to run a tool)."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see hybridnas/__init__.py

import pytest  # noqa: E402
import torch  # noqa: E402
from helpers import run_cmd, search_cmd, train  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """One built-in data cache for the session's in-process runs: each tiny data set is built
    once, and the user's ~/.cache is neither read nor written."""
    before = os.environ.get("HYBRIDNAS_CACHE")
    path = tmp_path_factory.mktemp("hybridnas_cache")
    os.environ["HYBRIDNAS_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("HYBRIDNAS_CACHE", None)
    else:
        os.environ["HYBRIDNAS_CACHE"] = before


@pytest.fixture(scope="session")
def tiny_search(tmp_path_factory):
    """A finished tiny differentiable search (helpers.TINY_SEARCH, 4 epochs, W&B offline), run
    as a command, as a user runs it. Shared: copy it (helpers.copy_run) before changing it."""
    tmp = tmp_path_factory.mktemp("tiny_search")
    out = tmp / "run"
    proc = run_cmd(search_cmd(out, "tracking=offline"), tmp, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / ".hydra" / "config.yaml").is_file()  # written by the tool
    return out


@pytest.fixture(scope="session")
def tiny_train(tmp_path_factory):
    """A finished tiny training run (helpers.train: 2 epochs x 3 steps, a checkpoint every
    step), run in this process. Shared: copy it (helpers.copy_run) before changing it."""
    out = tmp_path_factory.mktemp("tiny_train") / "run"
    train(out)
    assert (out / "checkpoints" / "last.pt").is_file()
    return out
