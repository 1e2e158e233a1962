"""The one run scaffold of the tools that write a run folder (tools/search.py, tools/train.py).

``with open_run(cfg, tool=..., ...) as run:`` checks the config, the data root and the run
folder, starts the distributed job, takes the folder's lock, writes the config, reopens the
logs and opens the tracker; the body does the tool's work; a body that ends normally marks the
run finished (``finished.json``), and however it ends the tracker closes, the process group
ends and the lock is released. Nothing is written to the run folder before the run (or its
resume) is accepted, and only the process holding its lock writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from hybridnas.config import (
    check_config,
    check_data_root,
    check_run_dir,
    prepare_run_dir,
    reopen_run_logs,
)
from hybridnas.engine.distributed import (
    DistContext,
    barrier,
    cleanup,
    init_distributed,
    set_cpu_threads,
)
from hybridnas.engine.runlock import (
    acquire_run_lock,
    finished_note,
    mark_finished,
    unmark_finished,
)
from hybridnas.engine.tracking import Tracker, tracker_for_run


@dataclass
class Run:
    """An accepted run: what the body of :func:`open_run` works with."""

    cfg: DictConfig
    ctx: DistContext
    run_dir: Path
    tracker: Tracker
    settings: Any  # what the tool's ``check`` returned (its typed view of the config)
    prepared: Any  # what the tool's ``accept`` returned (its data or state, built and checked)


@contextmanager
def open_run(
    cfg: DictConfig,
    *,
    tool: str,
    strict_resume: bool,
    check: Callable[[DictConfig], Any] = lambda cfg: None,
    accept: Callable[[Any, DistContext], Any] = lambda settings, ctx: None,
) -> Iterator[Run | None]:
    """Start the run ``cfg`` describes for ``tools/<tool>.py``; yields None (after printing
    why) when ``resume=true`` finds it finished with the same settings.

    In order: the config (keys, types, choices), the data root, ``check(cfg)`` (the tool's
    own refusals, before any process group; its result is ``run.settings``), the run folder
    (``strict_resume``: a resume with other settings is refused), the distributed job,
    ``accept(settings, ctx)`` (checks that need the data or the ranks; ``run.prepared``),
    then the lock, the folder, the logs and the tracker.
    """
    check_config(cfg, tool)
    if cfg.resume and (note := finished_note(cfg)):
        print(note)
        yield None
        return
    check_data_root(cfg)
    settings = check(cfg)
    check_run_dir(cfg, strict_resume=strict_resume)
    ctx = init_distributed()
    if ctx.device.type == "cpu":
        set_cpu_threads(cfg.threads)
    lock, tracker = None, None
    try:
        prepared = accept(settings, ctx)
        lock = acquire_run_lock(Path(cfg.out_dir), ctx)  # held until this process ends
        run_dir = prepare_run_dir(cfg, ctx.is_main, strict_resume=strict_resume)
        if lock:
            lock.follow()  # overwrite=true moved the old folder, its lock file with it
            unmark_finished(run_dir)
        barrier(ctx)
        reopen_run_logs(run_dir)  # rank 0 may have moved the old run (overwrite=true) aside
        tracker = tracker_for_run(cfg, run_dir, ctx.rank)
        yield Run(cfg, ctx, run_dir, tracker, settings, prepared)
        if ctx.is_main:
            mark_finished(run_dir, tool)
    finally:
        if tracker is not None:
            tracker.finish()
        cleanup()
        if lock:
            lock.release()
