"""Exposure logging: every served decision becomes a row of ``exposures``.

A request appends its row to an in-memory buffer (a deque append, no store access); a
worker thread writes the buffer to the store in one insert every ``flush_seconds`` and
once more when the service stops. A crash (``kill -9``, power loss) loses at most the rows
of the last ``flush_seconds``; a failed write keeps the rows for the next attempt, up to
``max_buffered`` rows (older ones are dropped beyond that, and counted in the log).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, NamedTuple

import pyarrow as pa

from segmint.serve._periodic import Periodic

__all__ = ["Exposure", "ExposureLog"]

log = logging.getLogger("segmint.serve.decide")


class Exposure(NamedTuple):
    """One row of ``exposures``."""

    exposure_id: str
    served_at: datetime
    user_id: str | None
    anonymous_id: str | None
    campaign: str | None
    arm: str | None
    segmentation: str | None
    segment: str | None
    ui_variant: str | None
    offer_code: str | None
    snapshot_id: str | None


_SCHEMA = pa.schema(
    [
        ("exposure_id", pa.string()),
        ("served_at", pa.timestamp("us", tz="UTC")),
        *[(name, pa.string()) for name in Exposure._fields[2:]],
    ]
)


class ExposureLog(Periodic):
    """The buffer and its writer thread (a service worker: ``start()`` / ``stop()``)."""

    def __init__(
        self,
        hold: Callable[[], AbstractContextManager[Any]],
        *,
        flush_seconds: float = 1.0,
        max_buffered: int = 200_000,
    ) -> None:
        self._hold = hold
        self.flush_seconds = flush_seconds
        self.max_buffered = max_buffered
        self._rows: deque[Exposure] = deque()
        super().__init__()
        self.n_written = 0
        self.n_dropped = 0

    def add(self, row: Exposure) -> None:
        """Queue one exposure (thread-safe, no I/O)."""
        self._rows.append(row)
        if len(self._rows) > self.max_buffered:
            self._rows.popleft()
            self.n_dropped += 1

    thread_name = "segmint-exposures"
    failure = "writing exposures failed; they stay buffered for the next try"

    @property
    def interval(self) -> float:
        return self.flush_seconds

    def tick(self) -> None:
        self.flush()

    def start(self) -> None:
        self._start_thread()

    def stop(self) -> None:
        self._stop_thread()
        self.flush()

    def flush(self) -> int:
        """Write what is buffered now; the number of rows written."""
        batch: list[Exposure] = []
        while self._rows:
            try:
                batch.append(self._rows.popleft())
            except IndexError:  # pragma: no cover - emptied by another flush meanwhile
                break
        if not batch:
            return 0
        columns = list(zip(*batch, strict=True))  # row tuples to columns, no dict per row
        table = pa.Table.from_arrays(
            [pa.array(col, type=f.type) for col, f in zip(columns, _SCHEMA, strict=True)],
            schema=_SCHEMA,
        )
        try:
            with self._hold() as store:
                store.insert("exposures", table)
        except Exception:
            for row in reversed(batch):  # keep them, oldest first, for the next attempt
                self._rows.appendleft(row)
            while len(self._rows) > self.max_buffered:
                self._rows.popleft()
                self.n_dropped += 1
            raise
        self.n_written += len(batch)
        return len(batch)
