"""Crash-safe checkpoints and RNG state capture.

A checkpoint is written to a temporary file next to the target and moved over it with
``os.replace``, so a process killed mid-save leaves the previous complete file in place.
Loading always uses ``torch.load(weights_only=True)``; RNG states are therefore stored as
tensors, ints and lists only.

A checkpoint of several parts (a DeepSpeed engine folder beside the file) is one atomic unit:
:func:`save_multipart` writes the engine part under a step-specific tag, then publishes the
file, whose ``manifest`` names each part with its step and SHA-256, by one ``os.replace``; the
previous file is kept as ``<name>_prev.pt`` with its parts. :func:`load_multipart` verifies
the manifest and falls back to the previous checkpoint when the last one's parts disagree.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import math
import os
import pickle
import random
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybridnas.engine.distributed import DistContext, all_gather_object, barrier

__all__ = [
    "CheckpointError",
    "DivergedError",
    "capture_rng_state",
    "check_finite",
    "check_loss",
    "disk_full_error",
    "load_checkpoint",
    "load_multipart",
    "nonfinite_tensors",
    "remove_stale_temps",
    "restore_rng_state",
    "save_checkpoint",
    "save_multipart",
]

ENGINE_DIR = "deepspeed"  # engine parts live in checkpoints/deepspeed/<file stem>_<step>/
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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


def disk_full_error(err: BaseException | None) -> OSError | None:
    """The ENOSPC / EDQUOT OSError behind ``err`` (itself, a cause or a context), if any:
    torch's zip writer reports a full disk as a RuntimeError raised while handling it."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            return err
        err = err.__cause__ or err.__context__
    return None


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, ``os.replace``, fsync dir).

    Raises:
        DivergedError: a tensor of ``state`` is NaN or infinite (nothing is written).
        OSError: ENOSPC / EDQUOT naming ``path`` when the disk is full (the previous file at
            ``path`` is untouched, the temp file removed).
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
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        full = disk_full_error(err)
        if full is not None:  # one error naming the file, not torch's zip-writer chain
            raise OSError(full.errno, os.strerror(full.errno), str(path)) from None
        raise
    _fsync_dir(path.parent)


# ---------------------------------------------------------------- multi-part checkpoints


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint before ``path``'s current one is kept: ``<stem>_prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_prev{path.suffix}")


def folder_digest(folder: Path) -> str:
    """SHA-256 over the relative names and contents of every file under ``folder``."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        with f.open("rb") as fh:
            h.update(str(f.relative_to(folder)).encode() + b"\0")
            h.update(hashlib.file_digest(fh, "sha256").digest())
    return h.hexdigest()


def _keep_previous(path: Path) -> None:
    """Hard-link the current ``path`` as ``<stem>_prev.pt`` (atomic; no copy of the bytes)."""
    if not path.is_file():
        return
    prev = previous_path(path)
    tmp = prev.with_name(f".{prev.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    os.link(path, tmp)
    os.replace(tmp, prev)


def _manifest_of(path: Path) -> dict:
    """The manifest of a published checkpoint ({} when unreadable or absent); memory-mapped,
    so the tensors are not read."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001  (any damage: the file then names no part to keep)
        return {}
    return state.get("manifest") or {} if isinstance(state, dict) else {}


def _prune_engine_parts(path: Path) -> None:
    """Delete this checkpoint's engine folders that neither it nor its previous one names."""
    keep = {p for f in (path, previous_path(path)) for p in _manifest_of(f).get("parts", {})}
    for folder in (path.parent / ENGINE_DIR).glob(f"{glob.escape(path.stem)}_*"):
        if folder.is_dir() and f"{ENGINE_DIR}/{folder.name}" not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def save_multipart(
    path: str | os.PathLike,
    state: dict,
    step: str,
    ctx: DistContext,
    save_engine: Callable[[str, str], None] | None = None,
) -> None:
    """Collective (every rank): write ``state`` to ``path`` (rank 0) and, with
    ``save_engine(folder, tag)``, the engine part under the step-specific tag
    ``<stem>_<step>`` in ``checkpoints/deepspeed/``, as one unit.

    The engine part is written first, then ``path`` with a ``manifest`` ({"step", "parts":
    {name: {"step", "sha256"}}}) by one atomic rename; the file before it stays as
    ``<stem>_prev.pt`` with its parts, older parts are deleted. ``step`` must differ from
    every earlier save's (e.g. "e0003b000012"). A kill at any point leaves the last
    published checkpoint whole.
    """
    path = Path(path)
    engines = path.parent / ENGINE_DIR
    parts = {}
    if save_engine is not None:
        tag = f"{path.stem}_{step}"
        if ctx.is_main:  # left by a save killed before its publication: named by no manifest
            shutil.rmtree(engines / tag, ignore_errors=True)
        barrier(ctx)
        save_engine(str(engines), tag)
        barrier(ctx)  # every rank's shard is on disk before rank 0 checksums the folder
        if ctx.is_main:
            parts[f"{ENGINE_DIR}/{tag}"] = {"step": step, "sha256": folder_digest(engines / tag)}
    if ctx.is_main:
        if path.resolve() in _TORN:  # the previous checkpoint is the whole one: keep it
            _TORN.discard(path.resolve())
        else:
            _keep_previous(path)
        save_checkpoint(path, {**state, "manifest": {"step": step, "parts": parts}})
        _prune_engine_parts(path)
    barrier(ctx)


def _parts_problem(path: Path, state: dict, engine: bool) -> str | None:
    """Why the parts of the checkpoint at ``path`` disagree, or None when they agree."""
    manifest = state.get("manifest")
    if manifest is None:
        return f"{path} has no manifest (written by an older hybridnas)" if engine else None
    parts = manifest.get("parts", {})
    if engine and not parts:
        return f"{path} holds no engine part (written by another engine)"
    for name, part in parts.items():
        folder = path.parent / name
        if part.get("step") != manifest.get("step"):
            return f"{path} names part {name} of step {part.get('step')}, not {manifest['step']}"
        if not folder.is_dir():
            return f"{path} (step {manifest['step']}) names part {name}, which is missing"
        if folder_digest(folder) != part.get("sha256"):
            return (
                f"{path} (step {manifest['step']}) names part {name}, whose contents do not "
                "match its checksum (written by another step, or damaged)"
            )
    return None


_TORN: set[Path] = set()  # checkpoints found torn at resume: the next save keeps their prev


def _choose_checkpoint(path: Path, engine: bool) -> tuple[Path | None, str]:
    """(the checkpoint to resume, a note) after verifying ``path`` then its previous one;
    (None, why) when neither is whole. Writes nothing (train.py resumes before it holds the
    run's lock): a torn ``path`` is only remembered, so the next save replaces it instead of
    rotating it over the whole previous one."""
    problems = []
    for candidate in (path, previous_path(path)):
        if not candidate.is_file():
            if candidate == path:
                problems.append(f"checkpoint {path}: no such file")
            continue
        try:
            problem = _parts_problem(candidate, load_checkpoint(candidate), engine)
        except CheckpointError as err:
            problem = str(err)
        if problem is None and candidate == path:
            return path, ""
        if problem is None:
            _TORN.add(path.resolve())
            return candidate, (
                f"[hybridnas] {problems[0]}: resuming from the previous complete checkpoint "
                f"{candidate.name}"
            )
        problems.append(problem)
    return None, (
        f"cannot resume: {'; and '.join(problems)}; no complete checkpoint is left: start "
        "afresh with overwrite=true"
    )


def load_multipart(
    path: str | os.PathLike, ctx: DistContext, engine: bool, map_location: Any = "cpu"
) -> tuple[dict, str | None]:
    """Collective: (state, engine tag or None) of the checkpoint :func:`save_multipart` wrote
    at ``path``, after rank 0 verified its manifest (``engine``: an engine part is required),
    falling back to ``<stem>_prev.pt`` when the last one is torn.

    Raises:
        CheckpointError: neither checkpoint is whole (one line naming the disagreeing parts).
    """
    path = Path(path)
    choice, note = _choose_checkpoint(path, engine) if ctx.is_main else (None, "")
    choice, note = all_gather_object((choice, note), ctx)[0]  # every rank takes rank 0's word
    if choice is None:
        raise CheckpointError(note)
    if note and ctx.is_main:
        print(note)
    state = load_checkpoint(choice, map_location=map_location)
    parts = list(state.get("manifest", {}).get("parts", {}))
    return state, (Path(parts[0]).name if engine and parts else None)


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
