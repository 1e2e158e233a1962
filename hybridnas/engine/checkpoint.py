"""Crash-safe checkpoints and RNG state capture.

A checkpoint is written to a temporary file next to the target and moved over it with
``os.replace``, so a process killed mid-save leaves the previous complete file in place.
Loading always uses ``torch.load(weights_only=True)``; RNG states are therefore stored as
tensors, ints and lists only.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or not a checkpoint."""


def _fsync_dir(folder: Path) -> None:
    """Persist a rename: the directory entry itself must reach the disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, ``os.replace``, fsync dir)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        CheckpointError: the file is missing, unreadable, truncated/corrupt, or holds
            something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    # torch.save writes a zip archive whose index sits at the end: a truncated or foreign
    # file fails this check, and we can say so instead of torch's "use weights_only=False".
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path}: truncated or not a torch checkpoint (bad zip)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    # torch.load reports damage through many types (zip, unpickling, EOF, runtime).
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        cause = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(f"checkpoint {path}: corrupt ({type(e).__name__}: {cause})") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict, found {type(state).__name__}")
    return state


def capture_rng_state() -> dict:
    """Snapshot python ``random``, numpy's global RNG, torch CPU and CUDA generators."""
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state = {
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np_keys.astype(np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Restore the generators captured by :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
