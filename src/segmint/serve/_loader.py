"""The loader thread: spool lines into the store, in micro-batches, exactly once.

Every ``tracking.batch_seconds`` the :class:`TrackingLoader` reads, for each spool file it
may load, the complete lines after the file's offset in ``tracking_spool.loaded_bytes``
(absent: 0), at most ``max_messages`` at a time, and calls the load function
(:func:`segmint.sources.load_messages`) with them. The load writes its rows in one store
transaction and calls back ``inside()`` just before committing; ``inside`` moves the file's
offset in the same transaction. So a micro-batch's rows and its offset commit together or
not at all: a crash or a failing load leaves the offset where it was and the lines are read
again on the next tick (and de-duplicated by ``tracked_messages`` if a commit was lost).

Which files: this process's own, and those of writers that are gone (their ``flock`` is
free, see :mod:`segmint.serve._spool`); a live writer's file in another process is left to
that process's loader. A gone writer's file, once loaded to its last complete line, is
marked ``closed``, deleted, and its row removed. On stop: the writer is flushed and stopped,
one last load runs, and this process's own file is closed the same way.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from segmint.serve._periodic import Periodic
from segmint.serve._spool import (
    SPOOL_FIELD,
    SpoolWriter,
    claim_if_dead,
    complete_size,
    parse_line,
    read_lines,
    spool_files,
)

__all__ = ["LoadFunction", "TrackingLoader", "tracking_worker"]

log = logging.getLogger(__name__)

LoadFunction = Callable[..., Any]
"""``load(store, config, messages, *, inside=None, now=None)``: one micro-batch, one
transaction, ``inside()`` called in it just before commit."""


def _default_load(*args: Any, **kwargs: Any) -> Any:
    from segmint.sources import load_messages

    return load_messages(*args, **kwargs)


class TrackingLoader(Periodic):
    """A service worker (``start``/``stop``) that loads the spool into the store.

    Parameters
    ----------
    project : Project
        The open project (its ``store``, ``config`` and ``root``).
    hold : callable or lock
        ``hold()`` gives a context manager yielding the store, held by the caller alone
        (the service passes its holder: ``lambda: hold_store(app)``); a lock instead means
        ``project.store`` used under that lock (tests, a process without a service).
    writer : SpoolWriter
        This process's spool writer; the loader starts and stops it.
    load : callable, optional
        The load function (default :func:`segmint.sources.load_messages`).
    batch_seconds : float, optional
        Seconds between loads (default ``tracking.batch_seconds``).
    max_messages : int
        Most messages in one micro-batch.
    """

    def __init__(
        self,
        project: Any,
        hold: Any,
        writer: SpoolWriter,
        *,
        load: LoadFunction | None = None,
        batch_seconds: float | None = None,
        max_messages: int = 20_000,
    ) -> None:
        self.project = project
        self.hold = _as_hold(project, hold)
        self.lock = hold if hasattr(hold, "acquire") else None  # given a lock: that lock
        self.writer = writer
        self.load = load or _default_load
        self.batch_seconds = (
            project.config.tracking.batch_seconds if batch_seconds is None else batch_seconds
        )
        self.max_messages = max_messages
        self.n_loaded = 0
        self.n_failures = 0
        # spool file -> bytes loaded, as last committed by this loader: a file that has not
        # grown since is skipped without touching the store (an idle service lets a DuckDB
        # file go, see StoreHolder)
        self._loaded: dict[str, int] = {}
        self._vault_obj: Any = None
        super().__init__()

    def _vault(self) -> Any:
        """The store's vault (seals the spool's lines and opens them), read once."""
        if self._vault_obj is None:
            from segmint.store import open_vault

            with self.hold() as store:
                self._vault_obj = open_vault(store, self.project.config)
        return self._vault_obj

    def _opener(self) -> Any:
        vault = self._vault()
        return lambda text: str(vault.open(text, SPOOL_FIELD))

    @property
    def folder(self) -> Path:
        return self.writer.folder

    # -- lifecycle -------------------------------------------------------------------------
    thread_name = "segmint-loader"

    @property
    def interval(self) -> float:
        return self.batch_seconds

    def tick(self) -> None:
        self.run_once()  # never raises: a failed file is logged and tried again

    def start(self) -> None:
        self._vault()  # the keys (made on a new store) before the first line is sealed
        if self.writer.seal is None and self._vault_obj is not None and self._vault_obj.encrypt:
            vault = self._vault_obj
            self.writer.seal = lambda text: str(vault.seal(text, SPOOL_FIELD))
        self.writer.start()
        self._start_thread()

    def stop(self) -> None:
        """Flush the writer, load what is left, stop."""
        self.writer.stop()
        self._stop_thread(timeout=120)
        self.run_once()

    # -- one tick --------------------------------------------------------------------------
    def run_once(self) -> int:
        """Load every file this process may load; the number of messages loaded. Never
        raises: a failure is logged and the file is tried again next time."""
        n = 0
        for path in spool_files(self.folder):
            own = path == self.writer.path
            claim: IO[bytes] | None = None
            if not (own and self.writer.running):
                claim = claim_if_dead(path)
                if claim is None:
                    continue  # a live writer in another process: its loader's job
            try:
                n += self._load_file(path, gone=claim is not None)
            except Exception as exc:
                self.n_failures += 1
                log.warning(
                    "loading tracking spool %s failed (%s); trying again in %.1fs",
                    path.name,
                    type(exc).__name__,
                    self.batch_seconds,
                )
                log.debug("the load failure", exc_info=True)
            finally:
                if claim is not None:
                    claim.close()
        return n

    def _load_file(self, path: Path, *, gone: bool) -> int:
        n = 0
        known = self._loaded.get(path.name)
        if known is not None and not gone and path.stat().st_size <= known:
            return 0  # nothing new since the last commit
        while True:
            loaded_bytes, loaded_messages, closed = self._offset(path.name)
            if closed:
                self._forget(path)
                return n
            read = read_lines(
                path, loaded_bytes, max_messages=self.max_messages, opener=self._opener()
            )
            if read.messages:
                self._load_batch(path.name, read.messages, read.end, loaded_messages)
                n += len(read.messages)
                self.n_loaded += len(read.messages)
            if len(read.messages) < self.max_messages or self._stop.is_set():
                break
        if gone and self._offset(path.name)[0] >= complete_size(path):
            self._close(path)
        return n

    def _load_batch(self, name: str, messages: list[dict[str, Any]], end: int, before: int) -> None:
        started = time.perf_counter()
        with self.hold() as store:

            def inside() -> None:
                self._save_offset(store, name, end, before + len(messages), closed=False)

            self.load(store, self.project.config, messages, inside=inside)
        self._loaded[name] = end
        log.info(
            "loaded %d tracked messages from %s in %.0f ms",
            len(messages),
            name,
            (time.perf_counter() - started) * 1000,
        )

    # -- the tracking_spool rows -------------------------------------------------------------
    def _offset(self, name: str) -> tuple[int, int, bool]:
        from segmint.store import lit

        with self.hold() as store:
            rows = store.query(
                "SELECT loaded_bytes, loaded_messages, closed FROM tracking_spool "
                f"WHERE spool_file = {lit(name)}"
            )
        if rows.empty:
            self._loaded[name] = 0
            return 0, 0, False
        row = rows.iloc[0]
        self._loaded[name] = int(row["loaded_bytes"])
        return int(row["loaded_bytes"]), int(row["loaded_messages"]), bool(row["closed"])

    @staticmethod
    def _save_offset(store: Any, name: str, loaded_bytes: int, n: int, *, closed: bool) -> None:
        from segmint.store import lit, ts_lit

        store.execute(
            "INSERT INTO tracking_spool (spool_file, loaded_bytes, loaded_messages, updated_at, "
            f"closed) VALUES ({lit(name)}, {int(loaded_bytes)}, {int(n)}, "
            f"{ts_lit(datetime.now(UTC))}, {'TRUE' if closed else 'FALSE'}) "
            "ON CONFLICT (spool_file) DO UPDATE SET loaded_bytes = excluded.loaded_bytes, "
            "loaded_messages = excluded.loaded_messages, updated_at = excluded.updated_at, "
            "closed = excluded.closed"
        )

    def _close(self, path: Path) -> None:
        """A gone writer's file is fully loaded: say so, delete it, then forget its row."""
        loaded_bytes, loaded_messages, _ = self._offset(path.name)
        with self.hold() as store, store.transaction():
            self._save_offset(store, path.name, loaded_bytes, loaded_messages, closed=True)
        log.info(
            "tracking spool %s is loaded (%d messages); deleting it", path.name, loaded_messages
        )
        self._forget(path)

    def _forget(self, path: Path) -> None:
        from segmint.store import lit

        path.unlink(missing_ok=True)
        _sync_dir(path.parent)
        self._loaded.pop(path.name, None)
        with self.hold() as store:
            store.execute(
                f"DELETE FROM tracking_spool WHERE spool_file = {lit(path.name)} AND closed"
            )

    # -- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Per spool file: bytes written and loaded, lag in messages and seconds."""
        now = datetime.now(UTC)
        files = []
        for path in spool_files(self.folder):
            try:
                files.append(self._file_status(path, now))
            except FileNotFoundError:  # closed between listing and reading
                continue
        return {
            "folder": str(self.folder),
            "this_process": self.writer.name,
            "batch_seconds": self.batch_seconds,
            "loaded_since_start": self.n_loaded,
            "failed_loads_since_start": self.n_failures,
            "lag_messages": sum(f["lag_messages"] for f in files),
            "lag_seconds": max((f["lag_seconds"] for f in files), default=0.0),
            "files": files,
        }

    def _writer_of(self, path: Path) -> str:
        if path == self.writer.path and self.writer.running:
            return "this process"
        claim = claim_if_dead(path)
        if claim is None:
            return "another process"
        claim.close()
        return "gone"

    def _file_status(self, path: Path, now: datetime) -> dict[str, Any]:
        loaded_bytes, loaded_messages, closed = self._offset(path.name)
        written = complete_size(path)
        lag_messages = 0
        lag_seconds = 0.0
        if written > loaded_bytes:
            with open(path, "rb") as f:
                f.seek(loaded_bytes)
                pending = f.read(written - loaded_bytes)
            lag_messages = pending.count(b"\n")
            first = parse_line(pending[: pending.find(b"\n") + 1], self._opener())
            lag_seconds = _age(first.get("receivedAt"), now)
        return {
            "file": path.name,
            "writer": self._writer_of(path),
            "bytes_written": written,
            "bytes_loaded": loaded_bytes,
            "messages_loaded": loaded_messages,
            "lag_messages": lag_messages,
            "lag_seconds": lag_seconds,
            "closed": closed,
        }


def _age(received_at: Any, now: datetime) -> float:
    if not isinstance(received_at, str):
        return 0.0
    try:
        moment = datetime.fromisoformat(received_at.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return round(max(0.0, (now - moment).total_seconds()), 3)


def _as_hold(project: Any, hold: Any) -> Callable[[], Any]:
    """``hold`` as a callable giving a context manager that yields the store."""
    if not hasattr(hold, "acquire"):
        return hold  # type: ignore[no-any-return]
    lock = hold

    @contextmanager
    def locked() -> Iterator[Any]:
        with lock:
            yield project.store

    return locked


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tracking_worker(app: Any) -> TrackingLoader:
    """The tracking loader (and spool writer) of ``app``; kept as ``app.state.tracking``."""
    project = app.state.project
    folder = Path(project.root) / project.config.tracking.spool
    from segmint.serve._app import hold_store

    loader = TrackingLoader(project, lambda: hold_store(app), SpoolWriter(folder))
    app.state.tracking = loader
    return loader
