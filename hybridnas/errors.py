"""How the tools end on a user's mistake: one line on stderr and an exit code, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hybridnas.config import ConfigError
from hybridnas.engine.checkpoint import CheckpointError, DivergedError
from hybridnas.space.genotype import GenotypeError

USER_ERRORS = (ConfigError, GenotypeError, CheckpointError, FileNotFoundError)


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """Exit 2 on a bad config, genotype, checkpoint or path, 1 on a diverged run, printing
    ``hybridnas: error: <message>``; any other exception keeps its traceback (a bug)."""
    try:
        yield
    except DivergedError as err:
        print(f"hybridnas: error: {err}", file=sys.stderr)
        sys.exit(1)
    except USER_ERRORS as err:
        print(f"hybridnas: error: {err}", file=sys.stderr)
        sys.exit(2)
