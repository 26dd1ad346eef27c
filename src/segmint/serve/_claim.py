"""How the service holds its store.

A PostgreSQL store is shared: the service keeps its connection open, and any number of
workers and CLI processes use the database beside it.

A DuckDB file has one writer, or several readers, never both. The service owns the file
while it runs (``segmint serve`` writes the claim, :func:`segmint.store.write_claim`), but
holds it only while it uses it: :class:`StoreHolder` opens the connection on the first use,
closes it after :attr:`StoreHolder.idle_close` seconds without use, and at once when a
read-only command announces that it waits for the file. When a reader holds the file the
service waits for it (up to :attr:`StoreHolder.wait` seconds, then a 503 problem with
``Retry-After``) — requests that need the store wait; tracking (spooled) and decisions
(in memory) do not touch it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from segmint.errors import RequestError, StoreBusyError

__all__ = ["StoreHolder"]

log = logging.getLogger("segmint.serve")


class StoreHolder:
    """The service's store: ``with holder.hold() as store: ...`` (one user at a time)."""

    idle_close: float = 1.0
    """Seconds without use after which a DuckDB file is let go (a waiting reader gets it
    sooner: the holder looks for one every :attr:`poll` seconds)."""

    poll: float = 0.1

    wait: float = 15.0
    """Seconds a use waits for a read-only command holding the DuckDB file."""

    def __init__(self, project: Any) -> None:
        self.project = project
        self.lock = threading.RLock()
        self._url: str = project.config.store_url
        self.shared = self._url.startswith(("postgresql://", "postgres://"))
        self._store: Any = None
        self._depth = 0
        self._released = time.monotonic()
        self._closer: threading.Thread | None = None
        self._stopping = threading.Event()
        self.n_opens = 0

    @contextmanager
    def hold(self) -> Iterator[Any]:
        """The open store, held by the caller alone until the block ends."""
        with self.lock:
            if self.shared:
                yield self.project.store
                return
            if self._store is None:
                self._store = self._open()
            self._depth += 1
            try:
                yield self._store
            finally:
                self._depth -= 1
                self._released = time.monotonic()
                if self._depth == 0:
                    self._after_use()

    def _open(self) -> Any:
        from segmint.store import Store, open_store, readers_waiting

        root = self.project.root
        deadline = time.monotonic() + self.wait
        pause = 0.01
        last: StoreBusyError | None = None
        while time.monotonic() < deadline:
            if readers_waiting(root):  # let the reader in first
                time.sleep(0.02)
                continue
            try:  # the first open creates or migrates the schema; later ones need not
                store = Store(self._url) if self.n_opens else open_store(self._url)
            except StoreBusyError as exc:
                last = exc
                time.sleep(pause)
                pause = min(pause * 1.5, 0.1)
                continue
            self.n_opens += 1
            self._ensure_closer()
            return store
        by = f" (PID {last.pid})" if last is not None and last.pid else ""
        raise RequestError(
            503,
            f"the store is busy: a read-only command{by} is reading it; try again shortly",
            headers={"Retry-After": "2"},
        )

    def _after_use(self) -> None:
        from segmint.store import readers_waiting

        if readers_waiting(self.project.root):
            self._close()

    def _close(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            finally:
                self._store = None

    def _ensure_closer(self) -> None:
        if self._closer is None or not self._closer.is_alive():
            self._closer = threading.Thread(
                target=self._close_when_idle, name="segmint-store-idle", daemon=True
            )
            self._closer.start()

    def _close_when_idle(self) -> None:
        from segmint.store import readers_waiting

        while not self._stopping.wait(self.poll):
            if self._store is None:
                continue
            idle = time.monotonic() - self._released >= self.idle_close
            if not (idle or readers_waiting(self.project.root)):
                continue
            if self.lock.acquire(blocking=False):
                try:
                    if self._depth == 0:
                        self._close()
                finally:
                    self.lock.release()

    def close(self) -> None:
        """Let go of the store for good (the service stops)."""
        self._stopping.set()
        with self.lock:
            self._close()

    @property
    def is_open(self) -> bool:
        """The DuckDB file is held right now (always True for a shared store)."""
        return self.shared or self._store is not None

    def __repr__(self) -> str:
        return f"StoreHolder({Path(self._url).name if not self.shared else 'postgresql'})"
