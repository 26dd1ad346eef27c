"""The tracking spool: accepted messages, one JSON line each, on disk before the 2xx.

Every serving process appends to its own file in the project's ``tracking.spool`` folder,
``spool-<hostname>-<pid>-<UTC start yyyymmddTHHMMSS>.jsonl``. A line is compact JSON ending
with ``\\n``; a line without its ``\\n`` is a torn write that was never acknowledged, and
readers ignore it.

:class:`SpoolWriter` does group commit: requests queue their lines, one writer thread takes
everything queued, writes it, calls ``os.fsync`` once and only then wakes every request
whose lines were in that write. A request is answered only after its lines are on disk, and
the event loop never waits on the disk.

The writing process holds an exclusive ``flock`` on its file for as long as it lives; the
kernel drops it when the process dies (even on ``kill -9``). A loader that can take the lock
knows the file's writer is gone (:func:`claim_if_dead`).

Lines hold personal data (e-mails in identify traits), so each is sealed at rest when the
project encrypts (issue 21): the writer thread turns the line into ``enc1:<key>:<base64>\n``
(:meth:`~segmint.store.Vault.seal`, field :data:`SPOOL_FIELD`) before it writes, and readers
open it (``opener``). A sealed line is still one line: offsets, torn tails and claims work
on the sealed bytes exactly as on clear ones; a clear line (written before encryption was
on) is read as it is.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

__all__ = [
    "SpoolRead",
    "SpoolWriter",
    "claim_if_dead",
    "read_lines",
    "spool_files",
    "spool_name",
    "SPOOL_FIELD",
]

log = logging.getLogger(__name__)

ROTATE_BYTES = 64 * 1024 * 1024
"""A writer starts a new file when its file reaches this size."""
PREFIX = "spool-"
SUFFIX = ".jsonl"
SPOOL_FIELD = "spool.line"
"""The field name a spool line is sealed under."""

Sealer = Callable[[str], str]
"""Seals (or opens) one line's text, without its ``\\n``."""


def spool_name(now: datetime | None = None) -> str:
    """This process's spool file name."""
    now = now or datetime.now(UTC)
    host = socket.gethostname().replace("-", "_").replace("/", "_") or "host"
    return f"{PREFIX}{host}-{os.getpid()}-{now.strftime('%Y%m%dT%H%M%S')}{SUFFIX}"


def spool_files(folder: Path) -> list[Path]:
    """The spool files in ``folder``, oldest first by name's start time then name."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.name.startswith(PREFIX) and p.suffix == SUFFIX]
    return sorted(files, key=lambda p: (p.name.rsplit("-", 1)[-1], p.name))


class _SpoolClosed(RuntimeError):
    """The spool writer has stopped (the service is shutting down) or cannot write."""


@dataclass
class _Pending:
    data: bytes
    n_lines: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


class SpoolWriter:
    """Appends lines to this process's spool file with group commit (see the module doc).

    ``append`` is awaited by the endpoints; ``start``/``stop`` run the writer thread.
    """

    def __init__(
        self,
        folder: Path,
        *,
        name: str | None = None,
        rotate_bytes: int = ROTATE_BYTES,
        seal: Sealer | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.seal = seal  # each line sealed before it is written (None: written clear)
        self.name = name or spool_name()
        self.path = self.folder / self.name
        self.rotate_bytes = rotate_bytes
        self.file_bytes = 0  # size of the current file
        self.n_bytes = 0  # bytes this writer wrote and fsync'ed
        self.n_lines = 0
        self.n_syncs = 0
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._file: IO[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping = False
        self._open()
        self._thread = threading.Thread(target=self._run, name="segmint-spool", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then stop; later ``append`` calls fail."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        if self._file is not None:
            self._file.close()  # releases the flock: the file is now anyone's to load
            self._file = None

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopping

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(30):
            f = open(self.path, "ab", buffering=0)  # noqa: SIM115 - open for the process's life
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:  # another writer of this process started in the same second
                f.close()
                time.sleep(0.1)
                self.name = spool_name()
                self.path = self.folder / self.name
        else:
            raise _SpoolClosed(f"cannot lock a spool file in {self.folder}")
        self.file_bytes = f.seek(0, os.SEEK_END)
        self._file = f
        # the folder entry of a new file must survive a crash as well as its content
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # -- the request side -------------------------------------------------------------------
    async def append(self, lines: list[bytes]) -> None:
        """Queue ``lines`` (each ending with ``\\n``) and return once they are fsync'ed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        pending = _Pending(b"".join(lines), len(lines), loop, future)
        with self._cond:
            if self._stopping or self._thread is None:
                raise _SpoolClosed("the service is stopping; send again shortly")
            self._queue.append(pending)
            self._cond.notify()
        await future

    # -- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                batch, self._queue = self._queue, []
                if not batch and self._stopping:
                    return
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        error: BaseException | None = None
        try:
            assert self._file is not None
            data = b"".join(self._sealed(p.data) for p in batch)
            view = memoryview(data)
            while view:  # a raw file may write less than asked
                written = self._file.write(view)
                view = view[written or 0 :]
            os.fsync(self._file.fileno())
            self.n_bytes += len(data)
            self.file_bytes += len(data)
            self.n_lines += sum(p.n_lines for p in batch)
            self.n_syncs += 1
        except BaseException as exc:  # the disk failed: every waiting request hears it
            log.error("writing the tracking spool failed: %s", type(exc).__name__)
            error = exc
        if error is None and self.file_bytes >= self.rotate_bytes:
            self._rotate()  # before answering: a caller sees the new file (once per 64 MB)
        for p in batch:
            p.loop.call_soon_threadsafe(_settle, p.future, error)

    def _sealed(self, data: bytes) -> bytes:
        """``data`` (lines) with each line sealed, in the writer thread (off the event loop)."""
        if self.seal is None:
            return data
        seal = self.seal
        return b"".join(
            (seal(line.decode("utf-8")) + "\n").encode("utf-8")
            for line in data.split(b"\n")
            if line
        )

    def _rotate(self) -> None:
        """Go on in a new file; the full one is unlocked, so the loader loads it to its end,
        closes and deletes it (a long-running service's spool does not grow without end)."""
        old, old_name = self._file, self.name
        if spool_name() == old_name:  # started this second: rotate at a later commit
            return
        self.name = spool_name()
        self.path = self.folder / self.name
        try:
            self._open()
        except Exception as exc:  # keep writing the old file rather than fail requests
            log.error("rotating the tracking spool failed: %s", type(exc).__name__)
            self._file, self.name, self.path = old, old_name, self.folder / old_name
            return
        if old is not None:
            old.close()
        log.info("tracking spool %s is full; writing %s", old_name, self.name)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the request was cancelled (client went away): nothing to tell
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(_SpoolClosed(f"the spool could not be written ({error})"))


# -- reading ---------------------------------------------------------------------------------
@dataclass
class SpoolRead:
    """Complete lines read from a spool file: ``end`` is the offset after the last one."""

    messages: list[dict[str, Any]]
    end: int


def read_lines(
    path: Path, start: int, *, max_messages: int, opener: Sealer | None = None
) -> SpoolRead:
    """Up to ``max_messages`` complete lines of ``path`` from byte ``start``, parsed.

    A line that is not a JSON object (never written by this module) comes back as
    ``{"_raw": line, "_error": reason}`` so that the load quarantines it instead of losing it.
    A trailing line without ``\\n`` is not read.
    """
    messages: list[dict[str, Any]] = []
    end = start
    with open(path, "rb") as f:
        f.seek(start)
        for raw in _complete_lines(f):
            if len(messages) >= max_messages:
                break
            end += len(raw)
            messages.append(parse_line(raw, opener))
    return SpoolRead(messages, end)


def _complete_lines(f: IO[bytes]) -> Iterator[bytes]:
    for raw in f:
        if not raw.endswith(b"\n"):
            return
        yield raw


def parse_line(raw: bytes, opener: Sealer | None = None) -> dict[str, Any]:
    """One spool line as a message, or a ``_raw``/``_error`` record for the quarantine; a
    sealed line is opened with ``opener`` first."""
    text = raw.decode("utf-8", errors="replace").rstrip("\n")
    if text.startswith("enc1:"):
        if opener is None:
            return {"_raw": text, "_error": "a sealed line, and no key to open it"}
        try:
            text = opener(text)
        except Exception as exc:  # a line that does not open: kept (sealed) for the quarantine
            return {"_raw": text, "_error": f"a sealed line that does not open ({exc})"}
    try:
        value = json.loads(text)
    except ValueError as exc:
        return {"_raw": text, "_error": f"not JSON: {exc}"}
    if not isinstance(value, dict):
        return {"_raw": text, "_error": f"not a JSON object but {type(value).__name__}"}
    return value


def complete_size(path: Path) -> int:
    """The offset after the last complete line of ``path`` (its size without a torn tail)."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb") as f:
        pos = size
        while pos > 0:
            step = min(65536, pos)
            f.seek(pos - step)
            chunk = f.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                return pos - step + cut + 1
            pos -= step
    return 0


def claim_if_dead(path: Path) -> IO[bytes] | None:
    """An open handle holding ``path``'s lock if its writer is gone, else None.

    Keep the handle open while loading the file (another process's loader then leaves it
    alone) and close it after.
    """
    try:
        f = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f
