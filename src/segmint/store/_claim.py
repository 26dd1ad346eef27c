"""Who may open a project's DuckDB file: the claim of a running ``segmint serve``.

DuckDB lets one process open a file read-write, or several read-only, never both. While
``segmint serve`` runs on a DuckDB project it *owns* the file: it writes a claim,
``.segmint/serve.json`` in the project folder (pid, host, url, started, store), and removes
it when it stops cleanly. A claim whose process is gone (same host, pid not alive) is stale
and ignored.

With a live claim:

- a command that writes stops at once with :class:`~segmint.errors.StoreBusyError` naming
  the service;
- a command that only reads opens the file read-only. The service opens its connection
  only while it uses the store and closes it when idle; a reader that cannot get in at
  once announces itself (a file in ``.segmint/readers/``) and the service lets go of the
  file at its next idle moment and waits until the reader is done.

The intent of the code that opens the store (``"read"`` or ``"write"``) is set around a
command with :func:`access_mode` (the CLI does this for every command, from one table).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from segmint.errors import StoreBusyError
from segmint.store._base import Store
from segmint.store._open import open_store

__all__ = [
    "CLAIM_FILE",
    "READ_WAIT",
    "ServiceClaim",
    "access_mode",
    "current_access",
    "open_project_store",
    "read_claim",
    "readers_waiting",
    "remove_claim",
    "write_claim",
]

Access = Literal["read", "write"]

CLAIM_FILE = Path(".segmint") / "serve.json"
"""Where, in a project folder, the claim of a running ``segmint serve`` is written."""

READERS_DIR = Path(".segmint") / "readers"

READ_WAIT = 30.0
"""Seconds a read-only command waits for a running service to let go of the file."""

LOCK_WAIT = 2.0
"""Seconds a command waits for a lock held by another process when no service runs."""

_ACCESS: ContextVar[Access | None] = ContextVar("segmint_store_access", default=None)


@contextmanager
def access_mode(mode: Access) -> Iterator[None]:
    """Open stores inside this block for ``mode``: ``"read"`` (read-only beside a running
    service) or ``"write"`` (refused while a service owns the file)."""
    token = _ACCESS.set(mode)
    try:
        yield
    finally:
        _ACCESS.reset(token)


def current_access() -> Access:
    """The access mode set by :func:`access_mode` (``"write"`` when none is)."""
    return _ACCESS.get() or "write"


@dataclass(frozen=True)
class ServiceClaim:
    """A running ``segmint serve``'s claim on a project's DuckDB file."""

    pid: int
    host: str
    url: str
    started: str
    store: str

    def is_live(self) -> bool:
        """The claiming process still runs (on another host: assumed to)."""
        if self.host != socket.gethostname():
            return True
        return _pid_alive(self.pid)

    def is_mine(self) -> bool:
        """This process made the claim (it is the service)."""
        return self.pid == os.getpid() and self.host == socket.gethostname()

    def owner(self) -> str:
        """``segmint serve (pid 1234, http://127.0.0.1:8000)``."""
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"segmint serve (pid {self.pid}{where}, {self.url})"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def read_claim(root: str | Path) -> ServiceClaim | None:
    """The live claim on the project in ``root``, or None (none, unreadable or stale)."""
    try:
        data = json.loads((Path(root) / CLAIM_FILE).read_text(encoding="utf-8"))
        claim = ServiceClaim(
            pid=int(data["pid"]),
            host=str(data["host"]),
            url=str(data["url"]),
            started=str(data["started"]),
            store=str(data.get("store", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return claim if claim.is_live() else None


def write_claim(root: str | Path, *, url: str, store: str) -> ServiceClaim:
    """Claim the project's DuckDB file for this process (the service); raises
    :class:`~segmint.errors.StoreBusyError` when another live service holds it."""
    current = read_claim(root)
    if current is not None and not current.is_mine():
        raise StoreBusyError(
            f"{current.owner()} already serves {Path(root)}: stop it first", pid=current.pid
        )
    claim = ServiceClaim(
        pid=os.getpid(),
        host=socket.gethostname(),
        url=url,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        store=store,
    )
    path = Path(root) / CLAIM_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(claim), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return claim


def remove_claim(root: str | Path) -> None:
    """Remove this process's claim (another process's is left alone)."""
    path = Path(root) / CLAIM_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if data.get("pid") == os.getpid() and data.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def readers_waiting(root: str | Path) -> bool:
    """A read-only command waits for the file (stale announcements are removed)."""
    folder = Path(root) / READERS_DIR
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    waiting = False
    for entry in entries:
        try:
            pid = int(entry.name)
        except ValueError:
            continue
        if _pid_alive(pid):
            waiting = True
        else:
            entry.unlink(missing_ok=True)
    return waiting


@contextmanager
def _announced(root: Path) -> Iterator[None]:
    mark = root / READERS_DIR / str(os.getpid())
    try:
        mark.parent.mkdir(parents=True, exist_ok=True)
        mark.touch()
    except OSError:  # a read-only project folder: wait without announcing
        pass
    try:
        yield
    finally:
        mark.unlink(missing_ok=True)


def owned_message(claim: ServiceClaim, store: str) -> str:
    """What a command that writes is told while a service owns the store."""
    return (
        f"{claim.owner()} owns {store} while it runs: stop it first, or send events "
        "through its tracking API; read-only commands (report, profile, segments list, "
        "jobs ...) still work"
    )


def open_project_store(root: str | Path, url: str, *, read_only: bool | None = None) -> Store:
    """Open the store of the project in ``root`` as its access mode allows.

    ``read_only``: None follows :func:`current_access`. PostgreSQL stores are shared and
    opened as usual. A DuckDB store with a live service claim is refused to writers and
    opened read-only for readers; without a claim a reader opens it as usual and falls
    back to read-only when another process holds the file.
    """
    if url.startswith(("postgresql://", "postgres://")):
        return open_store(url)
    reading = current_access() == "read" if read_only is None else read_only
    claim = read_claim(root)
    if claim is not None and not claim.is_mine():
        if not reading:
            python = read_only is None and _ACCESS.get() is None  # not a CLI command
            hint = " (to read in Python: open_project(path, read_only=True))" if python else ""
            raise StoreBusyError(owned_message(claim, url) + hint, pid=claim.pid)
        return _open_beside_service(Path(root), url, claim)
    if not reading:
        return open_store(url, wait=LOCK_WAIT)
    try:
        return open_store(url)
    except StoreBusyError:
        return open_store(url, read_only=True, wait=LOCK_WAIT)


def _open_beside_service(root: Path, url: str, claim: ServiceClaim) -> Store:
    try:
        return open_store(url, read_only=True, wait=0.05)
    except StoreBusyError:
        pass
    started = time.monotonic()
    with _announced(root):
        try:
            return open_store(url, read_only=True, wait=READ_WAIT)
        except StoreBusyError as exc:
            raise StoreBusyError(
                f"{claim.owner()} did not let go of {url} within "
                f"{time.monotonic() - started:.0f} s (it is busy writing); try again",
                pid=exc.pid,
            ) from None
