"""Checkpoint round trips, corrupt-file errors and crash safety of saves."""

import random
import signal
import time

import numpy as np
import pytest
import torch
from helpers import Saver

from hybridnas.engine.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _draw() -> tuple:
    return (
        [random.random() for _ in range(5)],
        np.random.rand(5).tolist(),
        np.random.randn(3).tolist(),  # also exercises numpy's cached gaussian
        torch.rand(5).tolist(),
    )


def test_rng_round_trip_through_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    _draw()
    np.random.randn(1)  # leave a cached gaussian in numpy's state
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"rng": capture_rng_state(), "step": 7})
    expected = _draw()

    _draw()  # move every stream on
    state = load_checkpoint(path)
    restore_rng_state(state["rng"])
    assert state["step"] == 7
    assert _draw() == expected


def test_round_trip_tensors(tmp_path):
    state = {"w": torch.randn(3, 4), "meta": {"epoch": 2, "names": ["a", "b"]}}
    save_checkpoint(tmp_path / "sub" / "c.pt", state)
    loaded = load_checkpoint(tmp_path / "sub" / "c.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["meta"] == state["meta"]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["c.pt"]  # no temp file left


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file") as e:
        load_checkpoint(tmp_path / "nope.pt")
    assert str(tmp_path / "nope.pt") in str(e.value)


def test_truncated_file(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.randn(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


def test_random_bytes_file(tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


def test_damaged_inside_archive(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.randn(100_000)})
    data = bytearray(path.read_bytes())
    data[200:300_000] = bytes(300_000 - 200)  # zip index intact, members garbled
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="corrupt") as e:
        load_checkpoint(path)
    assert str(path) in str(e.value)


def test_not_a_dict(tmp_path):
    path = tmp_path / "c.pt"
    torch.save(torch.zeros(2), path)
    with pytest.raises(CheckpointError, match="expected a dict"):
        load_checkpoint(path)


def test_sigkill_during_save_keeps_previous_file(tmp_path):
    path = tmp_path / "big.pt"
    saver = Saver(path, 4_000_000)
    try:
        # Kill while a temp file exists, i.e. mid-save, once at least one version is complete.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if path.exists() and any(p.suffix == ".tmp" for p in tmp_path.iterdir()):
                break
            time.sleep(0.005)
        else:
            pytest.fail("saver never started a second save")
    finally:
        returncode = saver.kill()
    assert returncode == -signal.SIGKILL
    state = load_checkpoint(path)
    assert state["w"].shape == (4_000_000,)
    assert bool((state["w"] == state["version"]).all())
