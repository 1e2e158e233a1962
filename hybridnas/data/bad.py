"""Bad-input bookkeeping shared by every dataset: skipped items are warned about once each
and counted, so one broken file never costs the rest of an epoch."""

from __future__ import annotations

import logging
from typing import NamedTuple

log = logging.getLogger("hybridnas.data")


class BadItem(NamedTuple):
    """What a dataset returns instead of a sample it could not read (the collate drops it)."""

    index: int
    path: str
    reason: str


class BadItemLog:
    """Mixin: a record of skipped inputs, kept in the main process.

    Items found bad while indexing (missing file, bad CSV row) are recorded at construction;
    items found bad while decoding come back from the workers inside the batch and the loader
    records them here, so counts are right with any number of workers.
    """

    def _init_bad_log(self, index_bad: list[tuple[str, str]] | None = None) -> None:
        self._bad: dict[str, str] = {}
        self._index_bad = list(index_bad or [])
        for where, reason in self._index_bad:
            self._warn_once(where, reason)

    def _warn_once(self, where: str, reason: str) -> None:
        if not hasattr(self, "_bad"):
            self._bad = {}
        if where not in self._bad:
            self._bad[where] = reason
            log.warning("skipping %s: %s", where, reason)

    def record_bad(self, items: list[BadItem]) -> None:
        """Record decode-time failures (called by the loader in the main process)."""
        for item in items:
            self._warn_once(item.path, item.reason)

    def bad_items_report(self) -> dict:
        """{"count": distinct skipped inputs so far, "indexing": skipped while indexing,
        "items": {path or CSV row: reason}}."""
        bad = getattr(self, "_bad", {})
        return {
            "count": len(bad),
            "indexing": len(getattr(self, "_index_bad", [])),
            "items": dict(bad),
        }
