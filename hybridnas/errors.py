"""How the tools end on a user's mistake: one line on stderr and an exit code, no traceback."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hybridnas.config import ConfigError
from hybridnas.data.sanity import DataError
from hybridnas.engine.checkpoint import CheckpointError, DivergedError, disk_full_error
from hybridnas.engine.runlock import RunLockedError
from hybridnas.space.genotype import GenotypeError

USER_ERRORS = (
    ConfigError,
    GenotypeError,
    CheckpointError,
    DataError,
    RunLockedError,
    FileNotFoundError,
)


def _disk_full_line(err: OSError) -> str:
    where = f" writing {err.filename}" if err.filename else ""
    return (
        f"{os.strerror(err.errno)}{where}: that write was abandoned and the last complete "
        "checkpoint kept; free some space and continue with resume=true"
    )


def forget_refused_run(run_dir: str | os.PathLike | None) -> None:
    """Remove what starting a refused run left in ``run_dir``: the empty log file Hydra opened
    before the tool could refuse, and the folder itself if that leaves it empty."""
    if run_dir is None:
        return
    run_dir = Path(run_dir).resolve()
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.FileHandler) and Path(h.baseFilename).is_relative_to(run_dir):
            path = Path(h.baseFilename)
            if path.is_file() and path.stat().st_size == 0:
                root.removeHandler(h)
                h.close()
                path.unlink()
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


@contextmanager
def exit_on_user_error(run_dir: str | os.PathLike | None = None) -> Iterator[None]:
    """Exit 2 on a bad config, genotype, checkpoint, data, path or a run folder another
    process writes, 1 on a diverged run or a full disk, printing ``hybridnas: error:
    <message>``; any other exception keeps its traceback (a bug). A refusal also removes what
    the start left in ``run_dir`` (:func:`forget_refused_run`)."""
    try:
        yield
    except DivergedError as err:
        print(f"hybridnas: error: {err}", file=sys.stderr)
        sys.exit(1)
    except USER_ERRORS as err:
        forget_refused_run(run_dir)
        print(f"hybridnas: error: {err}", file=sys.stderr)
        sys.exit(2)
    except (OSError, RuntimeError) as err:
        full = disk_full_error(err)
        if full is None:
            raise
        print(f"hybridnas: error: {_disk_full_line(full)}", file=sys.stderr)
        sys.exit(1)
