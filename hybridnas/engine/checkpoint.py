"""Crash-safe checkpoints and RNG state capture.

A checkpoint is written to a temporary file next to the target and moved over it with
``os.replace``, so a process killed mid-save leaves the previous complete file in place.
Loading always uses ``torch.load(weights_only=True)``; RNG states are therefore stored as
tensors, ints and lists only.
"""

from __future__ import annotations

import glob
import math
import os
import pickle
import random
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "DivergedError",
    "capture_rng_state",
    "check_finite",
    "check_loss",
    "load_checkpoint",
    "nonfinite_tensors",
    "remove_stale_temps",
    "restore_rng_state",
    "save_checkpoint",
]


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or not a checkpoint."""


class DivergedError(RuntimeError):
    """A loss, or a tensor about to be saved, is NaN or infinite: the run diverged."""


def _float_tensors(obj: Any, prefix: str = ""):
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield prefix or "tensor", obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _float_tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from _float_tensors(v, f"{prefix}.{i}" if prefix else str(i))


def nonfinite_tensors(obj: Any) -> list[str]:
    """Dotted names of the floating-point tensors in a nested dict/list that hold NaN or inf."""
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for name, t in _float_tensors(obj):
        by_device.setdefault(t.device, []).append((name, t))
    bad = set()
    for items in by_device.values():  # one read-back per device, not one sync per tensor
        flags = torch.stack([torch.isfinite(t).all() for _, t in items]).tolist()
        bad |= {name for (name, _), ok in zip(items, flags, strict=True) if not ok}
    return [name for name, _ in _float_tensors(obj) if name in bad]


def check_finite(obj: Any, what: str) -> None:
    """Raise :class:`DivergedError` when any tensor of ``obj`` is NaN or infinite."""
    bad = nonfinite_tensors(obj)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise DivergedError(f"{what}: {len(bad)} tensor(s) hold NaN/inf ({shown})")


def check_loss(value: float, where: str, hint: str) -> float:
    """``value`` if finite; else :class:`DivergedError` naming where it happened and ``hint``."""
    if not math.isfinite(value):
        raise DivergedError(f"loss is {value} at {where}: the run diverged ({hint})")
    return value


def _fsync_dir(folder: Path) -> None:
    """Persist a rename: the directory entry itself must reach the disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a save of ``path`` killed mid-write left behind (only one
    process ever writes a given checkpoint, so any such file is stale); returns them."""
    path = Path(path)
    stale = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, ``os.replace``, fsync dir).

    Raises:
        DivergedError: a tensor of ``state`` is NaN or infinite (nothing is written).
    """
    path = Path(path)
    check_finite(state, f"refusing to write {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
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


def _load_failure(err: BaseException) -> str:
    """One line on why torch.load failed, without torch's advice to load unsafely."""
    text = str(err)
    if "Weights only load failed" in text:
        detail = re.search(
            r"WeightsUnpickler error: ([^\n]*?)(?: was not an allowed|\. |\n|$)", text
        )
        what = detail.group(1) if detail else "an object other than tensors and plain data"
        return (
            f"refused by the safe loader ({what}); hybridnas checkpoints hold only tensors and "
            "plain data, so this file was written by something else"
        )
    cause = text.splitlines()[0] if text else ""
    return f"corrupt ({type(err).__name__}: {cause})"


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
        # from None: torch's text advises weights_only=False, which runs code from the file
        raise CheckpointError(f"checkpoint {path}: {_load_failure(e)}") from None
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
