"""One writer per run folder: an OS file lock held for the run's life.

``<run_dir>/run.lock`` is locked with ``fcntl.flock`` by rank 0 once a run is accepted and
holds ``{"host", "pid", "started"}`` of its holder. A second writer (another ``resume=true``,
a run with the same ``out_dir``) finds the lock taken and is refused in one line naming the
holder. The kernel drops the lock when its holder dies however it dies (``kill -9``
included), and a holder that ends cleanly clears its record: a record in a free lock file is a
dead holder's stale lock, taken over (and said so).

``finished.json`` marks a run its tool finished: ``resume=true`` with the same settings then
says so and writes nothing.

Not guaranteed: flock on network file systems is only as good as their lock support (NFSv4 and
Lustre with ``flock`` mounts have it).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from omegaconf import DictConfig

from hybridnas.config import config_changes
from hybridnas.engine.distributed import DistContext, all_gather_object

LOCK_FILE = "run.lock"


class RunLockedError(RuntimeError):
    """Another live process holds the run folder's lock."""


def _holder(text: str) -> str:
    """'pid P on host H (since T)' from a lock file's text, or what it holds."""
    try:
        doc = json.loads(text)
        return f"pid {doc['pid']} on host {doc['host']} (since {doc['started']})"
    except (ValueError, KeyError, TypeError):
        return "a process that left no holder record"


class RunLock:
    """The exclusive lock on ``<run_dir>/run.lock``; :meth:`acquire` takes it, closing the
    file (or the process ending) releases it."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None
        self.took_over: str | None = None  # the dead holder a stale lock named

    def acquire(self) -> RunLock:
        """Take the lock or raise :class:`RunLockedError` naming its live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is being written by {holder}, which holds {self.path}: "
                "wait for it to end (or stop it), or pick another out_dir"
            ) from None
        previous = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        self.took_over = _holder(previous) if previous else None
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self.fd = fd
        return self

    def follow(self) -> None:
        """Lock the folder again if it was moved aside (``overwrite=true``) since acquiring."""
        if self.fd is not None and not self.path.exists():
            self.release()
            self.acquire()

    def release(self) -> None:
        """Drop the lock, clearing the holder record: a record left in the file means its holder
        died holding it. The file stays (deleting it would race with another opener)."""
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None


def acquire_run_lock(run_dir: Path, ctx: DistContext) -> RunLock | None:
    """Collective: rank 0 takes ``run_dir``'s lock (None on other ranks); when it is taken by
    another process every rank raises the same :class:`RunLockedError`, so none waits."""
    lock, refusal = None, None
    if ctx.is_main:
        try:
            lock = RunLock(run_dir).acquire()
        except RunLockedError as err:
            refusal = str(err)
        if lock and lock.took_over:
            print(f"[hybridnas] took over the stale lock of {lock.took_over}, no longer running")
    refusal = all_gather_object(refusal, ctx)[0]
    if refusal:
        raise RunLockedError(refusal)
    return lock


# ---------------------------------------------------------------- a finished run

FINISHED_FILE = "finished.json"


def mark_finished(run_dir: Path, tool: str) -> None:
    """Record that ``tool`` finished the run in ``run_dir`` (rank 0, after its last output)."""
    record = {"tool": tool, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    (Path(run_dir) / FINISHED_FILE).write_text(json.dumps(record) + "\n")


def unmark_finished(run_dir: Path) -> None:
    """Drop the mark when a finished run is continued (more epochs, say): were it killed now,
    its resume must resume, not report it finished."""
    (Path(run_dir) / FINISHED_FILE).unlink(missing_ok=True)


def finished_note(cfg: DictConfig) -> str | None:
    """The line ``resume=true`` prints for a run that ended with the settings it is resumed
    with; None when it is not finished, or is resumed with other settings (more epochs, say:
    then it continues, or is refused as another run by the usual checks)."""
    run_dir = Path(cfg.out_dir)
    path = run_dir / FINISHED_FILE
    if not path.is_file() or not (run_dir / "config.yaml").is_file():
        return None
    if config_changes(cfg, run_dir):
        return None
    try:
        when = json.loads(path.read_text()).get("finished", "?")
    except (ValueError, AttributeError):
        when = "?"
    return (
        f"[hybridnas] {run_dir} is finished ({when}, {FINISHED_FILE}): nothing to resume, "
        "nothing written; overwrite=true starts it afresh"
    )
